"""Unsafe fixes: MXFP4 shared experts (seed 003), NVFP4 global scales, dequantized heads."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
from builders import CT_IGNORE, ct_fp8, qwen3_5_moe
from safetensors.torch import load_file

from qscale import CheckOptions, Severity, check, read_checkpoint, resolve_quantization
from qscale.fix import Status, fix
from qscale.fix.numerics import dequantize, dequantize_mxfp4, quantize_mxfp4
from qscale.layout import Deployment, Platform

REAL = Path(__file__).parent / "fixtures" / "real"
P = "model.language_model.layers"
LA = f"{P}.0.linear_attn"


def load(root: Path) -> dict[str, torch.Tensor]:
    out: dict[str, torch.Tensor] = {}
    for f in root.glob("*.safetensors"):
        out.update(load_file(str(f)))
    return out


def manifest_errors(root: Path) -> dict[str, dict[str, float]]:
    m = json.loads((root / "qscale-fix-manifest.json").read_text())
    return {r["tensor"]: r["error"] for r in m["tensors"] if r.get("error")}


def skip_list(root: Path) -> list[str]:
    qc = json.loads((root / "config.json").read_text())["quantization_config"]
    return qc.get("exclude", qc.get("ignore"))


MXFP4 = [
    (REAL / "quark-qwen3_5_moe-MXFP4-f2f", "weight", "quark"),
    (REAL / "llmc-qwen3_5_moe-MXFP4", "weight_packed", "compressed-tensors"),
]


#: an engine and layout that fuse the BF16 shared expert into the MXFP4 routed experts (SGLang
#: before PR #22948 on ROCm with AITER): QS601 is an error there
FUSING = {"engine": "sglang==0.5.10", "deployment": Deployment(platform=Platform.ROCM_AITER)}


@pytest.mark.parametrize(("src", "packed", "producer"), MXFP4, ids=["quark", "llmc"])
def test_shared_experts_are_only_offered_without_unsafe_fixes(tmp_path, src, packed, producer):
    result = fix(src, tmp_path / "out", **FUSING)
    assert result.status == Status.REJECTED and not result.plan.applied
    assert [c.fixer for c in result.plan.available] == ["shared-expert-mxfp4"] * 2


@pytest.mark.parametrize(("src", "packed", "producer"), MXFP4, ids=["quark", "llmc"])
def test_unsafe_fixes_leave_shared_experts_that_check_says_need_nothing(
    tmp_path, src, packed, producer
):
    # the newest vLLM on CUDA keeps the BF16 shared expert a separate MLP: check's QS601 is an
    # info note with nothing to do, so even --unsafe-fixes does not quantize it
    [note] = [f for f in check(read_checkpoint(src)).findings if f.code == "QS601"]
    assert note.severity == Severity.INFO
    result = fix(src, tmp_path / "out", unsafe=True)
    assert result.status == Status.CLEAN and not result.plan.applied
    assert result.plan.available == ()
    assert skip_list(tmp_path / "out") == skip_list(src)
    assert load(tmp_path / "out").keys() == load(src).keys()


@pytest.mark.parametrize(("src", "packed", "producer"), MXFP4, ids=["quark", "llmc"])
def test_shared_experts_quantized_to_mxfp4_like_the_routed_experts(tmp_path, src, packed, producer):
    result = fix(src, tmp_path / "out", unsafe=True, **FUSING)
    assert result.status == Status.FIXED
    out = tmp_path / "out"
    report = check(read_checkpoint(out), CheckOptions(**FUSING))
    assert not report.fails(Severity.WARNING), report.findings
    old, new = load(src), load(out)
    errors = manifest_errors(out)
    quant = resolve_quantization(read_checkpoint(out))
    routed = quant.modules[f"{P}.0.mlp.experts.0.gate_proj"].scheme
    for layer in (0, 1):
        for proj in ("gate_proj", "up_proj", "down_proj"):
            m = f"{P}.{layer}.mlp.shared_expert.{proj}"
            assert quant.modules[m].scheme == routed
            w = old[f"{m}.weight"]
            want_p, want_s, want_err = quantize_mxfp4(w, producer=producer)
            assert torch.equal(new[f"{m}.{packed}"], want_p)
            assert torch.equal(new[f"{m}.weight_scale"], want_s)
            # the reported error is the error of what was written, recomputed
            deq = dequantize_mxfp4(new[f"{m}.{packed}"], new[f"{m}.weight_scale"], torch.float32)
            diff = (deq.double() - w.double()).abs()
            err = errors[f"{m}.{packed}"]
            assert err["max_abs"] == pytest.approx(float(diff.max()), rel=1e-9)
            assert err["rmse"] == pytest.approx(math.sqrt(float((diff**2).mean())), rel=1e-9)
            assert err["max_abs"] == pytest.approx(want_err.max_abs, rel=1e-9)
    listed = skip_list(out)
    assert not [e for e in listed if ".shared_expert." in e]
    assert f"{P}.0.mlp.shared_expert_gate" in listed
    # every other tensor is unchanged
    for name, t in old.items():
        if ".shared_expert." not in name:
            assert torch.equal(new[name].view(torch.uint8), t.view(torch.uint8)), name


def test_nvfp4_global_scales_unified_only_with_unsafe_fixes(tmp_path):
    src = REAL / "llmc-qwen3_5_moe-NVFP4"
    plain = fix(src, tmp_path / "plain")
    assert plain.status == Status.REJECTED and not (tmp_path / "plain").exists()
    [rej] = [r for r in plain.plan.rejected if r.blocking]
    assert rej.finding.code == "QS403" and "--unsafe-fixes" in rej.reason
    result = fix(src, tmp_path / "out", unsafe=True)
    assert result.status == Status.FIXED
    out = tmp_path / "out"
    assert "QS403" not in {f.code for f in check(read_checkpoint(out)).findings}
    old, new = load(src), load(out)
    scheme = resolve_quantization(read_checkpoint(src)).modules[f"{LA}.in_proj_qkv"].scheme
    g = {m: new[f"{LA}.{m}.weight_global_scale"] for m in ("in_proj_qkv", "in_proj_z")}
    assert torch.equal(g["in_proj_qkv"], g["in_proj_z"])
    errors = manifest_errors(out)
    for m in ("in_proj_qkv", "in_proj_z"):
        packed = old[f"{LA}.{m}.weight_packed"]
        assert torch.equal(new[f"{LA}.{m}.weight_packed"], packed)  # FP4 codes untouched
        ones = {
            "weight_packed": packed,
            "weight_scale": torch.ones_like(old[f"{LA}.{m}.weight_scale"]),
            "weight_global_scale": torch.ones(1),
        }
        fp4 = dequantize(ones, scheme).double()  # the E2M1 values, exact in BF16

        def weights(
            t: dict[str, torch.Tensor], m: str = m, fp4: torch.Tensor = fp4
        ) -> torch.Tensor:
            mult = (
                t[f"{LA}.{m}.weight_scale"].double() / t[f"{LA}.{m}.weight_global_scale"].double()
            )
            return fp4 * mult.repeat_interleave(16, 1)

        diff = (weights(new) - weights(old)).abs()
        err = errors[f"{LA}.{m}.weight_scale"]
        assert err["max_abs"] == pytest.approx(float(diff.max()), rel=1e-9, abs=1e-15)
        assert err["rmse"] == pytest.approx(math.sqrt(float((diff**2).mean())), rel=1e-9, abs=1e-15)
    assert errors[f"{LA}.in_proj_z.weight_scale"]["max_abs"] > 0  # the shard that was rescaled


def test_quantized_head_the_engine_cannot_use_is_dequantized(tmp_path):
    b = qwen3_5_moe("ct-fp8", ignore=[e for e in CT_IGNORE if e != "lm_head"])
    del b.tensors["lm_head.weight"]
    b.tensors.update(ct_fp8("lm_head", 256, 128, torch.Generator().manual_seed(3)))
    src = b.write(tmp_path)
    assert "QS206" in {
        f.code for f in check(read_checkpoint(src), CheckOptions(engine="vllm==0.19.1")).findings
    }
    assert fix(src, tmp_path / "plain", engine="vllm==0.19.1").status == Status.REJECTED
    result = fix(src, tmp_path / "out", engine="vllm==0.19.1", unsafe=True)
    assert result.status == Status.FIXED
    old, new = load(src), load(tmp_path / "out")
    scheme = resolve_quantization(read_checkpoint(src)).modules["lm_head"].scheme
    want = dequantize(
        {n: old[f"lm_head.{n}"] for n in ("weight", "weight_scale", "input_scale")}, scheme
    )
    assert new["lm_head.weight"].dtype == torch.bfloat16 and torch.equal(
        new["lm_head.weight"], want
    )
    assert not [n for n in new if n.startswith("lm_head.") and n != "lm_head.weight"]
    assert "lm_head" in skip_list(tmp_path / "out")
    codes = {
        f.code
        for f in check(
            read_checkpoint(tmp_path / "out"), CheckOptions(engine="vllm==0.19.1")
        ).findings
    }
    assert "QS206" not in codes
