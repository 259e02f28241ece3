from pathlib import Path

from qscale import CheckOptions, Severity, check, read_checkpoint
from qscale.layout import Deployment

REAL = Path(__file__).resolve().parents[1] / "fixtures" / "real"
O_PROJ = "language_model.model.layers.1.self_attn.o_proj"


def run(name, engine=None, **layout):
    report = check(
        read_checkpoint(REAL / name),
        CheckOptions(select=["QS505"], engine=engine, deployment=Deployment(**layout)),
    )
    assert not report.crashed, report.crashed
    return list(report.findings)


def test_w4a16_group_128_at_tp2():
    found = run("llmc-qwen3_5_moe-W4A16", tp=2)
    o = next(f for f in found if f.location.param == O_PROJ)
    assert o.severity == Severity.ERROR
    assert "input per rank 64 at TP=2 is not a multiple of the W4A16 g128 group size 128" \
           in o.message
    assert "The input size is not aligned with the quantized weight shape" in o.message
    assert o.message.endswith("TP that works: 1")
    experts = [f for f in found if ".experts." in (f.location.tensor or "")]
    assert experts and "at MoE TP=2" in experts[0].message


def test_quark_ocp_mx_group_32():
    # routed experts MXFP4 (Quark OCP-MX): moe_intermediate 128 over MoE TP=8 -> 16 per rank
    [f] = run("quark-qwen3_5_moe-MXFP4-f2f", tp=1, dp=8)
    assert "MXFP4 group size 32" in f.message and "OCP MX linear layer" in f.message


def test_near_miss_groups_stay_whole():
    assert run("llmc-qwen3_5_moe-W4A16") == []
    assert run("llmc-qwen3_5_moe-NVFP4", tp=2) == []  # 64 per rank, group 16
    assert run("quark-qwen3_5_moe-MXFP4-f2f", tp=1, dp=4) == []  # 32 per rank, group 32
