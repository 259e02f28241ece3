"""Quark NVFP4 (vLLM ``QuarkNVFP4``, ``quark/schemes/quark_nvfp4.py``, from 0.22.0) on builder
checkpoints: a clean Llama, one tensor removed or mistyped, the releases without it."""

from __future__ import annotations

import subprocess

import pytest
import torch
from builders import dense
from cli_runner import cli_in_process

DOWN = "model.layers.1.mlp.down_proj"


def _cli(path, *args: str) -> subprocess.CompletedProcess[str]:
    return cli_in_process("check", str(path), *args)


@pytest.mark.parametrize("engine", ["vllm==0.33.0", "vllm==0.22.0"])
def test_clean_nvfp4_llama_exits_0(tmp_path, engine):
    r = _cli(dense("LlamaForCausalLM", "quark-nvfp4").write(tmp_path), "--engine", engine)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "14/21 modules quantized" in r.stdout


def test_before_0_22_it_is_refused(tmp_path):
    r = _cli(dense("LlamaForCausalLM", "quark-nvfp4").write(tmp_path), "--engine", "vllm==0.21.0")
    assert r.returncode == 2
    assert "has no Quark NVFP4 scheme" in r.stdout + r.stderr


@pytest.mark.parametrize("param", ["weight_scale_2", "input_scale_2", "weight_scale"])
def test_missing_scale_names_the_module(tmp_path, param):
    b = dense("LlamaForCausalLM", "quark-nvfp4").drop(rf"{DOWN}\.{param}$")
    r = _cli(b.write(tmp_path))
    assert r.returncode == 1
    assert f"QS201 error [missing-quantization-tensor] `{DOWN}.{param}`" in r.stdout


def test_block_scale_stored_as_bf16_is_an_error(tmp_path):
    b = dense("LlamaForCausalLM", "quark-nvfp4").retype(rf"{DOWN}\.weight_scale$", torch.bfloat16)
    r = _cli(b.write(tmp_path))
    assert r.returncode == 1
    assert f"`{DOWN}.weight_scale`" in r.stdout


def test_unpacked_weight_is_a_shape_error(tmp_path):
    b = dense("LlamaForCausalLM", "quark-nvfp4")
    b.tensors[f"{DOWN}.weight"] = torch.zeros(128, 128, dtype=torch.uint8)  # [out, in]
    r = _cli(b.write(tmp_path))
    assert r.returncode == 1
    assert f"`{DOWN}.weight" in r.stdout
