from pathlib import Path

from qscale import CheckOptions, Severity, check, read_checkpoint
from qscale.layout import Deployment

REAL = Path(__file__).resolve().parents[1] / "fixtures" / "real"
CKPT = REAL / "llmc-qwen3_5_moe-W4A16"  # int4 packed 8 per int32 along the input
O_PROJ = "language_model.model.layers.1.self_attn.o_proj"


def run(**layout):
    report = check(
        read_checkpoint(CKPT), CheckOptions(select=["QS506"], deployment=Deployment(**layout))
    )
    assert not report.crashed, report.crashed
    return list(report.findings)


def test_int4_slice_starting_inside_an_int32():
    found = run(tp=32)  # o_proj input 128 / 32 = 4 values per rank
    o = next(f for f in found if f.location.param == O_PROJ)
    assert o.severity == Severity.ERROR
    assert "input per rank 4 at TP=32 is not a multiple of the 8 values packed per int32" \
           in o.message
    assert o.message.endswith("TP that works: 1, 2, 4, 8, 16")


def test_near_miss_whole_int32_per_rank():
    assert run(tp=16) == []  # 8 values per rank
