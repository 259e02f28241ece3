import torch
from builders import NV, H, fp8_block_inv, qwen3_5_moe

from qscale import CheckOptions, Severity, check, read_checkpoint
from qscale.layout import Deployment

GDN = "model.language_model.layers.0.linear_attn"
BA = "language_model.model.layers.0.linear_attn.in_proj_ba"


def block_fp8_in_proj_ba():
    """Qwen3-Next-style: in_proj_b / in_proj_a (4 rows each) quantized with 128x128 blocks."""
    built = qwen3_5_moe("fp8-block")
    keep = built.config["quantization_config"]["modules_to_not_convert"]
    built.set_config(
        "/quantization_config/modules_to_not_convert",
        [m for m in keep if not m.endswith(("in_proj_a", "in_proj_b"))],
    )
    g = torch.Generator().manual_seed(1)
    for leaf in ("in_proj_b", "in_proj_a"):
        built.drop(rf"{GDN}\.{leaf}\.weight$")
        for name, t in fp8_block_inv(f"{GDN}.{leaf}", NV, H, g).items():
            built.add(name, t)
    return built


def run(built, tmp_path, engine=None, **layout):
    report = check(
        read_checkpoint(built.write(tmp_path)),
        CheckOptions(select=["QS504", "QS503"], engine=engine, deployment=Deployment(**layout)),
    )
    assert not report.crashed, report.crashed
    return list(report.findings)


def test_partial_block_is_noted_at_tp1(tmp_path):
    found = run(block_fp8_in_proj_ba(), tmp_path, "vllm==0.20.0")
    [note] = [f for f in found if f.code == "QS504"]
    assert note.severity == Severity.INFO and note.location.param == BA
    assert "output partition(s) [4, 4] of block_n=128 are not whole blocks" in note.message
    # merged at TP=1: vLLM exempts quant_method fp8 (warning), SGLang refuses (class 24)
    [merged] = [f for f in found if f.code == "QS503"]
    assert merged.severity == Severity.WARNING and merged.location.param == BA


def test_sglang_refuses_the_partial_first_partition_at_tp1(tmp_path):
    found = run(block_fp8_in_proj_ba(), tmp_path, "sglang==0.5.12")
    [merged] = [f for f in found if f.code == "QS503"]
    assert merged.severity == Severity.ERROR
    assert "Weight output_partition_size = 4 is not divisible" in merged.message


def test_near_miss_whole_blocks(tmp_path):
    assert run(qwen3_5_moe("fp8-block"), tmp_path, "vllm==0.20.0") == []
