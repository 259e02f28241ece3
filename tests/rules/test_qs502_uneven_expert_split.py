from pathlib import Path

from qscale import CheckOptions, check, read_checkpoint
from qscale.layout import Deployment

REAL = Path(__file__).resolve().parents[1] / "fixtures" / "real"
CKPT = REAL / "llmc-qwen3_5_moe-FP8_DYNAMIC"  # 4 routed experts per layer


def run(engine=None, **layout):
    report = check(
        read_checkpoint(CKPT),
        CheckOptions(select=["QS502"], engine=engine, deployment=Deployment(**layout)),
    )
    assert not report.crashed, report.crashed
    return list(report.findings)


def test_sglang_needs_an_even_expert_split():
    [f] = run("sglang==0.5.12", tp=3, ep=3)
    assert "4 experts do not split evenly over EP=3" in f.message
    assert "num_experts % moe_ep_size == 0" in f.message
    assert f.message.endswith("EP that works: 1, 2, 4")
    assert f.location.tensor.startswith("model.language_model.layers.0.mlp.experts.")


def test_more_ep_ranks_than_experts():
    [f] = run(tp=1, dp=8, enable_expert_parallel=True)
    assert "EP=8 is more ranks than the 4 experts" in f.message


def test_near_miss_vllm_spreads_a_remainder():
    assert run("vllm==0.20.0", tp=1, dp=3, enable_expert_parallel=True) == []


def test_near_miss_even_split():
    assert run("sglang==0.5.12", tp=4, ep=4) == []
