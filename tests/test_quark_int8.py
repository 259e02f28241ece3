"""Quark W8A8 INT8 (vLLM ``QuarkW8A8Int8``, ``quark/schemes/quark_w8a8_int8.py``) and the Quark
schemes qscale does not model (QS102, never a silent pass), on builder checkpoints."""

from __future__ import annotations

import subprocess

import pytest
import torch
from builders import _quark_spec, dense
from cli_runner import cli_in_process

L1 = "model.layers.1"
DOWN = f"{L1}.mlp.down_proj"
GLOBAL = "/quantization_config/global_quant_config"


def _cli(path, *args: str) -> subprocess.CompletedProcess[str]:
    return cli_in_process("check", str(path), *args)


@pytest.mark.parametrize("engine", ["vllm==0.33.0", "vllm==0.21.0", "vllm==0.18.0"])
def test_clean_int8_llama_exits_0(tmp_path, engine):
    r = _cli(dense("LlamaForCausalLM", "quark-int8").write(tmp_path), "--engine", engine)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "14/21 modules quantized" in r.stdout


def test_missing_weight_scale_names_the_module(tmp_path):
    b = dense("LlamaForCausalLM", "quark-int8").drop(rf"{DOWN}\.weight_scale$")
    r = _cli(b.write(tmp_path))
    assert r.returncode == 1
    assert f"QS201 error [missing-quantization-tensor] `{DOWN}.weight_scale`" in r.stdout


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float8_e4m3fn])
def test_weight_not_int8_is_an_error(tmp_path, dtype):
    b = dense("LlamaForCausalLM", "quark-int8").retype(rf"{DOWN}\.weight$", dtype)
    r = _cli(b.write(tmp_path))
    assert r.returncode == 1, r.stdout
    assert f"`{DOWN}.weight`" in r.stdout and " error " in r.stdout


def test_scale_as_int_is_an_error(tmp_path):
    b = dense("LlamaForCausalLM", "quark-int8").retype(rf"{DOWN}\.weight_scale$", torch.int8)
    r = _cli(b.write(tmp_path))
    assert r.returncode == 1
    assert f"`{DOWN}.weight_scale`" in r.stdout


def test_zero_points_are_optional(tmp_path):
    b = dense("LlamaForCausalLM", "quark-int8").drop(r"_zero_point$")
    assert _cli(b.write(tmp_path)).returncode == 0


@pytest.mark.parametrize(("engine", "rc"), [("vllm==0.33.0", 0), ("vllm==0.22.0", 0),
                                            ("vllm==0.21.0", 1)])
def test_two_dim_channel_scale_loads_from_0_22(tmp_path, engine, rc):
    b = dense("LlamaForCausalLM", "quark-int8")
    for name in [n for n in b.tensors if n.endswith(".weight_scale")]:
        b.tensors[name] = b.tensors[name].unsqueeze(-1).contiguous()
    r = _cli(b.write(tmp_path), "--engine", engine)
    assert r.returncode == rc, r.stdout + r.stderr
    if rc:
        assert "QS302 error [tensor-shape-mismatch]" in r.stdout
        assert "weight_scale` has shape (128, 1), expected (128,)" in r.stdout


def _dynamic(tmp_path, *, keep_input_scale: bool = False):
    b = dense("LlamaForCausalLM", "quark-int8").set_config(
        f"{GLOBAL}/input_tensors", _quark_spec("int8", "per_channel", dynamic=True))
    if not keep_input_scale:
        b.drop(r"\.input_(scale|zero_point)$")
    return b.write(tmp_path)


def test_dynamic_per_token_int8(tmp_path):
    path = _dynamic(tmp_path)
    assert _cli(path, "--engine", "vllm==0.20.0").returncode == 0
    r = _cli(path, "--engine", "vllm==0.18.0")
    assert r.returncode == 2
    assert "No quark compatible scheme was found" in r.stdout + r.stderr


def test_dynamic_int8_with_a_stored_input_scale(tmp_path):
    r = _cli(_dynamic(tmp_path, keep_input_scale=True))
    assert r.returncode == 1
    assert "QS203 error [unexpected-quantization-tensor]" in r.stdout
    assert "mlp.down_proj.input_scale` is unexpected" in r.stdout


def test_asymmetric_static_input_needs_its_zero_point(tmp_path):
    spec = {**_quark_spec("int8", "per_tensor"), "symmetric": False}
    b = dense("LlamaForCausalLM", "quark-int8").set_config(f"{GLOBAL}/input_tensors", spec)
    r = _cli(b.drop(rf"{DOWN}\.input_zero_point$").write(tmp_path))
    assert r.returncode == 1
    assert f"`{DOWN}.input_zero_point` is missing" in r.stdout


def test_int8_on_sglang_is_not_modelled(tmp_path):
    r = _cli(dense("LlamaForCausalLM", "quark-int8").write(tmp_path), "--engine", "sglang")
    assert r.returncode == 2
    assert "QS102" in r.stdout + r.stderr


def test_w4a8_two_level_is_partial_not_clean(tmp_path):
    """A two-entry weight config other than NVFP4 was resolved with no tensors to check: a
    silent pass. It is QS102 now."""
    w = [_quark_spec("fp8_e4m3", "per_tensor"), _quark_spec("int4", "per_channel")]
    b = dense("LlamaForCausalLM", "quark-int8").set_config(f"{GLOBAL}/weight", w)
    b.set_config(f"{GLOBAL}/input_tensors", _quark_spec("fp8_e4m3", "per_tensor"))
    r = _cli(b.write(tmp_path))
    assert r.returncode == 2
    assert "QS102" in r.stdout + r.stderr and "not modelled" in r.stdout + r.stderr
