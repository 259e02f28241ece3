"""`qscale fix` outputs loaded by real vLLM (opt-in: QSCALE_ORACLE_CKPTS, and the oracle venvs of
oracle/README.md; about a minute per load on 2 cores).

- Seed 002: the llm-compressor FP8 Qwen3.5-MoE checkpoint fixed for vllm==0.19.1 loads in real
  vLLM 0.19.1 (and 0.20.0, 0.32.0) with every `in_proj_qkvz` scale row holding its partition's
  original scale, and fp8 × scale bit-identical to the original's.
- Seed 003: the Quark and llm-compressor MXFP4 checkpoints with BF16 shared experts, fixed with
  --unsafe-fixes, load in real vLLM 0.32.0 with MXFP4 shared experts holding the bytes qscale
  wrote, and the reported error matches one recomputed from what vLLM loaded.
"""

from __future__ import annotations

import json
import math
import os
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from qscale.fix import Status, fix
from qscale.fix.numerics import dequantize_mxfp4
from qscale.layout import Deployment, Platform

REPO = Path(__file__).parent.parent
sys.path.insert(0, str(REPO / "oracle"))
from vllm_load import load_in_vllm, venv_python  # noqa: E402

REAL = REPO / "tests" / "fixtures" / "real"
LA = "model.language_model.layers.0.linear_attn"
QKVZ = "language_model.model.layers.0.linear_attn.in_proj_qkvz"

pytestmark = [
    pytest.mark.oracle,
    pytest.mark.skipif(
        not os.environ.get("QSCALE_ORACLE_CKPTS"), reason="opt-in: set QSCALE_ORACLE_CKPTS"
    ),
]


def _need(version: str) -> None:
    if venv_python(version) is None:
        pytest.skip(f"no vLLM {version} venv")


@pytest.mark.parametrize("version", ["0.19.1", "0.20.0", "0.32.0"])
@pytest.mark.parametrize("source", [REAL / "llmc-qwen3_5_moe-FP8"], ids=["llmc-FP8"])
def test_seed_002_fixed_checkpoint_loads_bit_identically(tmp_path, source, version):
    _need(version)
    out = tmp_path / "fixed"
    assert fix(source, out, engine="vllm==0.19.1").status == Status.FIXED
    status, params = load_in_vllm(out, version, tmp_path / "vllm")
    assert status["load"] == "ok", status
    assert status["vllm_version"] == version
    src = load_file(str(source / "model.safetensors"))
    scale, weight = params[f"{QKVZ}.weight_scale"], params[f"{QKVZ}.weight"]
    assert scale.shape == (768, 1)  # one row per output channel: [128, 128, 256, 256]
    s_qkv = src[f"{LA}.in_proj_qkv.weight_scale"].float()
    s_z = src[f"{LA}.in_proj_z.weight_scale"].float()
    assert torch.equal(scale[:512], s_qkv.expand(512, 1))  # partitions 0, 1, 2
    assert torch.equal(scale[512:], s_z.expand(256, 1))  # partition 3
    w_qkv, w_z = src[f"{LA}.in_proj_qkv.weight"], src[f"{LA}.in_proj_z.weight"]
    assert torch.equal(weight.view(torch.uint8), torch.cat([w_qkv, w_z]).view(torch.uint8))
    original = torch.cat([w_qkv.float() * s_qkv, w_z.float() * s_z])
    assert torch.equal(weight.float() * scale, original)
    assert torch.isfinite(weight.float() * scale).all()


@pytest.mark.parametrize(
    ("source", "packed"),
    [
        (REAL / "quark-qwen3_5_moe-MXFP4-f2f", "weight"),
        (REAL / "llmc-qwen3_5_moe-MXFP4", "weight_packed"),
    ],
    ids=["quark", "llmc"],
)
def test_seed_003_mxfp4_shared_experts_load_in_vllm(tmp_path, source, packed):
    _need("0.32.0")
    out = tmp_path / "fixed"
    # fixed for a layout that fuses the shared expert (SGLang 0.5.10 on ROCm with AITER): on
    # CUDA check asks for nothing and the unsafe fix quantizes nothing
    rocm = Deployment(platform=Platform.ROCM_AITER)
    result = fix(source, out, unsafe=True, engine="sglang==0.5.10", deployment=rocm)
    assert result.status == Status.FIXED
    status, params = load_in_vllm(out, "0.32.0", tmp_path / "vllm")
    assert status["load"] == "ok", status
    orig = load_file(str(next(source.glob("*.safetensors"))))
    fixed: dict[str, torch.Tensor] = {}
    for f in out.glob("*.safetensors"):
        fixed.update(load_file(str(f)))
    errors = {
        r["tensor"]: r["error"]
        for r in json.loads((out / "qscale-fix-manifest.json").read_text())["tensors"]
        if r.get("error")
    }
    for layer in (0, 1):
        hf = f"model.language_model.layers.{layer}.mlp.shared_expert"
        eng = f"language_model.model.layers.{layer}.mlp.shared_expert"
        for vllm_param, parts in (
            ("gate_up_proj", ("gate_proj", "up_proj")),
            ("down_proj", ("down_proj",)),
        ):
            got_w = params[f"{eng}.{vllm_param}.{packed}"]
            got_s = params[f"{eng}.{vllm_param}.weight_scale"]
            assert got_w.dtype == torch.uint8 and got_s.dtype == torch.uint8
            assert torch.equal(got_w, torch.cat([fixed[f"{hf}.{p}.{packed}"] for p in parts]))
            assert torch.equal(got_s, torch.cat([fixed[f"{hf}.{p}.weight_scale"] for p in parts]))
            rows = 0
            for p in parts:  # the error each tensor reports, recomputed from vLLM's parameters
                w0 = orig[f"{hf}.{p}.weight"].double()
                n = w0.shape[0]
                deq = dequantize_mxfp4(
                    got_w[rows : rows + n], got_s[rows : rows + n], torch.float32
                )
                rows += n
                err = (deq.double() - w0).abs()
                reported = errors[f"{hf}.{p}.{packed}"]
                assert reported["max_abs"] == pytest.approx(float(err.max()), rel=1e-9)
                rmse = math.sqrt(float((err**2).mean()))
                assert reported["rmse"] == pytest.approx(rmse, rel=1e-9)


DS = "model.layers.0.self_attn"


def test_sglang_deepseek_fix_still_loads_in_vllm(tmp_path):
    """The llm-compressor FP8 DeepSeek-V2 fixed for SGLang (per-channel A-projection weight
    scales, 0-d input scales) loads in real vLLM 0.32.0 with fp8 × scale unchanged."""
    _need("0.32.0")
    source = REAL / "llmc-deepseek_v2-FP8"
    out = tmp_path / "fixed"
    assert fix(source, out, engine="sglang==0.5.23").status == Status.FIXED
    status, params = load_in_vllm(out, "0.32.0", tmp_path / "vllm")
    assert status["load"] == "ok", status
    src = load_file(str(source / "model.safetensors"))
    q, kv = f"{DS}.q_a_proj", f"{DS}.kv_a_proj_with_mqa"
    scale = params[f"{DS}.fused_qkv_a_proj.weight_scale"]
    weight = params[f"{DS}.fused_qkv_a_proj.weight"]
    s_q, s_kv = src[f"{q}.weight_scale"].float(), src[f"{kv}.weight_scale"].float()
    n_q = src[f"{q}.weight"].shape[0]
    assert torch.equal(scale[:n_q].float(), s_q.expand(n_q, 1))
    assert torch.equal(scale[n_q:].float(), s_kv.expand(scale.shape[0] - n_q, 1))
    original = torch.cat([src[f"{q}.weight"].float() * s_q, src[f"{kv}.weight"].float() * s_kv])
    assert torch.equal(weight.float() * scale.float(), original)
    loaded_in = params[f"{DS}.fused_qkv_a_proj.input_scale"].float().reshape(-1)
    assert torch.equal(loaded_in.max().reshape(1), src[f"{q}.input_scale"].float().reshape(1))
