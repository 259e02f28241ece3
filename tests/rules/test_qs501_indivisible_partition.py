from pathlib import Path

from qscale import CheckOptions, Severity, check, read_checkpoint
from qscale.layout import Deployment

REAL = Path(__file__).resolve().parents[1] / "fixtures" / "real"
# 2 attention heads, 2 GDN key / 4 value heads, moe_intermediate_size 128, per-channel FP8
CKPT = REAL / "llmc-qwen3_5_moe-FP8_DYNAMIC"


def run(engine=None, **layout):
    report = check(
        read_checkpoint(CKPT),
        CheckOptions(select=["QS501"], engine=engine, deployment=Deployment(**layout)),
    )
    assert not report.crashed, report.crashed
    return list(report.findings)


def test_heads_that_do_not_split_over_tp():
    found = run(tp=4)
    keys = {f.location.key for f in found if f.location.key}
    assert keys == {"/text_config/num_attention_heads", "/text_config/linear_num_key_heads"}
    heads = next(f for f in found if f.location.key.endswith("/num_attention_heads"))
    assert heads.severity == Severity.ERROR
    assert "2 attention heads do not split over TP=4" in heads.message
    assert heads.message.endswith("TP that works: 1, 2")
    assert heads.fix is not None and heads.location.file == "config.json"


def test_merged_partition_that_does_not_split_over_tp():
    # in_proj_ba has partitions [4, 4] (linear_num_value_heads): TP=8 cannot split them
    [f] = [f for f in run(tp=8) if (f.location.param or "").endswith("in_proj_ba")]
    assert "output partitions [4, 4] do not split over TP=8" in f.message
    assert f.location.tensor.endswith(("in_proj_a.weight", "in_proj_b.weight"))


def test_expert_intermediate_over_moe_tp():
    # vLLM without expert parallel splits every expert over TP x DP = 6 ranks: 128 % 6 != 0
    [f] = [f for f in run(tp=2, dp=3) if ".experts" in (f.location.tensor or "")]
    assert "moe_intermediate_size 128 does not split over MoE TP=6" in f.message
    assert "enable expert parallel" in f.message


def test_near_miss_expert_parallel_keeps_experts_whole():
    assert run(tp=2, dp=3, enable_expert_parallel=True) == []


def test_near_miss_tp_that_divides_everything():
    assert run(tp=2) == []
    assert run() == []
