import torch
from builders import qwen3_5_moe

from rules.helpers import run

P = "model.language_model.layers"


def test_scale_on_conv1d(tmp_path):
    # The Quark conv1d case vLLM refuses: conv1d is not a Linear layer.
    b = qwen3_5_moe("ct-fp8").add(f"{P}.0.linear_attn.conv1d.weight_scale", torch.ones(1))
    [f] = run(b, tmp_path, "QS203")
    assert f.location.tensor == f"{P}.0.linear_attn.conv1d.weight_scale"
    assert "not quantized" in f.message


def test_scale_on_ignored_module(tmp_path):
    b = qwen3_5_moe("ct-fp8").add("lm_head.weight_scale", torch.ones(1))
    [f] = run(b, tmp_path, "QS203")
    assert "ignored by `lm_head`" in f.message


def test_block_scale_under_per_tensor_scheme(tmp_path):
    b = qwen3_5_moe("ct-fp8").add(f"{P}.1.self_attn.o_proj.weight_scale_inv", torch.ones(1, 1))
    [f] = run(b, tmp_path, "QS203")
    assert "does not write `weight_scale_inv`" in f.message


def test_near_miss_kv_cache_scales_and_biases_are_allowed(tmp_path):
    b = (qwen3_5_moe("ct-fp8").add(f"{P}.1.self_attn.k_proj.k_scale", torch.ones(1))
         .add(f"{P}.1.self_attn.q_proj.bias", torch.zeros(256)))
    assert run(b, tmp_path, "QS203") == []
