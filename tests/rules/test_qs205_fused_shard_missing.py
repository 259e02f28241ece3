from pathlib import Path

import pytest
from builders import qwen3_5_moe

from rules.helpers import run

REAL = Path(__file__).parents[1] / "fixtures" / "real"
P = r"model\.language_model\.layers"


def test_missing_v_proj(tmp_path):
    [f] = run(qwen3_5_moe("bf16").drop(rf"{P}\.1\.self_attn\.v_proj\."), tmp_path, "QS205")
    assert f.location.param.endswith("layers.1.self_attn.qkv_proj.weight")
    assert "gets shard(s) q, k but not v" in f.message
    assert "`model.language_model.layers.1.self_attn.v_proj.weight`" in f.message


def test_missing_in_proj_z_of_the_tuple_shard_layer(tmp_path):
    [f] = run(qwen3_5_moe("ct-fp8").drop(rf"{P}\.0\.linear_attn\.in_proj_z\."), tmp_path,
              "QS205")
    assert f.location.param.endswith("in_proj_qkvz.weight") and "but not 3" in f.message


def test_missing_expert_projection(tmp_path):
    [f] = run(qwen3_5_moe("ct-w4a16").drop(rf"{P}\.1\.mlp\.experts\.1\.up_proj\."), tmp_path,
              "QS205")
    assert "layers.1.mlp.experts" in f.location.param
    assert "expert 1 has no up_proj weight" in f.message


@pytest.mark.parametrize("scheme", ["bf16", "ct-fp8", "ct-w4a16", "quark-mxfp4"])
def test_near_miss_complete(tmp_path, scheme):
    assert run(qwen3_5_moe(scheme), tmp_path, "QS205") == []


@pytest.mark.parametrize("fixture", ["llmc-qwen3_next-FP8", "llmc-deepseek_v2-FP8",
                                     "modelopt-qwen3_next-NVFP4"])
def test_near_miss_real_checkpoints(fixture):
    from qscale import CheckOptions, check, read_checkpoint
    report = check(read_checkpoint(REAL / fixture), CheckOptions(select=["QS205"]))
    assert report.findings == () and not report.skipped
