"""``experts_int8`` (unquantized checkpoint, experts quantized on load) and ``moe_wna16`` (no
checkpoint may name it), on real safetensors Qwen3-MoE checkpoints."""

from __future__ import annotations

import pytest
import torch
from builders import dense, qwen3_moe

from qscale import CheckOptions, check, read_checkpoint
from qscale.errors import ConfigError, UnknownFormat

EXPERT = "model.layers.1.mlp.experts.2.down_proj"


def experts_int8():
    b = qwen3_moe("bf16")
    b.config["quantization_config"] = {"quant_method": "experts_int8"}
    return b


def errors(built, tmp_path, engine="vllm==0.33.0"):
    report = check(read_checkpoint(built.write(tmp_path)), CheckOptions(engine=engine))
    return [f for f in report.findings if f.severity.name == "ERROR"]


@pytest.mark.parametrize("engine", ["vllm==0.33.0", "vllm==0.24.0"])
def test_experts_int8_bf16_checkpoint_is_clean(tmp_path, engine):
    assert errors(experts_int8(), tmp_path, engine) == []


def test_experts_int8_missing_expert_weight_names_it(tmp_path):
    findings = errors(experts_int8().drop(rf"{EXPERT}\.weight$"), tmp_path)
    [f] = findings  # named on the engine's fused layer
    assert f.code == "QS205" and "model.layers.1.mlp.experts" in f.message
    assert "expert 2" in f.message


def test_experts_int8_prequantized_expert_is_an_error(tmp_path):
    built = experts_int8().add(f"{EXPERT}.weight_scale", torch.ones(256, 1))
    findings = errors(built, tmp_path)
    assert any(f.location.tensor == f"{EXPERT}.weight_scale" for f in findings)


def test_experts_int8_on_sglang_is_not_modelled(tmp_path):
    with pytest.raises(UnknownFormat, match="experts_int8"):
        errors(experts_int8(), tmp_path, "sglang==0.5.12")


def test_moe_wna16_in_a_checkpoint_is_refused(tmp_path):
    built = qwen3_moe("gptq")
    built.config["quantization_config"]["quant_method"] = "moe_wna16"
    with pytest.raises(ConfigError, match="moe_wna16 only support gptq and awq"):
        errors(built, tmp_path)


@pytest.mark.parametrize(("method", "model_type"), [("fp8", "deepseek_v4"),
                                                    ("deepseek_v4_fp8", "deepseek_v4"),
                                                    ("deepseek_v4_fp8", "qwen3_moe")])
def test_deepseek_v4_fp8_is_not_modelled(tmp_path, method, model_type):
    built = qwen3_moe("fp8-block")
    built.config["model_type"] = model_type
    built.config["quantization_config"]["quant_method"] = method
    with pytest.raises(UnknownFormat, match="DeepseekV4FP8Config"):
        errors(built, tmp_path)


def test_fp8_on_other_models_is_still_fp8(tmp_path):
    built = dense("LlamaForCausalLM", "fp8-block", layers=1)
    assert errors(built, tmp_path) == []
    assert errors(built.drop(r"model\.layers\.0\.mlp\.up_proj\.weight_scale_inv$"), tmp_path)
