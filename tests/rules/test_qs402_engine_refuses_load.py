from pathlib import Path

import pytest
import torch
from builders import CT_IGNORE, gpt_oss, qwen3_5_moe

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


# gpt-oss experts stored one by one (llm-compressor's layout). Every case below was loaded in
# real vLLM (0.32.0 for the 0.33.0 profile; 0.19.1; the committed fixtures in 0.20.0 too).
GPT_OSS_BIAS = "model.layers.0.mlp.experts.0.down_proj.bias"
NO_EXPERT_BIAS = r"experts\.\d+\.\w+_proj\.bias$"
REAL = Path(__file__).parent.parent / "fixtures" / "real"


def _check_dir(path, engine):
    report = check(read_checkpoint(path), CheckOptions(select=["QS402"], engine=engine))
    return list(report.findings)


@pytest.mark.parametrize("scheme", ["ct-fp8", "ct-fp8-dynamic", "ct-fp8-block", "ct-mxfp4",
                                    "ct-nvfp4"])
def test_gpt_oss_per_expert_bias_without_expert_bias_parameter(tmp_path, scheme):
    # vLLM 0.32: "KeyError: 'layers.0.mlp.experts.0.w2_bias'" — these MoE methods build no
    # `experts.routed_experts.w2_bias` for the streamed per-expert loader to fill
    [f] = run(gpt_oss(scheme), tmp_path)
    assert f.location.tensor == GPT_OSS_BIAS and f.location.file == "model.safetensors"
    assert "`model.layers.0.mlp.experts.0.w2_bias`" in f.message
    assert "builds no expert biases" in f.message and "(KeyError)" in f.message
    assert "3 more per-expert tensor(s)" in f.message  # 2 layers x 2 experts
    assert "fused per layer" in f.fix.title


def test_near_miss_gpt_oss_w4a16_experts_have_bias_parameters(tmp_path):
    assert run(gpt_oss("ct-w4a16"), tmp_path) == []


def test_near_miss_gpt_oss_mxfp4_without_expert_biases(tmp_path):
    assert run(gpt_oss("ct-mxfp4").drop(NO_EXPERT_BIAS), tmp_path) == []


@pytest.mark.parametrize("engine", ["vllm==0.19.1", "vllm==0.20.0"])
def test_gpt_oss_per_expert_tensors_on_vllm_before_the_streamed_loader(tmp_path, engine):
    # the W4A16 export that 0.32 loads: older releases take only experts fused per layer
    [f] = run(gpt_oss("ct-w4a16"), tmp_path, engine)
    assert f.location.tensor == GPT_OSS_BIAS
    assert "fused per layer only" in f.message and "experts.0.w2_bias` and looks" in f.message


def test_gpt_oss_per_expert_scale_sliced_as_stacked_on_vllm_0_19(tmp_path):
    # no biases: the first per-expert tensor the loader takes is the w2 scale, which it slices
    # as [experts, ...]: "IndexError: too many indices for tensor of dimension 2"
    [f] = run(gpt_oss("ct-mxfp4").drop(NO_EXPERT_BIAS), tmp_path, "vllm==0.19.1")
    assert f.location.tensor == "model.layers.0.mlp.experts.0.down_proj.weight_scale"
    assert "(IndexError)" in f.message and "KeyError" not in f.message


@pytest.mark.parametrize(("fixture", "engine", "refused"), [
    ("llmc-gpt_oss-W4A16", "vllm==0.19.1", True),
    ("llmc-gpt_oss-W4A16", "vllm==0.20.0", True),
    ("llmc-gpt_oss-W4A16", "vllm==0.33.0", False),
    ("base-gpt_oss", "vllm==0.19.1", False),  # experts fused per layer, as vLLM reads them
    ("base-gpt_oss", "vllm==0.20.0", False),
    ("base-gpt_oss", "vllm==0.33.0", False),
])
def test_gpt_oss_real_tool_exports(fixture, engine, refused):
    findings = _check_dir(REAL / fixture, engine)
    assert bool(findings) == refused, [f.message for f in findings]
    if refused:
        assert "experts.0.w2_bias" in findings[0].message
