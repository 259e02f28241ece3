"""qscale.fix.numerics against the real tools, never against itself.

* MXFP4 quantization: byte for byte against compressed-tensors' own observer math
  (``calculate_qparams``) and ``MXFP4PackedCompressor``; against the real llm-compressor and AMD
  Quark checkpoints in tests/fixtures/real (their bytes re-derived from their own dequantized
  values); and, opt-in, against Quark's file-to-file quantizer and the BF16 base model the
  fixtures were made from.
* Dequantization: every real llm-compressor fixture against compressed-tensors' decompressors,
  ``weight_scale_inv`` against compressed-tensors' ``FP8BlockDequantizer``, ModelOpt NVFP4 against
  compressed-tensors' ModelOpt converter (and, opt-in, ModelOpt's own ``dequantize``).
* NVFP4 unification: shards quantized by compressed-tensors (and the real llm-compressor NVFP4
  fixture, whose ``in_proj_qkv``/``in_proj_z`` global scales differ) are unified, then
  dequantized the way vLLM does after reducing the slots; each shard must come back up to the
  FP8 rounding of its rescaled block scales.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import torch
from builders import qwen3_5_moe
from compressed_tensors.compressors import BaseCompressor
from compressed_tensors.compressors.mxfp4.base import MXFP4PackedCompressor
from compressed_tensors.compressors.nvfp4.base import NVFP4PackedCompressor
from compressed_tensors.compressors.nvfp4.helpers import unpack_fp4_from_uint8
from compressed_tensors.entrypoints.convert.converters.fp8block_dequantizer import (
    FP8BlockDequantizer,
)
from compressed_tensors.entrypoints.convert.converters.modelopt_nvfp4 import (
    ModelOptNvfp4Converter,
)
from compressed_tensors.quantization import QuantizationConfig, QuantizationScheme
from compressed_tensors.quantization.lifecycle.forward import dequantize as ct_dequantize
from compressed_tensors.quantization.quant_scheme import FP8, MXFP4, NVFP4
from compressed_tensors.quantization.utils.helpers import calculate_qparams, generate_gparam
from safetensors.torch import load_file, save_file

from qscale import QscaleError, read_checkpoint, resolve_quantization
from qscale.errors import NumericsError
from qscale.fix.numerics import (
    dequantize,
    dequantize_mxfp4,
    producer_of,
    quantize_mxfp4,
    unify_nvfp4_global_scales,
)
from qscale.formats.modelopt import scheme_for_algo

REAL = Path(__file__).parent / "fixtures" / "real"
LLMC_MX = REAL / "llmc-qwen3_5_moe-MXFP4"
QUARK_MX = REAL / "quark-qwen3_5_moe-MXFP4-f2f"
LLMC_NVFP4 = REAL / "llmc-qwen3_5_moe-NVFP4"
MO_NVFP4 = REAL / "modelopt-qwen3_5_moe_text-NVFP4"
CT_MX = QuantizationScheme(targets=["Linear"], **MXFP4)
CT_NVFP4 = QuantizationScheme(targets=["Linear"], **NVFP4)
ORACLE = os.environ.get("QSCALE_ORACLE_CKPTS")


def _bits_equal(a: torch.Tensor, b: torch.Tensor) -> bool:
    """Same dtype, shape and bytes (so -0.0 and +0.0 differ)."""
    return (
        a.dtype == b.dtype
        and a.shape == b.shape
        and bool((a.contiguous().view(torch.uint8) == b.contiguous().view(torch.uint8)).all())
    )


def _tensors(path: Path) -> dict[str, torch.Tensor]:
    out: dict[str, torch.Tensor] = {}
    for f in sorted(path.glob("*.safetensors")):
        out.update(load_file(f))
    return out


def _module(tensors: dict[str, torch.Tensor], name: str) -> dict[str, torch.Tensor]:
    return {k[len(name) + 1 :]: v for k, v in tensors.items() if k.rsplit(".", 1)[0] == name}


# --------------------------------------------------------------------------- MXFP4 quantize


def _edge_weight(dtype: torch.dtype, seed: int = 0) -> torch.Tensor:
    """Random rows plus rows that hit every rounding edge: zero groups, -0.0, ties between E2M1
    neighbours, saturation above 6, exponents that round up, tiny and huge groups."""
    g = torch.Generator().manual_seed(seed)
    w = torch.randn(48, 256, generator=g) * 0.02
    w[0, :32] = 0.0
    w[1, :32] = -0.0
    w[1, 0] = 1.0
    w[2, :32] = -1e-3
    w[2, 5] = 1.0
    w[3, :32] = torch.linspace(-7, 7, 32)
    ties = [0.25, 0.75, 1.25, 1.75, 2.5, 3.5, 5.0, 6.5, 7.0, 5.5, 3.0, 1.0, 0.5, 0.1, 4.5, 2.25]
    w[4, :32] = torch.tensor(ties + [-t for t in ties])
    w[5, :32] = 3.5
    w[6, :32] = 1.75 * 2**-3
    w[7, :32] = 1.9921875 * 2**-10
    w[8] = torch.randn(256, generator=g) * 100
    w[9, :64] = 2.0**-20 * torch.randn(64, generator=g)
    return w.to(dtype)


def _ct_mxfp4(w: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """compressed-tensors' own MXFP4: observer min/max per group -> calculate_qparams ->
    MXFP4PackedCompressor.compress (the path llm-compressor runs)."""
    groups = w.reshape(w.shape[0], -1, 32)
    scale, _ = calculate_qparams(groups.amin(-1), groups.amax(-1), CT_MX.weights)
    sd = MXFP4PackedCompressor.compress({"weight": w, "weight_scale": scale}, CT_MX)
    return sd["weight_packed"], sd["weight_scale"]


def _ct_mxfp4_decompress(packed: torch.Tensor, scales: torch.Tensor) -> torch.Tensor:
    out: torch.Tensor = MXFP4PackedCompressor.decompress(
        {"weight_packed": packed, "weight_scale": scales}, CT_MX
    )["weight"]
    return out


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16, torch.float32])
def test_quantize_mxfp4_writes_compressed_tensors_bytes(dtype: torch.dtype) -> None:
    w = _edge_weight(dtype)
    packed, scales, _ = quantize_mxfp4(w, producer="compressed-tensors")
    ref_packed, ref_scales = _ct_mxfp4(w)
    assert _bits_equal(scales, ref_scales)
    assert _bits_equal(packed, ref_packed)


def _real_bf16_weights() -> dict[str, torch.Tensor]:
    """The BF16 shared experts (and other unquantized Linear weights) of both real MXFP4
    checkpoints: the weights `qscale fix --unsafe-fixes` quantizes."""
    out = {}
    for path in (LLMC_MX, QUARK_MX):
        for name, t in _tensors(path).items():
            if (
                t.dtype == torch.bfloat16
                and t.ndim == 2
                and t.shape[1] % 32 == 0
                and ("shared_expert." in name or "linear_attn.in_proj" in name)
            ):
                out[f"{path.name}:{name}"] = t
    assert len(out) >= 10
    return out


def test_quantize_mxfp4_real_shared_experts_as_compressed_tensors_does() -> None:
    for name, w in _real_bf16_weights().items():
        packed, scales, _ = quantize_mxfp4(w)
        ref_packed, ref_scales = _ct_mxfp4(w)
        assert _bits_equal(packed, ref_packed), name
        assert _bits_equal(scales, ref_scales), name


def test_quark_and_compressed_tensors_bytes_differ_only_in_signed_zeros() -> None:
    """Both tools pick the same exponents and elements; compressed-tensors keeps the sign of
    a value that rounds to zero (nibble 0x8), Quark writes +0 (nibble 0x0)."""
    signed_zeros = 0
    for name, w in _real_bf16_weights().items():
        ct_packed, ct_scales, ct_err = quantize_mxfp4(w, producer="compressed-tensors")
        q_packed, q_scales, q_err = quantize_mxfp4(w, producer="quark")
        assert _bits_equal(ct_scales, q_scales), name
        lo, hi = ct_packed & 0x0F, ct_packed >> 4
        as_quark = torch.where(lo == 8, 0, lo) | (torch.where(hi == 8, 0, hi) << 4)
        assert _bits_equal(as_quark.to(torch.uint8), q_packed), name
        signed_zeros += int((lo == 8).sum() + (hi == 8).sum())
        assert ct_err.rmse == q_err.rmse
    assert signed_zeros > 0


def test_real_quark_checkpoint_requantizes_to_its_own_bytes() -> None:
    """Quark's MXFP4 experts, dequantized and quantized again the Quark way, give back the very
    bytes Quark wrote: same packing order, exponent rule and zero encoding."""
    t = _tensors(QUARK_MX)
    names = [n[: -len(".weight_scale")] for n in t if n.endswith(".weight_scale")]
    assert len(names) >= 20
    for m in names:
        packed, scales = t[f"{m}.weight"], t[f"{m}.weight_scale"]
        again, again_scales, err = quantize_mxfp4(
            dequantize_mxfp4(packed, scales), producer="quark"
        )
        assert _bits_equal(again, packed), m
        assert _bits_equal(again_scales, scales), m
        assert err.max_abs == 0.0


def test_real_llmc_checkpoint_requantizes_to_its_own_bytes() -> None:
    """Same for llm-compressor, except where it wrote -0 (its dequantized value is -0.0, which
    compressed-tensors encodes as +0 when it quantizes an exact zero)."""
    t = _tensors(LLMC_MX)
    names = [n[: -len(".weight_packed")] for n in t if n.endswith(".weight_packed")]
    assert len(names) >= 20
    for m in names:
        packed, scales = t[f"{m}.weight_packed"], t[f"{m}.weight_scale"]
        again, again_scales, _ = quantize_mxfp4(dequantize_mxfp4(packed, scales))
        lo, hi = packed & 0x0F, packed >> 4
        plus_zero = torch.where(lo == 8, 0, lo) | (torch.where(hi == 8, 0, hi) << 4)
        assert _bits_equal(again, plus_zero.to(torch.uint8)), m
        assert _bits_equal(again_scales, scales), m


def test_quant_error_recomputed_from_compressed_tensors_decompressor() -> None:
    w = _edge_weight(torch.bfloat16, seed=3)[10:]
    packed, scales, err = quantize_mxfp4(w)
    back = _ct_mxfp4_decompress(packed, scales).double()
    ref = w.double()
    diff = (back - ref).abs()
    nz = ref != 0
    assert err.numel == w.numel()
    assert err.max_abs == pytest.approx(float(diff.max()), rel=1e-12)
    assert err.rmse == pytest.approx(float(diff.square().mean().sqrt()), rel=1e-9)
    assert err.rel_rmse == pytest.approx(
        float(diff.square().sum().sqrt() / ref.square().sum().sqrt()), rel=1e-9
    )
    assert err.max_rel == pytest.approx(float((diff[nz] / ref[nz].abs()).max()), rel=1e-12)
    assert err.flushed == int((nz & (back == 0)).sum())
    assert 0 < err.rel_rmse < 0.2
    assert "rmse" in err.describe() and err.as_dict()["numel"] == w.numel()


def test_quant_error_counts_saturation() -> None:
    w = torch.zeros(1, 32, dtype=torch.float32)
    w[0, :2] = torch.tensor([3.48, 0.5])  # 1.74 * 2**1 keeps exponent 1: 3.48 / 2**-1 > 6
    _, scales, err = quantize_mxfp4(w)
    assert int(scales[0, 0]) == 127 + 1 - 2
    assert err.saturated == 1
    assert err.max_abs == pytest.approx(3.48 - 6 * 2**-1, rel=1e-6)


def test_row_chunks_give_the_same_result() -> None:
    w = _edge_weight(torch.bfloat16, seed=5)
    whole = quantize_mxfp4(w, producer="quark")
    for rows in (1, 7):
        packed, scales, err = quantize_mxfp4(w, producer="quark", chunk_rows=rows)
        assert _bits_equal(packed, whole[0]) and _bits_equal(scales, whole[1])
        assert err.max_abs == whole[2].max_abs
        assert err.rmse == pytest.approx(whole[2].rmse, rel=1e-12)
        assert _bits_equal(
            dequantize_mxfp4(packed, scales, chunk_rows=rows), dequantize_mxfp4(packed, scales)
        )


# --------------------------------------------------------------------------- dequantize


def _ct_group(path: Path) -> QuantizationScheme:
    qc = json.loads((path / "config.json").read_text())["quantization_config"]
    (group,) = QuantizationConfig.model_validate(qc).config_groups.values()
    return group


LLMC = sorted(p for p in REAL.glob("llmc-*") if p.is_dir())


@pytest.mark.parametrize("path", LLMC, ids=[p.name for p in LLMC])
def test_dequantize_real_checkpoint_equals_compressed_tensors_decompressor(path: Path) -> None:
    group = _ct_group(path)
    compressor = BaseCompressor.get_value_from_registry(group.format)
    params = compressor.compression_param_names(group)
    tensors = _tensors(path)
    checked = 0
    for mq in resolve_quantization(read_checkpoint(path)).quantized():
        mod = _module(tensors, mq.module.name)
        if params[0] not in mod:  # fused 3-D experts and the like
            continue
        assert mq.scheme is not None
        state = {p: mod[p] for p in params if p in mod}
        ref = compressor.decompress(dict(state), group)["weight"].to(torch.bfloat16)
        assert _bits_equal(dequantize(mod, mq.scheme), ref), mq.module.name
        checked += 1
    assert checked >= 20


def test_dequantize_real_quark_mxfp4_equals_compressed_tensors_decompressor() -> None:
    tensors = _tensors(QUARK_MX)
    checked = 0
    for mq in resolve_quantization(read_checkpoint(QUARK_MX)).quantized():
        mod = _module(tensors, mq.module.name)
        assert mq.scheme is not None and producer_of(mq.scheme) == "quark"
        ref = _ct_mxfp4_decompress(mod["weight"], mod["weight_scale"])
        assert _bits_equal(dequantize(mod, mq.scheme), ref), mq.module.name
        checked += 1
    assert checked >= 20


def test_dequantize_weight_scale_inv_equals_fp8_block_dequantizer(tmp_path: Path) -> None:
    path = qwen3_5_moe("fp8-block").write(tmp_path)
    tensors = _tensors(path)
    checked = 0
    for mq in resolve_quantization(read_checkpoint(path)).quantized():
        mod = _module(tensors, mq.module.name)
        assert mq.scheme is not None and "weight_scale_inv" in mod
        name = mq.module.name
        ref = FP8BlockDequantizer(targets=[name]).process(
            {f"{name}.weight": mod["weight"], f"{name}.weight_scale_inv": mod["weight_scale_inv"]}
        )
        assert _bits_equal(dequantize(mod, mq.scheme), ref[f"{name}.weight"]), name
        checked += 1
    assert checked >= 10


@pytest.mark.parametrize(
    "fixture", ["modelopt-qwen3_5_moe_text-FP8", "quark-qwen3_5_moe-FP8-la-f2f"]
)
def test_dequantize_per_tensor_fp8_of_other_tools(fixture: str) -> None:
    """ModelOpt and Quark per-tensor FP8: the same `weight * weight_scale` as
    compressed-tensors' float-quantized decompressor."""
    path = REAL / fixture
    tensors = _tensors(path)
    fp8 = QuantizationScheme(targets=["Linear"], **FP8)
    compressor = BaseCompressor.get_value_from_registry("float-quantized")
    checked = 0
    for mq in resolve_quantization(read_checkpoint(path)).quantized():
        mod = _module(tensors, mq.module.name)
        assert mq.scheme is not None
        state = {"weight": mod["weight"], "weight_scale": mod["weight_scale"].float()}
        ref = compressor.decompress(state, fp8)["weight"].to(torch.bfloat16)
        assert _bits_equal(dequantize(mod, mq.scheme), ref), mq.module.name
        checked += 1
    assert checked >= 10


def _bf16_ulp(x: torch.Tensor) -> torch.Tensor:
    x = x.float().abs().clamp(min=2.0**-126)
    return torch.exp2(torch.floor(torch.log2(x)) - 7)


def test_dequantize_modelopt_nvfp4_near_compressed_tensors_converter() -> None:
    """ModelOpt multiplies by ``weight_scale_2``; compressed-tensors' converter stores its
    reciprocal and divides, so the two agree to one BF16 rounding step."""
    tensors = _tensors(MO_NVFP4)
    checked = 0
    for mq in resolve_quantization(read_checkpoint(MO_NVFP4)).quantized():
        mod = _module(tensors, mq.module.name)
        assert mq.scheme is not None
        conv = ModelOptNvfp4Converter(targets=["re:.*"]).process(
            {f"m.{k}": v.clone() for k, v in mod.items() if k != "input_scale"}
        )
        ref = NVFP4PackedCompressor.decompress({k[2:]: v for k, v in conv.items()}, CT_NVFP4)
        ref_w = ref["weight"].to(torch.bfloat16).float()
        mine = dequantize(mod, mq.scheme).float()
        assert bool(((mine - ref_w).abs() <= _bf16_ulp(mine)).all()), mq.module.name
        checked += 1
    assert checked >= 10


def test_dequantize_refuses_what_it_cannot_read(tmp_path: Path) -> None:
    tensors = _tensors(qwen3_5_moe("modelopt-nvfp4").write(tmp_path))
    name = "model.language_model.layers.1.self_attn.q_proj"
    mod = _module(tensors, name)
    scheme = scheme_for_algo("NVFP4")
    assert dequantize(mod, scheme).shape == (256, 128)
    with pytest.raises(NumericsError, match="missing tensor `weight_scale`"):
        dequantize({k: v for k, v in mod.items() if k != "weight_scale"}, scheme)
    with pytest.raises(NumericsError, match="must be uint8"):
        dequantize({**mod, "weight_scale": mod["weight_scale"][:, :4]}, scheme)
    with pytest.raises(NumericsError, match="NaN or infinite"):
        dequantize({**mod, "weight_scale_2": torch.tensor(float("nan"))}, scheme)


# --------------------------------------------------------------------------- NVFP4 unification


def _ct_nvfp4(w: torch.Tensor) -> dict[str, torch.Tensor]:
    """compressed-tensors' NVFP4: global scale from the tensor's amax (generate_gparam), FP8
    block scales from calculate_qparams, NVFP4PackedCompressor.compress."""
    gs = generate_gparam(w.amin(), w.amax())
    groups = w.reshape(w.shape[0], -1, 16)
    scale, _ = calculate_qparams(
        groups.amin(-1), groups.amax(-1), CT_NVFP4.weights, global_scale=gs
    )
    out: dict[str, torch.Tensor] = NVFP4PackedCompressor.compress(
        {"weight": w, "weight_scale": scale, "weight_global_scale": gs}, CT_NVFP4
    )
    return out


def _fp4(packed: torch.Tensor) -> torch.Tensor:
    rows, half = packed.shape
    out: torch.Tensor = unpack_fp4_from_uint8(packed, rows, half * 2, dtype=torch.float32)
    return out.double()


def _dequant64(packed: torch.Tensor, block: torch.Tensor, multiplier: float) -> torch.Tensor:
    """fp4 * block_scale * multiplier, exactly (float64)."""
    return _fp4(packed) * (block.double() * multiplier).repeat_interleave(16, 1)


def _fp8_half_ulp(v: torch.Tensor) -> torch.Tensor:
    """Half the E4M3 spacing at v (subnormal spacing 2**-9 below 2**-6)."""
    v = v.abs().clamp(min=2.0**-6)
    return torch.exp2(torch.floor(torch.log2(v)) - 4)


def _check_unified(
    packed: list[torch.Tensor],
    blocks: list[torch.Tensor],
    mults: list[float],
    new_blocks: list[torch.Tensor],
    vllm_mult: float,
) -> None:
    """Each shard, dequantized with vLLM's one multiplier, equals its original dequantized
    weight up to the FP8 rounding of its rescaled block scales."""
    for p, b, m, nb in zip(packed, blocks, mults, new_blocks, strict=True):
        assert nb.dtype == torch.float8_e4m3fn and nb.shape == b.shape
        before, after = _dequant64(p, b, m), _dequant64(p, nb, vllm_mult)
        wanted = b.double() * (m / vllm_mult)
        bound = _fp4(p).abs() * (_fp8_half_ulp(wanted) * vllm_mult).repeat_interleave(16, 1)
        assert bool(((after - before).abs() <= bound * (1 + 1e-9)).all())
        if m == vllm_mult:
            assert _bits_equal(nb, b)


def _shards() -> list[dict[str, torch.Tensor]]:
    g = torch.Generator().manual_seed(7)
    return [
        _ct_nvfp4((torch.randn(64, 128, generator=g) * s).to(torch.bfloat16))
        for s in (0.02, 0.07, 0.005)
    ]


def test_unify_divisor_scales_as_vllm_reads_them() -> None:
    shards = _shards()
    packed = [s["weight_packed"] for s in shards]
    blocks = [s["weight_scale"] for s in shards]
    divisors = [float(s["weight_global_scale"]) for s in shards]
    assert len(set(divisors)) == 3
    new_blocks, common, err = unify_nvfp4_global_scales(blocks, divisors, convention="divisor")
    assert common == min(divisors)
    vllm_mult = float(1 / torch.tensor([common] * 3).max())  # vLLM: 1 / max over the slots
    _check_unified(packed, blocks, [1 / d for d in divisors], new_blocks, vllm_mult)
    assert err.space == "block-scales" and err.saturated == 0
    # without the fix vLLM dequantizes the shards with the largest divisor: far off
    wrong = 1 / max(divisors)
    off = (
        (
            _dequant64(packed[0], blocks[0], wrong)
            - _dequant64(packed[0], blocks[0], 1 / divisors[0])
        )
        .abs()
        .max()
    )
    assert float(off) > 100 * err.max_abs


def test_unify_error_recomputed_from_compressed_tensors_decompressor() -> None:
    shards = _shards()
    packed = [s["weight_packed"] for s in shards]
    blocks = [s["weight_scale"] for s in shards]
    divisors = [float(s["weight_global_scale"]) for s in shards]
    new_blocks, common, err = unify_nvfp4_global_scales(
        blocks, divisors, convention="divisor", packed=packed
    )
    sq = sq_ref = 0.0
    worst = 0.0
    for p, b, nb, d in zip(packed, blocks, new_blocks, divisors, strict=True):
        # compressed-tensors' own dequantize, run in float64 so no output rounding hides the error
        fp4 = unpack_fp4_from_uint8(p, p.shape[0], p.shape[1] * 2, dtype=torch.float64)
        before, after = (
            ct_dequantize(
                x_q=fp4,
                scale=s.double(),
                args=CT_NVFP4.weights,
                global_scale=torch.tensor([g], dtype=torch.float64),
                dtype=torch.float64,
            )
            for s, g in ((b, d), (nb, common))
        )
        diff = (after - before).abs()
        worst = max(worst, float(diff.max()))
        sq += float(diff.square().sum())
        sq_ref += float(before.square().sum())
    assert err.space == "weights" and err.numel == 3 * 64 * 128
    assert err.max_abs == pytest.approx(worst, rel=1e-9)
    assert err.rel_rmse == pytest.approx(math.sqrt(sq / sq_ref), rel=1e-9)
    assert err.rmse == pytest.approx(math.sqrt(sq / err.numel), rel=1e-9)
    assert err.rel_rmse < 0.05


def test_unify_real_llmc_nvfp4_in_proj_qkv_and_z() -> None:
    """The real llm-compressor NVFP4 checkpoint gives vLLM's fused `in_proj_qkvz` two different
    global scales; unified, both shards come back up to FP8 rounding."""
    t = _tensors(LLMC_NVFP4)
    base = "model.language_model.layers.0.linear_attn.in_proj_"
    mods = [_module(t, base + s) for s in ("qkv", "z")]
    divisors = [float(m["weight_global_scale"]) for m in mods]
    assert divisors[0] != divisors[1]
    blocks = [m["weight_scale"] for m in mods]
    new_blocks, common, err = unify_nvfp4_global_scales(blocks, divisors, convention="divisor")
    _check_unified(
        [m["weight_packed"] for m in mods],
        blocks,
        [1 / d for d in divisors],
        new_blocks,
        1 / common,
    )
    assert 0 < err.rel_rmse < 0.05
    # forcing vLLM's own pick (the largest divisor) would push block scales past 448
    _, forced, err_forced = unify_nvfp4_global_scales(
        blocks, divisors, convention="divisor", common=max(divisors)
    )
    assert forced == max(divisors) and err_forced.saturated > 0
    assert err_forced.max_abs > err.max_abs


def test_unify_multiplier_convention_modelopt() -> None:
    """ModelOpt's ``weight_scale_2`` (the reciprocal of compressed-tensors' divisor): the common
    multiplier is the largest, the one vLLM's max picks."""
    shards = _shards()
    packed = [s["weight_packed"] for s in shards]
    blocks = [s["weight_scale"] for s in shards]
    mults = [float((1 / s["weight_global_scale"]).float()) for s in shards]
    new_blocks, common, err = unify_nvfp4_global_scales(
        blocks, mults, convention="multiplier", packed=packed
    )
    assert common == max(mults)
    _check_unified(packed, blocks, mults, new_blocks, float(torch.tensor(mults).max()))
    # dequantized as ModelOpt does, the rescaled shard stays close to the original
    scheme = scheme_for_algo("NVFP4")
    for p, b, nb, m in zip(packed, blocks, new_blocks, mults, strict=True):
        before = dequantize(
            {"weight": p, "weight_scale": b, "weight_scale_2": torch.tensor(m)}, scheme
        ).double()
        after = dequantize(
            {"weight": p, "weight_scale": nb, "weight_scale_2": torch.tensor(common)}, scheme
        ).double()
        assert float((after - before).abs().max()) <= err.max_abs * 1.01 + 2 * float(
            _bf16_ulp(before).max()
        )


def test_unify_equal_scales_changes_nothing() -> None:
    t = _tensors(MO_NVFP4)
    base = "model.layers.0.linear_attn.in_proj_"
    mods = [_module(t, base + s) for s in ("qkv", "z")]
    mults = [float(m["weight_scale_2"]) for m in mods]
    assert mults[0] == mults[1]
    blocks = [m["weight_scale"] for m in mods]
    new_blocks, common, err = unify_nvfp4_global_scales(
        blocks, mults, convention="multiplier", packed=[m["weight"] for m in mods]
    )
    assert common == mults[0]
    assert all(_bits_equal(a, b) for a, b in zip(new_blocks, blocks, strict=True))
    assert err.max_abs == 0.0 and err.rmse == 0.0 and err.saturated == 0


# --------------------------------------------------------------------------- bad input


def _bad_calls() -> list[Any]:
    w = torch.zeros(4, 64, dtype=torch.bfloat16)
    bs = torch.ones(4, 4).to(torch.float8_e4m3fn)
    return [
        pytest.param(lambda: quantize_mxfp4(w[:, :48]), "multiple of 32", id="k-not-32"),
        pytest.param(lambda: quantize_mxfp4(w[0]), "2-D", id="1-d"),
        pytest.param(lambda: quantize_mxfp4(w.int()), "BF16, F16 or F32", id="int-input"),
        pytest.param(
            lambda: quantize_mxfp4(w.index_fill(1, torch.tensor([3]), float("inf"))),
            "NaN or infinite",
            id="inf",
        ),
        pytest.param(
            lambda: quantize_mxfp4(w, producer="nvidia"),  # type: ignore[arg-type]
            "unknown MXFP4 producer",
            id="producer",
        ),
        pytest.param(
            lambda: quantize_mxfp4(w, scale_mode="floor"), "not one compressed", id="ct-floor"
        ),
        pytest.param(
            lambda: dequantize_mxfp4(
                torch.zeros(4, 32, dtype=torch.uint8), torch.full((4, 2), 255, dtype=torch.uint8)
            ),
            "encodes NaN",
            id="e8m0-nan",
        ),
        pytest.param(
            lambda: dequantize_mxfp4(
                torch.zeros(4, 32, dtype=torch.uint8), torch.zeros(4, 3, dtype=torch.uint8)
            ),
            "scales have shape",
            id="scale-shape",
        ),
        pytest.param(
            lambda: unify_nvfp4_global_scales([bs], [1.0], convention="max"),  # type: ignore[arg-type]
            "convention",
            id="convention",
        ),
        pytest.param(
            lambda: unify_nvfp4_global_scales([bs, bs], [1.0], convention="divisor"),
            "one of each per shard",
            id="lengths",
        ),
        pytest.param(
            lambda: unify_nvfp4_global_scales([bs, bs], [1.0, 0.0], convention="divisor"),
            "finite and positive",
            id="zero-global",
        ),
        pytest.param(
            lambda: unify_nvfp4_global_scales(
                [bs], [1.0], convention="divisor", packed=[torch.zeros(4, 8, dtype=torch.uint8)]
            ),
            "matching block scales",
            id="packed-shape",
        ),
    ]


@pytest.mark.parametrize(("call", "message"), _bad_calls())
def test_bad_input_is_a_qscale_error_with_a_hint(call: object, message: str) -> None:
    with pytest.raises(NumericsError, match=message) as info:
        call()  # type: ignore[operator]
    assert isinstance(info.value, QscaleError) and isinstance(info.value, ValueError)
    assert info.value.hint and "\n" not in str(info.value)


def test_import_qscale_stays_torch_free() -> None:
    code = "import sys, qscale; assert 'torch' not in sys.modules, 'torch imported'"
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)


# --------------------------------------------------------------------------- opt-in: real tools


def _oracle_root() -> Path:
    if not ORACLE:
        pytest.skip("set QSCALE_ORACLE_CKPTS to oracle/'s ckpts folder (see oracle/README.md)")
    return Path(ORACLE)


@pytest.mark.oracle
def test_base_bf16_experts_quantize_to_the_real_tools_bytes() -> None:
    """The BF16 model both real MXFP4 fixtures were made from: quantizing its experts gives
    llm-compressor's and Quark's files byte for byte."""
    base = load_file(_oracle_root() / "base" / "qwen3_5_moe" / "model.safetensors")
    llmc, quark = _tensors(LLMC_MX), _tensors(QUARK_MX)
    checked = 0
    for name, w in base.items():
        m = name[: -len(".weight")]
        if f"{m}.weight_packed" in llmc:
            packed, scales, _ = quantize_mxfp4(w, producer="compressed-tensors")
            assert _bits_equal(packed, llmc[f"{m}.weight_packed"]), m
            assert _bits_equal(scales, llmc[f"{m}.weight_scale"]), m
            checked += 1
        if f"{m}.weight_scale" in quark and quark[f"{m}.weight"].dtype == torch.uint8:
            packed, scales, _ = quantize_mxfp4(w, producer="quark")
            assert _bits_equal(packed, quark[f"{m}.weight"]), m
            assert _bits_equal(scales, quark[f"{m}.weight_scale"]), m
            checked += 1
    assert checked >= 40


_QUARK_SCRIPT = """
import sys, torch
from safetensors.torch import load_file, save_file
from quark.torch.quantization.config.config import OCP_MXFP4Spec
from quark.torch.quantization.file2file_quantization import _single_stage_quantize_weight
out = {}
for name, w in load_file(sys.argv[1]).items():
    for mode in ("even", "floor", "ceil"):
        spec = OCP_MXFP4Spec(ch_axis=-1, is_dynamic=False, scale_calculation_mode=mode)
        _single_stage_quantize_weight(w, f"{name}.{mode}.weight", name,
                                      spec.to_quantization_spec(), out, "x.safetensors")
save_file({k: v.contiguous() for k, v in out.items()}, sys.argv[2])
"""


@pytest.mark.oracle
def test_quark_file_to_file_quantizer_in_every_scale_mode(tmp_path: Path) -> None:
    """Quark's own weight path (the one that wrote the f2f fixture), run in oracle/'s Quark
    venv, in its even, floor and ceil exponent modes."""
    python = _oracle_root().parent / "venv-quark" / "bin" / "python"
    if not python.exists():
        pytest.skip(f"no Quark venv at {python}")
    weights = {
        f"w.{d}": _edge_weight(getattr(torch, d), seed=11)
        for d in ("bfloat16", "float16", "float32")
    }
    save_file(weights, str(tmp_path / "in.safetensors"))
    (tmp_path / "run.py").write_text(_QUARK_SCRIPT)
    subprocess.run(
        [
            str(python),
            str(tmp_path / "run.py"),
            str(tmp_path / "in.safetensors"),
            str(tmp_path / "out.safetensors"),
        ],
        check=True,
        timeout=600,
        capture_output=True,
    )
    ref = load_file(tmp_path / "out.safetensors")
    for name, w in weights.items():
        for mode in ("even", "floor", "ceil"):
            packed, scales, _ = quantize_mxfp4(w, producer="quark", scale_mode=mode)
            assert _bits_equal(packed, ref[f"{name}.{mode}.weight"]), (name, mode)
            assert _bits_equal(scales, ref[f"{name}.{mode}.weight_scale"]), (name, mode)


_MODELOPT_SCRIPT = """
import sys, torch
from safetensors.torch import load_file, save_file
from modelopt.torch.quantization.qtensor.nvfp4_tensor import NVFP4QTensor
t, out = load_file(sys.argv[1]), {}
for n, w in t.items():
    if n.endswith(".weight") and w.dtype == torch.uint8:
        m = n[: -len(".weight")]
        q = NVFP4QTensor(torch.Size((w.shape[0], w.shape[1] * 2)), torch.bfloat16, w)
        out[m] = q.dequantize(scale=t[m + ".weight_scale"], double_scale=t[m + ".weight_scale_2"],
                              block_sizes={-1: 16}).contiguous()
save_file(out, sys.argv[2])
"""


@pytest.mark.oracle
def test_modelopt_nvfp4_dequantize_matches_modelopt(tmp_path: Path) -> None:
    python = _oracle_root().parent / "venv-modelopt" / "bin" / "python"
    if not python.exists():
        pytest.skip(f"no ModelOpt venv at {python}")
    (tmp_path / "run.py").write_text(_MODELOPT_SCRIPT)
    subprocess.run(
        [
            str(python),
            str(tmp_path / "run.py"),
            str(MO_NVFP4 / "model.safetensors"),
            str(tmp_path / "out.safetensors"),
        ],
        check=True,
        timeout=600,
        capture_output=True,
    )
    ref = load_file(tmp_path / "out.safetensors")
    tensors = _tensors(MO_NVFP4)
    for mq in resolve_quantization(read_checkpoint(MO_NVFP4)).quantized():
        assert mq.scheme is not None
        name = mq.module.name
        assert _bits_equal(dequantize(_module(tensors, name), mq.scheme), ref[name]), name
    assert len(ref) >= 10
