from pathlib import Path

import pytest
from builders import qwen3_5_moe
from cli_runner import cli_in_process

from qscale import CheckOptions, Severity, check, read_checkpoint
from qscale.layout import Deployment, Platform

REAL = Path(__file__).resolve().parents[1] / "fixtures" / "real"
QUARK = REAL / "quark-qwen3_5_moe-MXFP4-f2f"  # shared expert BF16 and in Quark's exclude
LLMC = REAL / "llmc-qwen3_5_moe-MXFP4"  # shared expert BF16 and in compressed-tensors' ignore
AITER = Platform.ROCM_AITER


def run(path, engine, **layout):
    report = check(
        read_checkpoint(path),
        CheckOptions(select=["QS601"], engine=engine, deployment=Deployment(**layout)),
    )
    assert not report.crashed, report.crashed
    return list(report.findings)


def test_sglang_before_0_5_11_fuses_the_excluded_bf16_shared_expert():
    [f] = run(QUARK, "sglang==0.5.10", platform=AITER)
    assert f.severity == Severity.ERROR
    assert "the shared expert is BF16 in 2 layer(s) while the routed experts are MXFP4" in f.message
    assert "fuses it into the routed-expert tensor" in f.message
    # identified from the config and from the files, and the two agree
    assert "the config leaves 6 shared-expert module(s) unquantized (excluded by" in f.message
    assert "6 are stored BF16 on disk" in f.message and "disagree" not in f.message
    assert f.location.tensor.startswith("model.language_model.layers.0.mlp.shared_expert.")
    assert f.fix is not None and "0.5.11" in f.fix.title


@pytest.mark.parametrize("engine", ["sglang==0.5.11", "sglang==0.5.12", "sglang==0.5.23"])
def test_sglang_from_0_5_11_refuses_fusion(engine):
    [f] = run(QUARK, engine, platform=AITER)
    assert f.severity == Severity.INFO
    assert "keeps it a separate MLP: Quark's exclude list names the shared expert" in f.message


def test_sglang_0_5_23_converts_online_when_enforced():
    [f] = run(QUARK, "sglang==0.5.23", platform=AITER, enforce_shared_experts_fusion=True)
    assert f.severity == Severity.INFO and "converting it online" in f.message


def test_compressed_tensors_ignore_list_is_not_seen_by_sglang_gate():
    [f] = run(LLMC, "sglang==0.5.12", platform=AITER)
    assert f.severity == Severity.WARNING and "may fuse" in f.message
    assert "ignored by" in f.message


def test_config_and_files_disagree(tmp_path):
    # BF16 shared expert on disk, but the exclude list does not name it: the config quantizes it
    built = qwen3_5_moe("quark-mxfp4", shared_expert="bf16",
                        ignore=["lm_head", "re:.*mlp.gate$", "re:.*shared_expert_gate$",
                                "re:.*in_proj_a$", "re:.*in_proj_b$"])
    [f] = run(built.write(tmp_path), "sglang==0.5.12", platform=AITER)
    assert f.severity == Severity.ERROR  # SGLang's gate sees no exclusion and fuses it
    assert "config and files disagree" in f.message
    assert "stored BF16 but quantized by the config" in f.message


@pytest.mark.parametrize(
    ("engine", "layout"),
    [
        # CUDA: SGLang fuses the Qwen shared expert only with AITER
        ("sglang==0.5.10", {"platform": Platform.CUDA}),
        # no platform named, but AITER would not fuse either: the platform does not decide
        ("sglang==0.5.12", {}),
        ("vllm==0.20.0", {}),
        ("sglang==0.5.10", {"platform": AITER, "disable_shared_experts_fusion": True}),
        ("sglang==0.5.10", {"platform": AITER, "a2a_backend": "deepep"}),
        ("vllm==0.20.0", {"platform": AITER}),  # vLLM refuses a mismatched shared expert
    ],
)
def test_near_miss_fusion_off_or_refused(engine, layout):
    [f] = run(QUARK, engine, **layout)
    assert f.severity == Severity.INFO and "keeps it a separate MLP" in f.message


def test_near_miss_shared_expert_in_the_routed_format():
    assert run(REAL / "llmc-qwen3_5_moe-FP8", "sglang==0.5.10", platform=AITER) == []


def test_unnamed_platform_that_decides_is_a_warning_naming_the_flag():
    # SGLang 0.5.10 fuses the excluded BF16 shared expert on ROCm/AITER (an error there) and
    # keeps it separate on CUDA: with no --platform, the verdict depends on the platform
    [f] = run(QUARK, "sglang==0.5.10")
    assert f.severity == Severity.WARNING
    assert "on cuda (assumed: no --platform)" in f.message
    assert "--platform rocm-aiter" in f.message and "SGLANG_USE_AITER=1" in f.message
    assert "fuses" in f.message
    assert f.fix is not None and "--platform" in f.fix.title


def test_unnamed_platform_warning_through_the_cli(tmp_path):
    out = cli_in_process("check", str(QUARK), "--engine", "sglang==0.5.10", "--select", "QS601",
                         "-f", "json")
    [f] = __import__("json").loads(out.stdout)["findings"]
    assert f["severity"] == "warning" and "SGLANG_USE_AITER=1" in f["message"]
    named = cli_in_process("check", str(QUARK), "--engine", "sglang==0.5.10", "--select",
                           "QS601", "-f", "json", "--platform", "cuda")
    [g] = __import__("json").loads(named.stdout)["findings"]
    assert g["severity"] == "info"
