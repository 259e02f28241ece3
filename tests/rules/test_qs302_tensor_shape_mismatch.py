import pytest
from builders import qwen3_5_moe

from rules.helpers import run

P = "model.language_model.layers"
QKV = f"{P}.0.linear_attn.in_proj_qkv"


def test_vector_per_tensor_scale_on_in_proj_qkv(tmp_path):
    # ModelOpt-style [3] scale on the tuple shard: vLLM asserts shape[0] == 1.
    b = qwen3_5_moe("ct-fp8").reshape(f"{QKV}.weight_scale", (3,))
    [f] = run(b, tmp_path, "QS302")
    assert f.location.tensor == f"{QKV}.weight_scale"
    assert "has shape (3,), expected () or (1,)" in f.message


def test_block_grid_of_the_wrong_size(tmp_path):
    b = qwen3_5_moe("ct-fp8-block").reshape(f"{QKV}.weight_scale", (3, 1))
    [f] = run(b, tmp_path, "QS302")
    assert "expected (4, 1)" in f.message


def test_stale_weight_shape_disagrees_with_scales(tmp_path):
    b = qwen3_5_moe("ct-w4a16").set_value(f"{QKV}.weight_shape", [512, 256])
    findings = run(b, tmp_path, "QS302")
    assert {f.location.tensor for f in findings} == {f"{QKV}.weight_packed", f"{QKV}.weight_scale"}


@pytest.mark.parametrize("shape", [(), (1,)])
def test_near_miss_scalar_and_one_element_scales(tmp_path, shape):
    b = qwen3_5_moe("ct-fp8").reshape(f"{QKV}.weight_scale", shape)
    assert run(b, tmp_path, "QS302") == []


def test_per_channel_vector_without_trailing_dim(tmp_path):
    # vLLM 0.33 registers ChannelQuantScaleParameter [N, 1] and asserts equal shapes on load
    b = qwen3_5_moe("ct-fp8-dynamic").reshape(f"{QKV}.weight_scale", (512,))
    [f] = run(b, tmp_path, "QS302")
    assert f.location.tensor == f"{QKV}.weight_scale"
    assert "has shape (512,), expected (512, 1)" in f.message
    assert f.fix is not None  # the values are right: re-declaring the shape fixes it


def test_near_miss_per_channel_with_trailing_dim(tmp_path):
    b = qwen3_5_moe("ct-fp8-dynamic")
    assert tuple(b.tensors[f"{QKV}.weight_scale"].shape) == (512, 1)
    assert run(b, tmp_path, "QS302") == []
