"""Numerical kernels behind `qscale fix`'s unsafe fixes: MXFP4, NVFP4 scale unification, dequant.

Everything here reproduces the producing tool's own arithmetic, so that a rewritten tensor is the
one that tool would have written (tests/test_numerics.py compares byte for byte):

* **MXFP4** (OCP MX: groups of 32 along the input dimension, one E8M0 byte ``2**(b - 127)`` per
  group, E2M1 elements packed two per byte, low nibble first). compressed-tensors (llm-compressor)
  and AMD Quark both pick the shared exponent by *rounding* the group's absolute maximum to a power
  of two (up when its mantissa is >= 0.75, compressed-tensors' ``round_to_power_2`` and Quark's
  ``even_round``) and subtracting 2 (``floor(log2(6))``), not by the OCP spec's plain
  ``floor(log2(amax)) - 2``; elements round half to even and saturate at 6. The tools differ only
  in edge bytes: compressed-tensors keeps the sign of values that round to zero (nibble ``0x8``)
  and writes E8M0 byte 0 for an all-zero group; Quark writes ``+0`` and never a byte below 1.
  Both decode to the same numbers (vLLM's loaders take either). Quark's ``floor``/``ceil``
  exponent modes are followed too. One deliberate difference: for a group whose absolute
  maximum is below about ``2**-124`` Quark stores byte 1 but quantizes with ``2**-127``; here the
  elements always follow the stored byte.
* **NVFP4** fused shards must share one global scale (vLLM keeps one per fused layer: the max of
  the ModelOpt multipliers ``weight_scale_2``, or ``1 / max`` of the compressed-tensors divisors
  ``weight_global_scale``). Unifying rescales each shard's FP8 block scales so that
  ``block_scale * multiplier`` is unchanged up to FP8 rounding.
* **dequantize** turns a module's stored tensors back into a BF16 ``[out, in]`` weight with the
  decompressor's own dtype steps (compressed-tensors' ``decompress``, ModelOpt's
  ``NVFP4QTensor.dequantize``, compressed-tensors' ``FP8BlockDequantizer`` for
  ``weight_scale_inv``).

Large tensors are processed in row chunks of about ``CHUNK_ELEMS`` elements.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Literal

import torch

from qscale.errors import NumericsError
from qscale.schemes import QuantScheme, Strategy

Producer = Literal["compressed-tensors", "quark"]
ScaleMode = Literal["even", "floor", "ceil"]
Convention = Literal["divisor", "multiplier"]

CHUNK_ELEMS = 1 << 22  #: elements per row chunk (f64 temporaries stay near 32 MB)
MX_GROUP = 32
NVFP4_GROUP = 16
E2M1_MAX = 6.0
FP8_MAX = 448.0
#: E2M1 code -> value; bit 3 is the sign (code 8 is -0.0).
_E2M1 = (0.0, 0.5, 1.0, 1.5, 2.0, 3.0, 4.0, 6.0)
_E2M1_LUT = torch.tensor([*_E2M1, *(-v for v in _E2M1)], dtype=torch.float32)
#: Round-half-to-even boundaries between neighbouring E2M1 magnitudes; True means the boundary
#: value itself rounds up (its upper neighbour has the even mantissa).
_E2M1_BOUNDS = (
    (0.25, False),
    (0.75, True),
    (1.25, False),
    (1.75, True),
    (2.5, False),
    (3.5, True),
    (5.0, False),
)


@dataclass(frozen=True, slots=True)
class QuantError:
    """How far a rewritten tensor dequantizes from the original, over all its elements.

    ``space`` says what was compared: ``"weights"`` (dequantized weights) or ``"block-scales"``
    (effective per-block scales, when unifying NVFP4 scales without the packed weights).
    """

    max_abs: float
    rmse: float
    rel_rmse: float  #: rmse / rms of the original (0 when both are 0, inf when only it is 0)
    numel: int
    max_rel: float  #: max |error| / |original| over nonzero originals
    saturated: int = 0  #: values clipped at the format's maximum (E2M1 6.0, FP8 448)
    flushed: int = 0  #: nonzero originals that became exactly zero
    space: str = "weights"

    def describe(self) -> str:
        """One line for the fix report."""
        counts = ((self.saturated, "saturated"), (self.flushed, "flushed"))
        extra = "".join(f", {n} {what}" for n, what in counts if n)
        return (
            f"max abs err {self.max_abs:.3g}, rmse {self.rmse:.3g} "
            f"({self.rel_rmse:.2%} of rms) over {self.numel} {self.space}{extra}"
        )

    def as_dict(self) -> dict[str, float | int | str]:
        """JSON-ready fields (for the fix manifest)."""
        return asdict(self)


class _ErrorSum:
    """Accumulates QuantError statistics chunk by chunk, in float64."""

    def __init__(self, space: str = "weights") -> None:
        self.space = space
        self.sq_err = self.sq_ref = self.max_abs = self.max_rel = 0.0
        self.numel = self.saturated = self.flushed = 0

    def add(self, ref: torch.Tensor, approx: torch.Tensor, *, saturated: int = 0) -> None:
        ref, approx = ref.double(), approx.double()
        err = (approx - ref).abs()
        nz = ref != 0
        self.sq_err += float(err.square().sum())
        self.sq_ref += float(ref.square().sum())
        if err.numel():
            self.max_abs = max(self.max_abs, float(err.max()))
        if bool(nz.any()):
            self.max_rel = max(self.max_rel, float((err[nz] / ref[nz].abs()).max()))
        self.numel += ref.numel()
        self.saturated += saturated
        self.flushed += int((nz & (approx == 0)).sum())

    def result(self) -> QuantError:
        rmse = math.sqrt(self.sq_err / self.numel) if self.numel else 0.0
        if self.sq_ref:
            rel = math.sqrt(self.sq_err / self.sq_ref)
        else:
            rel = 0.0 if self.sq_err == 0 else math.inf
        return QuantError(
            self.max_abs,
            rmse,
            rel,
            self.numel,
            self.max_rel,
            self.saturated,
            self.flushed,
            self.space,
        )


def _row_chunks(
    rows: int, cols: int, chunk_rows: int | None, multiple: int = 1
) -> Iterator[tuple[int, int]]:
    step = chunk_rows or max(1, CHUNK_ELEMS // max(cols, 1))
    step = max(multiple, step // multiple * multiple)
    for r0 in range(0, rows, step):
        yield r0, min(rows, r0 + step)


def _require_2d(t: torch.Tensor, what: str) -> None:
    if t.ndim != 2:
        raise NumericsError(f"{what} must be 2-D [out, in], got shape {tuple(t.shape)}")


def _require_finite(t: torch.Tensor, what: str) -> None:
    if t.is_floating_point() and not bool(torch.isfinite(t.float()).all()):
        raise NumericsError(f"{what} holds NaN or infinite values")


# --------------------------------------------------------------------------- MXFP4


def _e8m0_to_float(b: torch.Tensor) -> torch.Tensor:
    """E8M0 bytes -> exact float32 powers of two (byte 0 is the subnormal 2**-127)."""
    bits = torch.where(b == 0, 1 << 22, b.to(torch.int32) << 23)
    return bits.to(torch.int32).view(torch.float32)


def _as_e8m0_bytes(scales: torch.Tensor) -> torch.Tensor:
    if scales.dtype == getattr(torch, "float8_e8m0fnu", None):
        scales = scales.view(torch.uint8)
    if scales.dtype != torch.uint8:
        raise NumericsError(f"MXFP4 scales must be E8M0 bytes (uint8), got {scales.dtype}")
    if bool((scales == 255).any()):
        raise NumericsError("MXFP4 scales hold E8M0 byte 255, which encodes NaN")
    return scales


def _mx_scale_bytes(
    amax: torch.Tensor, src: torch.dtype, producer: Producer, mode: ScaleMode
) -> torch.Tensor:
    """The E8M0 byte each tool stores for a group with absolute maximum ``amax`` (float32)."""
    if mode == "even":  # round amax to a power of two (up from mantissa 0.75), minus log2(4)
        bits = amax.view(torch.int32)
        biased = ((bits + (1 << 21)) & 0x7F800000) >> 23
        b = biased - 2
        if producer == "quark":  # Quark's to_e8m0_uint8 never writes a byte below 1
            return b.clamp(1, 254).to(torch.uint8)
        if src == torch.float16:  # a scale below float16's range becomes compressed-tensors' eps
            b = torch.where(amax < 2.0**-14, 127, b)
        return b.clamp(0, 254).to(torch.uint8)
    # Quark's floor/ceil modes take log2 in the weight's dtype; an underflowing scale is f32 eps.
    lg = torch.log2(amax.to(src)).float()
    e = (torch.floor(lg) if mode == "floor" else torch.ceil(lg)) - 2
    tiny = -24 if src == torch.float16 else (-133 if src == torch.bfloat16 else -149)
    e = torch.where(torch.isinf(e) | (e < tiny), -23.0, e)
    return (e.clamp(-126, 127) + 127).to(torch.uint8)


def _e2m1_codes(y: torch.Tensor, *, signed_zero: bool) -> tuple[torch.Tensor, int]:
    """Round scaled values to E2M1 codes (half to even, saturating at 6)."""
    a = y.abs()
    idx = torch.zeros(a.shape, dtype=torch.uint8)
    for bound, tie_up in _E2M1_BOUNDS:
        idx += (a >= bound) if tie_up else (a > bound)
    neg = y < 0 if signed_zero else (y < 0) & (idx > 0)
    return idx | (neg.to(torch.uint8) << 3), int((a > E2M1_MAX).sum())


def _pack_nibbles(codes: torch.Tensor) -> torch.Tensor:
    return codes[:, 0::2] | (codes[:, 1::2] << 4)


def _unpack_nibbles(packed: torch.Tensor) -> torch.Tensor:
    return torch.stack((packed & 0x0F, packed >> 4), dim=-1).reshape(packed.shape[0], -1)


def quantize_mxfp4(
    w: torch.Tensor,
    *,
    producer: Producer = "compressed-tensors",
    scale_mode: ScaleMode = "even",
    chunk_rows: int | None = None,
) -> tuple[torch.Tensor, torch.Tensor, QuantError]:
    """Quantize ``w`` [N, K] (BF16/F16/F32) to OCP MXFP4 the way ``producer`` does.

    Args:
        w: the weight; K must be a multiple of 32.
        producer: whose byte conventions to follow (see the module docstring); use the one that
            made the rest of the checkpoint.
        scale_mode: Quark's ``scale_calculation_mode`` (``even`` is both tools' default;
            ``floor`` is the OCP spec's rule, ``ceil`` never saturates). compressed-tensors
            has only ``even``.
        chunk_rows: rows per processing chunk (default: about ``CHUNK_ELEMS`` elements).

    Returns:
        Packed E2M1 bytes [N, K/2] (low nibble first), E8M0 bytes [N, K/32], and the error of the
        dequantized result against ``w``.
    """
    _require_2d(w, "MXFP4 input")
    if not w.is_floating_point() or w.element_size() < 2:
        raise NumericsError(f"MXFP4 input must be BF16, F16 or F32, got {w.dtype}")
    n, k = w.shape
    if k % MX_GROUP:
        raise NumericsError(f"MXFP4 needs the input dimension to be a multiple of 32, got {k}")
    if producer not in ("compressed-tensors", "quark"):
        raise NumericsError(
            f"unknown MXFP4 producer {producer!r}",
            hint="use producer='compressed-tensors' or producer='quark'",
        )
    if scale_mode not in ("even", "floor", "ceil") or (
        producer == "compressed-tensors" and scale_mode != "even"
    ):
        raise NumericsError(
            f"scale_mode {scale_mode!r} is not one {producer} uses",
            hint="compressed-tensors rounds 'even'; Quark: even, floor or ceil",
        )
    _require_finite(w, "MXFP4 input")
    packed = torch.empty((n, k // 2), dtype=torch.uint8)
    scales = torch.empty((n, k // MX_GROUP), dtype=torch.uint8)
    acc = _ErrorSum()
    for r0, r1 in _row_chunks(n, k, chunk_rows):
        x = w[r0:r1].float().reshape(r1 - r0, k // MX_GROUP, MX_GROUP)
        b = _mx_scale_bytes(x.abs().amax(-1), w.dtype, producer, scale_mode)
        scale = _e8m0_to_float(b).unsqueeze(-1)
        codes, sat = _e2m1_codes(x / scale, signed_zero=producer == "compressed-tensors")
        packed[r0:r1] = _pack_nibbles(codes.reshape(r1 - r0, k))
        scales[r0:r1] = b
        acc.add(x, _E2M1_LUT[codes.long()] * scale, saturated=sat)
    return packed, scales, acc.result()


def dequantize_mxfp4(
    packed: torch.Tensor,
    scales: torch.Tensor,
    dtype: torch.dtype = torch.bfloat16,
    *,
    chunk_rows: int | None = None,
) -> torch.Tensor:
    """Decode MXFP4 ``packed`` [..., K/2] uint8 with E8M0 ``scales`` [..., K/32] to ``dtype``.

    The float32 products are exact, so BF16/F32 results equal compressed-tensors' and Quark's.
    """
    scales = _as_e8m0_bytes(scales)
    if packed.dtype != torch.uint8 or packed.ndim < 2 or scales.ndim != packed.ndim:
        raise NumericsError(
            f"MXFP4 weight must be packed uint8 [..., in/2] with scales of the same rank, got "
            f"{packed.dtype} {tuple(packed.shape)} and scales {tuple(scales.shape)}"
        )
    lead, half = tuple(packed.shape[:-1]), packed.shape[-1]
    if tuple(scales.shape) != (*lead, half * 2 // MX_GROUP) or half % (MX_GROUP // 2):
        raise NumericsError(
            f"MXFP4 scales have shape {tuple(scales.shape)}, expected "
            f"{(*lead, half * 2 // MX_GROUP)} for packed {tuple(packed.shape)}"
        )
    p2, s2 = packed.reshape(-1, half), scales.reshape(-1, scales.shape[-1])
    out = torch.empty((p2.shape[0], half * 2), dtype=dtype)
    for r0, r1 in _row_chunks(p2.shape[0], half * 2, chunk_rows):
        vals = _fp4_values(p2[r0:r1]).reshape(r1 - r0, -1, MX_GROUP)
        out[r0:r1] = (vals * _e8m0_to_float(s2[r0:r1]).unsqueeze(-1)).reshape(r1 - r0, -1)
    return out.reshape(*lead, half * 2)


# --------------------------------------------------------------------------- NVFP4


def _to_fp8(t: torch.Tensor) -> torch.Tensor:
    return t.clamp(max=FP8_MAX).to(torch.float8_e4m3fn)


def unify_nvfp4_global_scales(
    block_scales: Sequence[torch.Tensor],
    global_scales: Sequence[float],
    *,
    convention: Convention,
    common: float | None = None,
    packed: Sequence[torch.Tensor] | None = None,
) -> tuple[list[torch.Tensor], float, QuantError]:
    """Give the NVFP4 shards of one fused layer one global scale by rescaling their block scales.

    The default common scale is the largest multiplier (``convention="multiplier"``, ModelOpt
    ``weight_scale_2``) or the smallest divisor (``"divisor"``, compressed-tensors
    ``weight_global_scale = 448 * 6 / amax``): the one for which no block scale has to grow, so
    none saturates at FP8's 448. Every shard then stores it, so vLLM's reduction (max of the
    multipliers, ``1 / max`` of the divisors) returns exactly it.

    Args:
        block_scales: each shard's FP8 E4M3 ``weight_scale`` [rows, in/16].
        global_scales: each shard's stored global scale, in ``convention``.
        convention: ``"divisor"`` (dequant = fp4 * block / global) or ``"multiplier"``
            (dequant = fp4 * block * global).
        common: force this common global scale instead (block scales may then saturate).
        packed: each shard's packed FP4 weight [rows, in/2]; when given the error is measured
            on the dequantized weights, else on the effective block scales.

    Returns:
        The rescaled FP8 E4M3 block scales per shard, the common global scale (in
        ``convention``), and the error the rescaling introduces over all shards.
    """
    if convention not in ("divisor", "multiplier"):
        raise NumericsError(
            f"unknown NVFP4 global-scale convention {convention!r}",
            hint="use 'divisor' (compressed-tensors) or 'multiplier' (ModelOpt)",
        )
    if (
        not block_scales
        or len(block_scales) != len(global_scales)
        or (packed is not None and len(packed) != len(block_scales))
    ):
        raise NumericsError(
            f"got {len(block_scales)} block scales and {len(global_scales)} "
            f"global scales{'' if packed is None else f', {len(packed)} weights'}"
            "; expected one of each per shard"
        )
    gs = [float(torch.tensor(float(g), dtype=torch.float32)) for g in global_scales]
    if common is not None:
        gs.append(float(torch.tensor(float(common), dtype=torch.float32)))
    if not all(math.isfinite(g) and g > 0 for g in gs):
        raise NumericsError(f"NVFP4 global scales must be finite and positive, got {gs}")
    target = gs.pop() if common is not None else (min(gs) if convention == "divisor" else max(gs))
    # multiplier each shard is dequantized with, before and after
    mult = [1.0 / g if convention == "divisor" else g for g in gs]
    new_mult = 1.0 / target if convention == "divisor" else target
    acc = _ErrorSum("weights" if packed is not None else "block-scales")
    out: list[torch.Tensor] = []
    for i, (bs, m) in enumerate(zip(block_scales, mult, strict=True)):
        _require_2d(bs, f"NVFP4 block scale of shard {i}")
        _require_finite(bs, f"NVFP4 block scale of shard {i}")
        wanted = bs.double() * (m / new_mult)
        out.append(_to_fp8(wanted))
        sat = int((wanted > FP8_MAX).sum())
        if packed is None:
            acc.add(bs.double() * m, out[-1].double() * new_mult, saturated=sat)
            continue
        _check_fp4(packed[i], bs.shape, f"shard {i}")
        for r0, r1 in _row_chunks(bs.shape[0], packed[i].shape[1] * 2, None):
            vals = _fp4_values(packed[i][r0:r1])
            before = (bs[r0:r1].double() * m).repeat_interleave(NVFP4_GROUP, 1)
            after = (out[-1][r0:r1].double() * new_mult).repeat_interleave(NVFP4_GROUP, 1)
            acc.add(vals * before, vals * after, saturated=sat if r0 == 0 else 0)
    return out, target, acc.result()


def _check_fp4(packed: torch.Tensor, scale_shape: torch.Size, what: str) -> None:
    if (
        packed.dtype != torch.uint8
        or packed.ndim != 2
        or (packed.shape[0], packed.shape[1] * 2 // NVFP4_GROUP) != tuple(scale_shape)
    ):
        raise NumericsError(
            f"NVFP4 weight of {what} must be uint8 [rows, in/2] matching block "
            f"scales {tuple(scale_shape)}, got {packed.dtype} "
            f"{tuple(packed.shape)}"
        )


def _fp4_values(packed: torch.Tensor) -> torch.Tensor:
    """Packed E2M1 pairs (low nibble first) -> float32 values [rows, 2 * cols]."""
    return _E2M1_LUT[_unpack_nibbles(packed).long()]


# --------------------------------------------------------------------------- dequantize


def _get(tensors: Mapping[str, torch.Tensor], *names: str) -> torch.Tensor:
    for n in names:
        if n in tensors:
            return tensors[n]
    raise NumericsError(
        f"missing tensor `{' or '.join(names)}` (module has "
        f"{', '.join(sorted(tensors)) or 'no tensors'})"
    )


def _spread(
    s: torch.Tensor,
    out_rows: int,
    cols: int,
    rows: tuple[int, int],
    *,
    block: tuple[int, int] | None,
    what: str,
) -> torch.Tensor:
    """Scale/zero point broadcastable to weight rows ``rows`` of an [out_rows, cols] weight."""
    r0, r1 = rows
    if s.numel() == 1:
        return s.reshape(1, 1)
    if block is None and (s.ndim == 1 or (s.ndim == 2 and s.shape[1] == 1)):
        if s.shape[0] != out_rows:
            raise NumericsError(f"{what} has {s.shape[0]} rows, the weight {out_rows}")
        return s.reshape(-1, 1)[r0:r1]
    if s.ndim != 2:
        raise NumericsError(f"{what} has shape {tuple(s.shape)}, not a per-row/group/block one")
    bn, bk = block if block else (1, -(-cols // s.shape[1]))
    if (-(-out_rows // bn), -(-cols // bk)) != tuple(s.shape):
        raise NumericsError(
            f"{what} has shape {tuple(s.shape)}, expected "
            f"{(-(-out_rows // bn), -(-cols // bk))} for a [{out_rows}, {cols}] "
            f"weight with {bn}x{bk} blocks"
        )
    rows_of = s[r0 // bn : -(-r1 // bn)].repeat_interleave(bn, 0)[r0 % bn : r0 % bn + r1 - r0]
    return rows_of.repeat_interleave(bk, 1)[:, :cols]


def _scaled(
    rows: Callable[[int, int], torch.Tensor],
    shape: tuple[int, ...],
    qparams: tuple[torch.Tensor, torch.Tensor | None],
    *,
    block: tuple[int, int] | None,
    compute: torch.dtype | None,
    chunk_rows: int | None,
) -> torch.Tensor:
    """``(q - zp) * s`` over the quantized rows ``rows(r0, r1)`` of an [out, in] weight, with
    ``qparams = (s, zp)``, in the decompressor's dtype (``compute``, default the scale's), as
    BF16."""
    s, zp = qparams
    _require_finite(s, "weight scale")
    cd = compute or s.dtype
    n, k = shape
    out = torch.empty((n, k), dtype=torch.bfloat16)
    step = block[0] if block else 1
    for r0, r1 in _row_chunks(n, k, chunk_rows, step):
        x = rows(r0, r1).to(cd)
        if zp is not None:
            x = x - _spread(zp, n, k, (r0, r1), block=block, what="weight_zero_point").to(cd)
        out[r0:r1] = x * _spread(s, n, k, (r0, r1), block=block, what="weight scale").to(cd)
    return out


def _stored_rows(q: torch.Tensor) -> Callable[[int, int], torch.Tensor]:
    return lambda r0, r1: q[r0:r1]


def _unpack_int32(words: torch.Tensor, bits: int, cols: int) -> torch.Tensor:
    """compressed-tensors ``pack_to_int32`` rows -> signed ints (offset ``2**(bits-1)``): dense
    bit packing, or one value per ``bits`` within each word for older writers of 3/5/6/7 bits."""
    per = 32 // bits
    dense = words.shape[1] == -(-cols * bits // 32)
    i = torch.arange(cols, dtype=torch.int64)
    pos = i * bits if dense else (i // per) * 32 + (i % per) * bits
    if words.shape[1] != -(-cols // per) and not dense:
        raise NumericsError(
            f"packed weight has {words.shape[1]} int32 words per row, expected "
            f"{-(-cols * bits // 32)} for {cols} {bits}-bit values"
        )
    w64 = words.to(torch.int64) & 0xFFFFFFFF
    nxt = torch.cat([w64[:, 1:], torch.zeros_like(w64[:, :1])], dim=1)
    pair = w64 | (nxt << 32)
    vals = (pair[:, pos // 32] >> (pos % 32)) & ((1 << bits) - 1)
    return (vals - (1 << (bits - 1))).to(torch.int8)


def _dequantize_int(
    tensors: Mapping[str, torch.Tensor], scheme: QuantScheme, chunk_rows: int | None
) -> torch.Tensor:
    w = scheme.weights
    s = _get(tensors, "weight_scale")
    zp = tensors.get("weight_zero_point")
    if "weight_packed" not in tensors:  # int-quantized: int8 weight
        q = _get(tensors, "weight")
        _require_2d(q, "int weight")
        return _scaled(
            _stored_rows(q), q.shape, (s, zp), block=w.block, compute=None, chunk_rows=chunk_rows
        )
    packed = tensors["weight_packed"]
    shape = tensors.get("weight_shape")
    if packed.dtype != torch.int32 or packed.ndim != 2 or not 1 <= w.num_bits <= 8:
        raise NumericsError(
            f"pack-quantized weight must be int32 [out, words] with 1..8 bits, "
            f"got {packed.dtype} {tuple(packed.shape)}, {w.num_bits} bits"
        )
    n, k = (
        (int(shape[0]), int(shape[1]))
        if shape is not None and shape.numel() == 2
        else (packed.shape[0], packed.shape[1] * 32 // w.num_bits)
    )
    if zp is not None and w.strategy in (Strategy.GROUP, Strategy.CHANNEL):  # packed along out
        zp = _unpack_int32(zp.t().contiguous(), w.num_bits, n).t()
    bits = w.num_bits
    return _scaled(
        lambda r0, r1: _unpack_int32(packed[r0:r1], bits, k),
        (n, k),
        (s, zp),
        block=w.block,
        compute=None,
        chunk_rows=chunk_rows,
    )


def _dequantize_fp8(
    tensors: Mapping[str, torch.Tensor], scheme: QuantScheme, chunk_rows: int | None
) -> torch.Tensor:
    q = _get(tensors, "weight")
    if q.dtype != torch.float8_e4m3fn:
        raise NumericsError(f"FP8 weight must be float8_e4m3fn, got {q.dtype}")
    _require_2d(q, "FP8 weight")
    if "weight_scale_inv" in tensors:  # quant_method fp8 (DeepSeek style): float32 math
        s = tensors["weight_scale_inv"]
        return _scaled(
            _stored_rows(q),
            q.shape,
            (s, None),
            block=scheme.weights.block,
            compute=torch.float32,
            chunk_rows=chunk_rows,
        )
    s = _get(tensors, "weight_scale")
    if s.dtype in (torch.uint8, getattr(torch, "float8_e8m0fnu", None)):  # MXFP8: E8M0 scales
        s = _e8m0_to_float(_as_e8m0_bytes(s))
    ct = scheme.format.startswith("compressed-tensors")
    return _scaled(
        _stored_rows(q),
        q.shape,
        (s, tensors.get("weight_zero_point")),
        block=scheme.weights.block,
        compute=None if ct else torch.float32,
        chunk_rows=chunk_rows,
    )


def _dequantize_nvfp4(
    tensors: Mapping[str, torch.Tensor], packed: torch.Tensor, chunk_rows: int | None
) -> torch.Tensor:
    bs = _get(tensors, "weight_scale")
    _require_2d(bs, "NVFP4 weight_scale")
    _check_fp4(packed, bs.shape, "the module")
    if "weight_global_scale" in tensors:
        # compressed-tensors' decompress: (fp4 * (block.to(bf16) / divisor)) in the promoted dtype
        gs, per_block = tensors["weight_global_scale"], None
        _require_finite(gs, "weight_global_scale")
    else:
        # ModelOpt's NVFP4QTensor.dequantize: fp4 * (block.float() * weight_scale_2), float32
        s2 = _get(tensors, "weight_global_scale", "weight_scale_2")
        _require_finite(s2, "weight_scale_2")
        gs, per_block = None, bs.to(torch.float32) * s2
    n, half = packed.shape
    out = torch.empty((n, half * 2), dtype=torch.bfloat16)
    for r0, r1 in _row_chunks(n, half * 2, chunk_rows):
        vals = _fp4_values(packed[r0:r1]).reshape(r1 - r0, -1, NVFP4_GROUP)
        if gs is not None:
            eff = bs[r0:r1].to(torch.bfloat16).unsqueeze(-1) / gs
            vals = vals.to(torch.bfloat16).to(eff.dtype)
        else:  # ModelOpt's value table has +0 for code 8
            assert per_block is not None
            eff, vals = per_block[r0:r1].unsqueeze(-1), vals + 0.0
        out[r0:r1] = (vals * eff).reshape(r1 - r0, -1)
    return out


def dequantize(
    tensors: Mapping[str, torch.Tensor],
    scheme: QuantScheme,
    *,
    chunk_rows: int | None = None,
) -> torch.Tensor:
    """A module's stored tensors (parameter name -> tensor) -> its BF16 weight [out, in].

    Covers FP8 (per-tensor, per-channel, group, block; ``weight_scale`` or ``weight_scale_inv``),
    MXFP8, int8 and pack-quantized intN (``weight_shape``, zero points), NVFP4
    (compressed-tensors ``weight_global_scale`` or ModelOpt ``weight_scale_2``) and MXFP4
    (``weight_packed`` or Quark's packed ``weight``).

    Raises:
        NumericsError: a tensor is missing or has a shape or dtype the scheme does not allow.
    """
    w = scheme.weights
    if w.type == "float" and w.num_bits == 4:
        packed = _get(tensors, "weight_packed", "weight")
        global_scale = {"weight_global_scale", "weight_scale_2"} & tensors.keys()
        if w.strategy == Strategy.TENSOR_GROUP or global_scale:
            return _dequantize_nvfp4(tensors, packed, chunk_rows)
        if w.group_size != MX_GROUP or "weight_zero_point" in tensors:
            raise NumericsError(
                f"cannot dequantize {scheme.describe()}: only symmetric MXFP4 "
                "(group 32) and NVFP4 (group 16) FP4 layouts are known"
            )
        return dequantize_mxfp4(packed, _get(tensors, "weight_scale"), chunk_rows=chunk_rows)
    if w.type == "float" and w.num_bits == 8:
        return _dequantize_fp8(tensors, scheme, chunk_rows)
    if w.type == "int" and 1 <= w.num_bits <= 8:
        return _dequantize_int(tensors, scheme, chunk_rows)
    raise NumericsError(
        f"cannot dequantize {scheme.describe()}",
        hint="qscale dequantizes FP8, MXFP8, INT1-8, NVFP4 and MXFP4 weights",
    )


def producer_of(scheme: QuantScheme) -> Producer:
    """Whose MXFP4 byte conventions a checkpoint of this scheme's format follows."""
    return "quark" if scheme.format.split("/", 1)[0] == "quark" else "compressed-tensors"
