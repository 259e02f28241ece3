from pathlib import Path

import pytest
from builders import qwen3_5_moe

from qscale import CheckOptions, Severity, check, read_checkpoint

REAL = Path(__file__).parents[1] / "fixtures" / "real"
QKVZ = "language_model.model.layers.0.linear_attn.in_proj_qkvz"
P = "model.language_model.layers"


def run(path, engine="vllm==0.20.0"):
    report = check(read_checkpoint(path), CheckOptions(select=["QS403"], engine=engine))
    return list(report.findings)


def test_nvfp4_global_scales_differ_across_in_proj_qkv_and_z(tmp_path):
    built = qwen3_5_moe("ct-nvfp4").set_value(f"{P}.0.linear_attn.in_proj_z.weight_global_scale",
                                              30208.0 * 1.25)
    [f] = run(built.write(tmp_path))
    assert f.location.param == f"{QKVZ}.weight_global_scale"
    assert f.severity == Severity.ERROR
    # CT stores the divisor: qkv is dequantized with 1/(1.25 g) instead of 1/g -> x0.8
    assert "partition(s) 0, 1, 2 dequantized ×0.8 (-20.00%)" in f.message
    assert f.fix is not None and f.fix.applicability.value == "unsafe"


def test_small_difference_is_a_warning(tmp_path):
    built = qwen3_5_moe("ct-nvfp4").set_value(f"{P}.1.self_attn.k_proj.weight_global_scale",
                                              30208.0 * 1.001)
    [f] = run(built.write(tmp_path))
    assert f.location.param.endswith("self_attn.qkv_proj.weight_global_scale")
    assert f.severity == Severity.WARNING and "partition(s) 0, 2" in f.message


def test_modelopt_expert_w3_global_scale_ignored(tmp_path):
    built = qwen3_5_moe("modelopt-nvfp4").set_value(
        f"{P}.1.mlp.experts.1.up_proj.weight_scale_2", 7.0e-5)
    [f] = run(built.write(tmp_path), "vllm==0.33.0")
    assert f.location.param.endswith("layers.1.mlp.experts.routed_experts.w13_weight_scale_2")
    # ModelOpt stores a multiplier: w3 of expert 1 uses w1's 3.5e-5 instead of 7e-5 -> x0.5
    assert "expert column(s) 3 dequantized ×0.5" in f.message and "w1's column" in f.message


def test_real_llm_compressor_nvfp4_qwen3_5(tmp_path):
    # llm-compressor fuses global scales of q/k/v and gate/up, not Qwen3.5's in_proj_qkv/z
    [f] = run(REAL / "llmc-qwen3_5_moe-NVFP4")
    assert f.location.param == f"{QKVZ}.weight_global_scale" and f.severity == Severity.ERROR
    assert "partition(s) 0, 1, 2 dequantized ×0.91" in f.message


@pytest.mark.parametrize("scheme", ["ct-nvfp4", "modelopt-nvfp4", "ct-fp8"])
def test_near_miss_equal_global_scales(tmp_path, scheme):
    assert run(qwen3_5_moe(scheme).write(tmp_path)) == []


def test_near_miss_fp8_per_tensor_scales_are_requantized(tmp_path):
    # different FP8 weight scales on q/k/v are requantized with the max: lossy, not wrong
    built = qwen3_5_moe("ct-fp8").set_value(f"{P}.1.self_attn.k_proj.weight_scale", 5e-3)
    assert run(built.write(tmp_path)) == []
