import pytest
from builders import qwen3_5_moe

from qscale import CheckOptions, check, read_checkpoint

QKVZ = "language_model.model.layers.0.linear_attn.in_proj_qkvz"


def run(tmp_path, engine, scheme="ct-fp8"):
    ckpt = read_checkpoint(qwen3_5_moe(scheme).write(tmp_path))
    return list(check(ckpt, CheckOptions(select=["QS401"], engine=engine)).findings)


@pytest.mark.parametrize("engine", ["vllm==0.18.0", "vllm==0.19.0", "vllm==0.19.1"])
def test_tuple_shard_per_tensor_scale_on_affected_vllm(tmp_path, engine):
    findings = run(tmp_path, engine)
    # the input_scale slots are unfilled too, but processing takes their max, which ignores
    # -3.4e38: only the weight scale reaches the weights
    [ws] = findings
    assert ws.location.param == f"{QKVZ}.weight_scale"
    assert "-3.4e+38, -3.4e+38" in ws.message and "partition(s) 1, 2 never written" in ws.message
    assert "dequantized with −3.4e38" in ws.message
    assert ws.location.tensor.endswith("in_proj_qkv.weight_scale")
    assert ws.fix is not None and ws.fix.applicability.value == "safe"


def test_nvfp4_global_scale_slots_from_uninitialised_memory(tmp_path):
    findings = run(tmp_path, "vllm==0.19.1", scheme="ct-nvfp4")
    assert {f.location.param for f in findings} == {
        f"{QKVZ}.weight_global_scale", f"{QKVZ}.input_global_scale"}
    assert all("uninitialized" in f.message and "arbitrary" in f.message for f in findings)
    assert all(f.fix is not None and f.fix.applicability.value == "manual" for f in findings)


@pytest.mark.parametrize("engine", ["vllm==0.20.0", "vllm==0.33.0", "sglang==0.5.12"])
def test_near_miss_fixed_engines(tmp_path, engine):
    assert run(tmp_path, engine) == []


def test_near_miss_per_channel_scales_are_not_slotted(tmp_path):
    assert run(tmp_path, "vllm==0.19.1", scheme="ct-fp8-dynamic") == []
