from pathlib import Path

import pytest
from builders import qwen3_5_moe

from qscale import CheckOptions, check, read_checkpoint
from rules.helpers import run

REAL = Path(__file__).parents[1] / "fixtures" / "real"
P = r"model\.language_model\.layers"


def test_config_names_more_experts_than_stored(tmp_path):
    findings = run(qwen3_5_moe("ct-fp8").set_config("/text_config/num_experts", 4), tmp_path,
                   "QS208")
    assert len(findings) == 2  # both MoE layers
    assert "2 experts stored (0–1), config `num_experts` = 4" in findings[0].message


def test_a_pruned_expert_in_the_middle(tmp_path):
    built = qwen3_5_moe("bf16").drop(rf"{P}\.0\.mlp\.experts\.0\.")
    [f] = run(built, tmp_path, "QS208")
    assert "layers.0.mlp.experts" in f.location.tensor
    assert "1 experts stored (1–1, missing 0)" in f.message


def test_expert_size_disagrees_with_config(tmp_path):
    built = qwen3_5_moe("bf16").set_config("/text_config/moe_intermediate_size", 256)
    findings = run(built, tmp_path, "QS208")
    assert findings and all("moe_intermediate_size` = 256" in f.message for f in findings)


@pytest.mark.parametrize("scheme", ["bf16", "ct-w4a16", "ct-nvfp4", "quark-mxfp4"])
def test_near_miss_matching(tmp_path, scheme):
    assert run(qwen3_5_moe(scheme), tmp_path, "QS208") == []


@pytest.mark.parametrize("fixture", ["base-gpt_oss", "llmc-deepseek_v2-FP8",
                                     "llmc-qwen2_moe-W4A16", "llmc-qwen3_next-FP8"])
def test_near_miss_real_checkpoints(fixture):
    report = check(read_checkpoint(REAL / fixture), CheckOptions(select=["QS208"]))
    assert report.findings == ()


def test_huge_expert_index_in_a_name_is_bounded(tmp_path):
    """An expert index from a tensor name is not a size to loop over: the finding is built in
    bounded time, with the first missing indices only."""
    built = qwen3_5_moe("bf16").drop(rf"{P}\.0\.mlp\.experts\.1\.")
    first = next(n for n in built.tensors if ".layers.0.mlp.experts.0.gate_proj" in n)
    huge = first.replace("experts.0.", "experts.999999999999.")
    built = built.add(huge, built.tensors[first].clone())
    findings = [f for f in run(built, tmp_path, "QS208") if "layers.0." in f.location.tensor]
    assert any("missing 1, 2, 3, 4, 5" in f.message for f in findings), findings


def test_huge_config_count_is_refused_before_the_check(tmp_path):
    """`num_experts: 10**12` is a ConfigError at read time (nothing is sized by it)."""
    from qscale.errors import ConfigError

    root = qwen3_5_moe("ct-fp8").set_config("/text_config/num_experts", 10**12).write(tmp_path)
    with pytest.raises(ConfigError, match=r"/text_config/num_experts is 1000000000000"):
        read_checkpoint(root)


def test_largest_allowed_config_count_reads(tmp_path):
    """Near miss: a count at the bound reads, and QS208 reports it without a range."""
    from qscale.checkpoint import MAX_CONFIG_SIZE

    built = qwen3_5_moe("ct-fp8").set_config("/text_config/num_experts", MAX_CONFIG_SIZE)
    findings = run(built, tmp_path, "QS208")
    assert findings and f"config `num_experts` = {MAX_CONFIG_SIZE}" in findings[0].message
