"""Each seed bug on a real-tool checkpoint plus layout flags: reported with the affected
version, not with the fixed one."""

import json
import shutil
from pathlib import Path

import pytest

from qscale import CheckOptions, Severity, check, read_checkpoint
from qscale.layout import Deployment, Platform

REAL = Path(__file__).resolve().parents[1] / "fixtures" / "real"
AITER = Platform.ROCM_AITER
SP = {"tp": 2, "dp": 2, "enable_expert_parallel": True}  # vLLM sequence-parallel MoE


def run(path, engine, **layout):
    report = check(
        read_checkpoint(path),
        CheckOptions(select=["QS801"], engine=engine, deployment=Deployment(**layout)),
    )
    assert not report.crashed, report.crashed
    return list(report.findings)


def test_seed_000_sequence_parallel_shared_expert_on_vllm_0_19():
    found = run(REAL / "llmc-qwen3_5_moe-FP8_DYNAMIC", "vllm==0.19.1", **SP)
    [f] = found
    assert f.severity == Severity.ERROR and "vLLM PR #39181" in f.message
    assert "sequence-parallel MoE" in f.message and "1/2 slice" in f.message
    assert "fixed in 0.20.0" in f.message and "0.20.0" in f.fix.title
    assert f.location.tensor.startswith("model.language_model.layers.0.mlp.shared_expert.")


def test_seed_000_near_misses():
    ckpt = REAL / "llmc-qwen3_5_moe-FP8_DYNAMIC"
    assert run(ckpt, "vllm==0.20.0", **SP) == []
    assert run(ckpt, "vllm==0.19.1", tp=2, enable_expert_parallel=True) == []  # DP=1: no SP


def test_seed_001_fused_shared_expert_counted_ep_times():
    ckpt = REAL / "quark-qwen3_5_moe-FP8-la-f2f"  # shared expert quantized like the experts
    [f] = run(ckpt, "sglang==0.5.12", platform=AITER, tp=2, ep=2)
    assert f.severity == Severity.ERROR and "SGLang PR #26845" in f.message
    assert "shared expert output counted 2× at EP=2" in f.message
    assert "DeepEP-class" in f.fix.title and "--disable-shared-experts-fusion" in f.fix.title


@pytest.mark.parametrize(
    ("engine", "layout"),
    [
        ("sglang==0.5.13", {"platform": AITER, "tp": 2, "ep": 2}),  # fixed
        ("sglang==0.5.12", {"platform": AITER, "tp": 2, "ep": 2, "a2a_backend": "mooncake"}),
        ("sglang==0.5.12", {"platform": AITER, "tp": 2, "ep": 2,
                            "disable_shared_experts_fusion": True}),
        ("sglang==0.5.12", {"platform": AITER, "tp": 2}),  # EP=1
        ("sglang==0.5.12", {"tp": 2, "ep": 2}),  # CUDA: not fused
    ],
)
def test_seed_001_near_misses(engine, layout):
    assert run(REAL / "quark-qwen3_5_moe-FP8-la-f2f", engine, **layout) == []


def test_seed_002_adds_the_pr_context_to_qs401_without_repeating_the_error():
    found = run(REAL / "llmc-qwen3_5_moe-FP8", "vllm==0.19.1")
    [f] = found
    assert f.severity == Severity.INFO and "vLLM PR #38517" in f.message
    assert "is the engine bug behind QS401" in f.message
    assert f.location.param.endswith("linear_attn.in_proj_qkvz.weight_scale")
    both = check(read_checkpoint(REAL / "llmc-qwen3_5_moe-FP8"),
                 CheckOptions(select=["QS401", "QS801"], engine="vllm==0.19.1")).findings
    assert {(x.code, x.severity) for x in both} >= {("QS401", Severity.ERROR)}


def test_seed_002_fixed_version():
    assert run(REAL / "llmc-qwen3_5_moe-FP8", "vllm==0.20.0") == []


def test_seed_003_excluded_bf16_shared_expert_fused_by_sglang_0_5_10():
    [f] = run(REAL / "quark-qwen3_5_moe-MXFP4-f2f", "sglang==0.5.10", platform=AITER)
    assert f.severity == Severity.INFO and "SGLang PR #22948" in f.message
    assert "behind QS601" in f.message
    assert run(REAL / "quark-qwen3_5_moe-MXFP4-f2f", "sglang==0.5.11", platform=AITER) == []


def test_seed_004_double_reduction_in_development_builds():
    ckpt = REAL / "llmc-qwen3_5_moe-FP8_DYNAMIC"
    [f] = run(ckpt, "vllm==0.19.2.dev40+g809d83c2d", tp=2)
    assert f.severity == Severity.ERROR and "vLLM PR #40673" in f.message
    assert "809d83c2dc2f74d52fe852b09d0e38c91c7d8334" in f.message
    assert "no release shipped the bug" in f.message
    for engine in ("vllm==0.19.1", "vllm==0.20.0"):
        assert run(ckpt, engine, tp=2) == []
    assert run(ckpt, "vllm==0.19.2.dev40+g809d83c2d") == []  # one GPU: nothing to reduce


def test_qwen3_moe_shared_expert_under_sequence_parallel_is_not_fixed(tmp_path):
    ckpt = tmp_path / "qwen3moe"
    shutil.copytree(REAL / "llmc-qwen2_moe-W4A16", ckpt)
    assert run(ckpt, "vllm==0.33.0", **SP) == []  # Qwen2-MoE: not the affected class
    config = json.loads((ckpt / "config.json").read_text())
    config["architectures"] = ["Qwen3MoeForCausalLM"]
    (ckpt / "config.json").write_text(json.dumps(config))
    [f] = run(ckpt, "vllm==0.33.0", **SP)
    assert "PR #41763 (closed)" in f.message and "not fixed in any release" in f.message
