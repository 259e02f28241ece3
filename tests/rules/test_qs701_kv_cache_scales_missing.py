import pytest
import torch
from builders import qwen3_5_moe

from qscale import Severity
from rules.helpers import run

ATTN = "model.language_model.layers.1.self_attn"
KV = {"num_bits": 8, "type": "float", "symmetric": True, "strategy": "tensor", "dynamic": False}


def fp8_kv(**scales):
    built = qwen3_5_moe("ct-fp8").set_config("/quantization_config/kv_cache_scheme", KV)
    for name, value in scales.items():
        built.add(f"{ATTN}.{name}", torch.tensor([value], dtype=torch.float32))
    return built


def test_declared_kv_cache_without_scales(tmp_path):
    [f] = run(fp8_kv(), tmp_path, "QS701")
    assert f.severity == Severity.WARNING and f.location.tensor.startswith(ATTN + ".")
    assert "kv_cache_scheme" in f.message and "1 of 1 full-attention layers" in f.message


def test_scales_exported_as_one(tmp_path):
    [f] = run(fp8_kv(k_scale=1.0, v_scale=1.0), tmp_path, "QS701")
    assert "all 2 KV-cache scales are exactly 1.0" in f.message


@pytest.mark.parametrize("scales", [
    {"k_scale": 0.02, "v_scale": 0.03},
    {"kv_scale": 0.02},
    {"k_proj.output_scale": 0.02, "v_proj.output_scale": 0.03},
])
def test_near_miss_calibrated_scales_in_an_accepted_spelling(tmp_path, scales):
    assert run(fp8_kv(**scales), tmp_path, "QS701") == []


def test_modelopt_kv_cache_quant_algo(tmp_path):
    built = qwen3_5_moe("modelopt-fp8")
    built.extra_files["hf_quant_config.json"]["quantization"]["kv_cache_quant_algo"] = "FP8"
    [f] = run(built, tmp_path, "QS701")
    assert "kv_cache_quant_algo" in f.message
    built.add(f"{ATTN}.k_proj.k_scale", torch.tensor(0.02)).add(
        f"{ATTN}.v_proj.v_scale", torch.tensor(0.02))
    assert run(built, tmp_path / "ok", "QS701") == []


def test_near_miss_no_kv_cache_declared(tmp_path):
    assert run(qwen3_5_moe("ct-fp8"), tmp_path, "QS701") == []


def _inline_modelopt(**extra):
    """The modelopt-fp8 checkpoint with its config inline in config.json (ModelOpt >= 0.31),
    ``hf_quant_config.json`` kept beside it declaring an FP8 KV cache."""
    built = qwen3_5_moe("modelopt-fp8")
    q = built.extra_files["hf_quant_config.json"]["quantization"]
    q["kv_cache_quant_algo"] = "FP8"
    built.config["quantization_config"] = {"quant_method": "modelopt", "quant_algo": "FP8",
                                           "ignore": q["exclude_modules"], **extra}
    return built


def test_inline_modelopt_kv_cache_scheme(tmp_path):
    # vLLM 0.33.0 ModelOptQuantConfigBase.from_config: an inline `kv_cache_scheme` of
    # 8-bit floats is an FP8 KV cache
    scheme = {"dynamic": False, "num_bits": 8, "type": "float"}
    [f] = run(_inline_modelopt(kv_cache_scheme=scheme), tmp_path, "QS701")
    assert "kv_cache_scheme" in f.message


def test_near_miss_inline_config_hides_hf_quant_config(tmp_path):
    # vLLM reads hf_quant_config.json only when config.json has no quantization_config:
    # the inline one declares no KV-cache quantization, so none is built
    assert run(_inline_modelopt(), tmp_path, "QS701") == []
