import pytest
import torch
from builders import CT_IGNORE, qwen3_5_moe

from qscale import CheckOptions, check, read_checkpoint

QKVZ = "language_model.model.layers.0.linear_attn.in_proj_qkvz"
Z = r"model\.language_model\.layers\.0\.linear_attn\.in_proj_z"


def run(built, tmp_path, engine="vllm==0.33.0"):
    report = check(
        read_checkpoint(built.write(tmp_path)), CheckOptions(select=["QS402"], engine=engine)
    )
    return list(report.findings)


def half_quantized():
    """in_proj_z left BF16 and ignored while in_proj_qkv is FP8: one fused layer, two schemes."""
    return (
        qwen3_5_moe("ct-fp8", ignore=[*CT_IGNORE, "re:.*in_proj_z$"])
        .drop(rf"{Z}\.(weight_scale|input_scale)$")
        .retype(rf"{Z}\.weight$", torch.bfloat16)
    )


def test_partly_quantized_fused_layer_is_refused(tmp_path):
    [f] = run(half_quantized(), tmp_path)
    assert f.location.param == f"{QKVZ}.weight"
    assert "some but not all shards" in f.message and "`in_proj_z`: unquantized" in f.message


def test_vector_scale_on_a_tuple_shard_is_refused_by_vllm(tmp_path):
    qkv = "model.language_model.layers.0.linear_attn.in_proj_qkv.weight_scale"
    [f] = run(qwen3_5_moe("ct-fp8").reshape(qkv, (3,)), tmp_path)
    assert f.location.param == f"{QKVZ}.weight_scale"
    assert "assert loaded_weight.shape[0] == 1" in f.message


@pytest.mark.parametrize("engine", ["vllm==0.33.0", "vllm==0.19.1"])
def test_near_miss_uniformly_quantized(tmp_path, engine):
    assert run(qwen3_5_moe("ct-fp8"), tmp_path, engine) == []


def test_near_miss_sglang_splits_a_vector_scale(tmp_path):
    qkv = "model.language_model.layers.0.linear_attn.in_proj_qkv.weight_scale"
    assert run(qwen3_5_moe("ct-fp8").reshape(qkv, (3,)), tmp_path, "sglang==0.5.12") == []


def _modelopt(algo):
    b = qwen3_5_moe("modelopt-nvfp4")
    b.extra_files["hf_quant_config.json"]["quantization"]["quant_algo"] = algo
    return b


def test_modelopt_algorithm_vllm_does_not_load(tmp_path):
    [f] = run(_modelopt("MXFP4"), tmp_path)
    assert "does not support quant_algo MXFP4" in f.message
    assert f.location.file == "hf_quant_config.json"


def test_near_miss_modelopt_nvfp4(tmp_path):
    assert run(_modelopt("NVFP4"), tmp_path) == []


@pytest.mark.parametrize(("engine", "refused"), [("vllm==0.19.1", True), ("vllm==0.20.0", True),
                                                  ("vllm==0.33.0", False)])
def test_text_only_qwen3_5_class_on_vllm_before_0_22(tmp_path, engine, refused):
    # real vLLM 0.19.1 and 0.20.0 raised this on every text-only real-tool checkpoint
    built = qwen3_5_moe("ct-fp8-dynamic").set_config("/architectures", ["Qwen3_5MoeForCausalLM"])
    findings = run(built, tmp_path, engine)
    assert bool(findings) == refused
    if refused:
        [f] = findings
        assert f.location.key == "/architectures" and "vision_config" in f.message
