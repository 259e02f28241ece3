"""Scale tensors normalised to the dtype, shape and name the format expects (QS301/302/201/203).

- dtype (QS301): a float scale where the scheme accepts F32 is widened to F32 — exact for
  BF16 and F16, and for F64 only when every value is representable (else refused);
- shape (QS302): a scale whose elements fit an accepted shape that differs only by unit
  dimensions (``[]`` ↔ ``[1]``, ``[N]`` ↔ ``[N, 1]``) is re-declared; the bytes are unchanged;
- name (QS209, and the QS201/QS203 it causes): block-FP8 ``weight_scale_inv``
  (``quant_method: fp8``) ↔ ``weight_scale`` (compressed-tensors); both hold the multiplier
  the engine dequantizes with, so the tensor is renamed byte for byte. Per-tensor scales and
  other producers' spellings are not renamed: a scalar called ``_inv`` may be a reciprocal.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from functools import partial

from qscale.findings import Applicability, Finding
from qscale.fix.context import FixContext
from qscale.fix.model import Change, Computed, Refusal, RenameTensor, TensorData, WriteTensor
from qscale.fix.tensors import TensorSource, widen_to_f32
from qscale.formats import ModuleQuant
from qscale.rules._structure import accepted_shapes, misnamed
from qscale.schemes import SCALE_PARAMS, Strategy, TensorSpec

NAME = "scale-format"
SCALES = SCALE_PARAMS
RENAMES = {"weight_scale": "weight_scale_inv", "weight_scale_inv": "weight_scale"}


def _spec(ctx: FixContext, tensor: str) -> tuple[ModuleQuant, TensorSpec] | None:
    module, _, param = tensor.rpartition(".")
    mq = ctx.quant.modules.get(module)
    spec = mq.scheme.spec(param) if mq and mq.scheme and param in SCALES else None
    return (mq, spec) if mq is not None and spec is not None else None


def _unit_reshape(
    shape: tuple[int, ...], accepted: tuple[tuple[int, ...], ...]
) -> tuple[int, ...] | None:
    """An accepted shape with the same elements, differing only by dimensions of size 1."""
    core = [d for d in shape if d != 1]
    for s in accepted:
        if math.prod(s) == math.prod(shape) and [d for d in s if d != 1] == core:
            return s
    return None


def _target(ctx: FixContext, f: Finding) -> tuple[str, tuple[int, ...]] | str:
    """The (dtype, shape) the finding's tensor should have, or why it cannot get there."""
    found = _spec(ctx, f.location.tensor or "")
    t = ctx.checkpoint.tensors.get(f.location.tensor or "")
    if found is None or t is None:
        return "not a scale of a quantized module"
    mq, spec = found
    dtype = t.dtype
    if dtype not in spec.dtypes:
        if "F32" not in spec.dtypes or dtype not in ("BF16", "F16", "F64"):
            return f"{dtype} cannot be cast exactly to {' or '.join(sorted(spec.dtypes))}"
        dtype = "F32"
        if (
            t.dtype == "F64"
            and widen_to_f32("F64", TensorSource(ctx.checkpoint).raw(t.name)) is None
        ):
            return "F64 values that F32 cannot hold exactly"
    shapes = accepted_shapes(mq, spec)
    shape = t.shape
    if shapes is not None and shape not in shapes:
        new = _unit_reshape(shape, shapes)
        if new is None:
            return f"shape {list(shape)} holds other values than {[list(s) for s in shapes]}"
        shape = new
    return dtype, shape


def _normalise(src: TensorSource, writes: tuple[WriteTensor, ...]) -> Computed:
    out = {}
    for w in writes:
        info = src.info(w.name)
        raw = src.raw(w.name)
        if w.dtype != info.dtype:
            wide = widen_to_f32(info.dtype, raw)
            if wide is None:
                raise ValueError(f"`{w.name}`: {info.dtype} values are not exact in F32")
            raw = wide
        out[w.name] = TensorData(w.dtype, w.shape, raw)
    return Computed(out)


def _renames(ctx: FixContext) -> Iterator[Change | Refusal]:
    """One rename per misnamed scale (QS209), resolving the QS201/QS203 it also causes."""
    by_tensor: dict[str, list[Finding]] = {}
    for f in ctx.findings("QS201", "QS203", "QS209"):
        by_tensor.setdefault(f.location.tensor or "", []).append(f)
    tensors = ctx.checkpoint.tensors
    for mq in ctx.quant.modules.values():
        for want, stored in misnamed(mq, tensors).items():
            related = [*by_tensor.get(stored, ()), *by_tensor.get(want, ())]
            if not related:
                continue
            why = _rename_refusal(mq, want, stored)
            if why is not None:
                yield from (Refusal(f, why) for f in related)
                continue
            assert mq.scheme is not None
            yield Change(
                NAME,
                f"Rename `{stored}` to `{want}` ({mq.scheme.label} reads that name)",
                Applicability.SAFE,
                (RenameTensor(stored, want, tensors[stored].file),),
                tuple(related),
                detail="both names hold the multiplier the engine dequantizes with; bytes"
                " unchanged",
            )


def _rename_refusal(mq: ModuleQuant, want: str, stored: str) -> str | None:
    """Why ``stored`` cannot simply be renamed to ``want`` (None: it can)."""
    assert mq.scheme is not None
    pair = {want.rpartition(".")[2], stored.rpartition(".")[2]}
    if pair != {"weight_scale", "weight_scale_inv"}:
        return f"the value convention of `{stored.rpartition('.')[2]}` is not known to qscale"
    if mq.scheme.weights.strategy != Strategy.BLOCK:
        return "only block-FP8 scales are renamed: a per-tensor `_inv` scale may hold a reciprocal"
    spec, t = mq.scheme.spec(want.rpartition(".")[2]), mq.module.tensors[stored.rpartition(".")[2]]
    shapes = accepted_shapes(mq, spec) if spec else None
    if spec is None or t.dtype not in spec.dtypes or (shapes and t.shape not in shapes):
        return f"`{stored}` ({t.dtype} {list(t.shape)}) does not fit `{want}`"
    return None


def plan(ctx: FixContext) -> Iterator[Change | Refusal]:
    """Casts and reshapes (one change per tensor, resolving its QS301/QS302), then renames."""
    by_tensor: dict[str, list[Finding]] = {}
    for f in ctx.findings("QS301", "QS302"):
        if f.location.tensor and f.location.tensor.rpartition(".")[2] in SCALES:
            by_tensor.setdefault(f.location.tensor, []).append(f)
    for name, fs in by_tensor.items():
        target = _target(ctx, fs[0])
        if isinstance(target, str):
            yield from (Refusal(f, target) for f in fs)
            continue
        t = ctx.checkpoint.tensors[name]
        w = WriteTensor(name, t.file, target[0], target[1])
        what = [f"{t.dtype} → {w.dtype}"] if w.dtype != t.dtype else []
        what += [f"shape {list(t.shape)} → {list(w.shape)}"] if w.shape != t.shape else []
        yield Change(
            NAME,
            f"Store `{name}` as {', '.join(what)}",
            Applicability.SAFE,
            (w,),
            tuple(fs),
            compute=partial(_normalise, writes=(w,)),
            detail="values unchanged (exact widening, or a re-declared shape)",
        )
    yield from _renames(ctx)
