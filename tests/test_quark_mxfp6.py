"""Quark MXFP6 (vLLM ``QuarkOCP_MX``): the weight packs four 6-bit values in three bytes."""

from __future__ import annotations

import subprocess

import torch
from builders import Built, _quark_spec, dense
from cli_runner import cli_in_process

DOWN = "model.layers.1.mlp.down_proj"


def _mxfp6() -> Built:
    b = dense("LlamaForCausalLM", "quark-mxfp4")
    g = torch.Generator().manual_seed(1)
    for name in [n for n in b.tensors if n.endswith(".weight_scale")]:
        w = name.removesuffix("_scale")
        out, half = b.tensors[w].shape
        b.tensors[w] = torch.randint(0, 255, (out, half * 2 * 3 // 4), generator=g,
                                     dtype=torch.uint8)
    spec = {**_quark_spec("fp6_e3m2", "per_group"), "group_size": 32, "scale_format": "e8m0"}
    return b.set_config("/quantization_config/global_quant_config/weight", spec)


def _cli(path) -> subprocess.CompletedProcess[str]:
    return cli_in_process("check", str(path))


def test_mxfp6_llama_is_clean(tmp_path):
    r = _cli(_mxfp6().write(tmp_path))
    assert r.returncode == 0, r.stdout + r.stderr
    assert "14/21 modules quantized" in r.stdout


def test_mxfp6_weight_stored_unpacked_is_a_shape_error(tmp_path):
    b = _mxfp6()
    b.tensors[f"{DOWN}.weight"] = torch.zeros(128, 128, dtype=torch.uint8)
    r = _cli(b.write(tmp_path))
    assert r.returncode == 1 and "down_proj" in r.stdout
