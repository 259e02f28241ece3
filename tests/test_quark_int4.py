"""Quark W4A16 INT4 (vLLM ``QuarkW4A16Int4``, ``quark/schemes/quark_w4a16_int4.py``, from 0.31.0)
on builder checkpoints."""

from __future__ import annotations

import subprocess

import pytest
import torch
from builders import dense
from cli_runner import cli_in_process

DOWN = "model.layers.1.mlp.down_proj"
WEIGHT = "/quantization_config/global_quant_config/weight"


def _cli(path, *args: str) -> subprocess.CompletedProcess[str]:
    return cli_in_process("check", str(path), *args)


@pytest.mark.parametrize("engine", ["vllm==0.33.0", "vllm==0.31.0"])
def test_clean_int4_llama_exits_0(tmp_path, engine):
    r = _cli(dense("LlamaForCausalLM", "quark-int4").write(tmp_path), "--engine", engine)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "14/21 modules quantized" in r.stdout


def test_before_0_31_it_is_refused(tmp_path):
    r = _cli(dense("LlamaForCausalLM", "quark-int4").write(tmp_path), "--engine", "vllm==0.30.0")
    assert r.returncode == 2
    assert "has no Quark W4A16 INT4 scheme" in r.stdout + r.stderr


def test_asymmetric_needs_its_zero_point(tmp_path):
    b = dense("LlamaForCausalLM", "quark-int4").set_config(f"{WEIGHT}/symmetric", False)
    assert _cli(b.write(tmp_path, name="ok")).returncode == 0
    r = _cli(b.drop(rf"{DOWN}\.weight_zero_point$").write(tmp_path, name="bad"))
    assert r.returncode == 1
    assert f"QS201 error [missing-quantization-tensor] `{DOWN}.weight_zero_point`" in r.stdout
    # near miss: a symmetric config does not need it
    sym = dense("LlamaForCausalLM", "quark-int4").drop(r"\.weight_zero_point$")
    assert _cli(sym.write(tmp_path, name="sym")).returncode == 0


def test_missing_scale_and_wrong_dtype(tmp_path):
    r = _cli(dense("LlamaForCausalLM", "quark-int4").drop(rf"{DOWN}\.weight_scale$")
             .write(tmp_path, name="noscale"))
    assert r.returncode == 1 and f"`{DOWN}.weight_scale` is missing" in r.stdout
    b = dense("LlamaForCausalLM", "quark-int4").retype(rf"{DOWN}\.weight$", torch.int8)
    r = _cli(b.write(tmp_path, name="i8"))
    assert r.returncode == 1 and f"`{DOWN}.weight`" in r.stdout


def test_untransposed_weight_is_a_shape_error(tmp_path):
    b = dense("LlamaForCausalLM", "quark-int4")
    k = "model.layers.1.self_attn.k_proj"  # out 64, in 128: stored [128, 8]
    b.tensors[f"{k}.weight"] = torch.zeros(64, 16, dtype=torch.int32)  # [out, in/8]
    r = _cli(b.write(tmp_path))
    assert r.returncode == 1 and "k_proj" in r.stdout


def test_group_size_missing_is_refused(tmp_path):
    b = dense("LlamaForCausalLM", "quark-int4").set_config(f"{WEIGHT}/group_size", None)
    r = _cli(b.write(tmp_path))
    assert r.returncode == 2 and "positive int `group_size`" in r.stdout + r.stderr


def test_unpacked_export_is_not_modelled(tmp_path):
    b = dense("LlamaForCausalLM", "quark-int4").set_config(
        "/quantization_config/export/pack_method", None)
    r = _cli(b.write(tmp_path))
    assert r.returncode == 2 and "QS102" in r.stdout + r.stderr
