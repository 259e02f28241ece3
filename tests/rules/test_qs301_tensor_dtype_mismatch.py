import torch
from builders import qwen3_5_moe

from rules.helpers import run

P = "model.language_model.layers"


def test_float_scale_where_e8m0_bytes_are_expected(tmp_path):
    b = qwen3_5_moe("ct-mxfp4").retype(rf"{P}\.0\.mlp\.experts\.0\.up_proj\.weight_scale$",
                                       torch.bfloat16)
    [f] = run(b, tmp_path, "QS301")
    assert f.location.tensor == f"{P}.0.mlp.experts.0.up_proj.weight_scale"
    assert "is BF16, expected F8_E8M0 or U8 for MXFP4" in f.message


def test_near_miss_f32_scale_instead_of_bf16_is_accepted(tmp_path):
    b = qwen3_5_moe("ct-fp8").retype(r"\.weight_scale$", torch.float32)
    assert run(b, tmp_path, "QS301") == []
