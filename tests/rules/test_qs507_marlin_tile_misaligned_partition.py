"""QS507: vLLM's dense Marlin kernel and its thread tiles per rank (output % 64, input % 128),
by release, on real safetensors Qwen3-MoE GPTQ / AWQ checkpoints (hidden 256, 4 heads of 64,
2 KV heads, group 64). At TP=4 ``o_proj`` takes 64 inputs per rank: not a multiple of 128."""

from __future__ import annotations

import pytest
from builders import qwen3_moe
from cli_runner import cli_in_process

from qscale import CheckOptions, check, read_checkpoint
from qscale.layout import Deployment

O_PROJ = "model.layers.0.self_attn.o_proj"


def _qs507(ckpt, engine: str, tp: int):
    opts = CheckOptions(engine=engine, select=("QS507",), deployment=Deployment(tp=tp))
    return check(ckpt, opts).findings


def test_gptq_tile_miss_before_0_24_takes_another_kernel(tmp_path):
    ckpt = read_checkpoint(qwen3_moe("gptq", group=64).write(tmp_path))
    found = _qs507(ckpt, "vllm==0.20.0", 4)
    assert {f.severity.label for f in found} == {"warning"}
    (o,) = [f for f in found if f.location.tensor and f.location.tensor.startswith(O_PROJ)]
    assert "input per rank 64 is not a multiple of 128" in o.message
    assert "Machete (Hopper GPUs only) and Exllama (float16 activations)" in o.message
    assert "TP that keeps Marlin: 1, 2" in o.message
    assert _qs507(ckpt, "vllm==0.20.0", 2) == ()  # near miss: 128 inputs per rank
    assert _qs507(ckpt, "vllm==0.24.0", 4) == ()  # near miss: 0.24 pads the tiles


def test_bfloat16_with_no_kernel_left_is_an_error(tmp_path):
    # TP=8: qkv per rank 32 + 64 + 64 = 160 outputs (KV heads replicated): not % 64 for
    # Marlin, not % 128 for Machete; bfloat16 rules Exllama out
    b = qwen3_moe("gptq", group=64)
    b.config["torch_dtype"] = "bfloat16"
    found = _qs507(read_checkpoint(b.write(tmp_path)), "vllm==0.21.0", 8)
    assert {f.severity.label for f in found} == {"error"}
    (qkv,) = [f for f in found if "qkv_proj" in (f.location.param or "")]
    assert "output per rank 160 is not a multiple of 64" in qkv.message
    assert "Failed to find a kernel that can implement the WNA16 linear layer" in qkv.message
    assert qkv.fix is not None and "--dtype float16" in qkv.fix.title


def test_act_order_keeps_the_strict_check_until_0_29(tmp_path):
    b = qwen3_moe("gptq", group=64).set_config("/quantization_config/desc_act", True)
    ckpt = read_checkpoint(b.write(tmp_path))
    (o,) = [f for f in _qs507(ckpt, "vllm==0.29.0", 4) if f.location.tensor.startswith(O_PROJ)]
    assert o.severity.label == "error" and "act order" in o.message
    assert "Machete and Exllama refuse act order over an input split across ranks" in o.message
    assert _qs507(ckpt, "vllm==0.29.0", 2) == ()


def test_awq_falls_back_to_its_gemm_kernel(tmp_path):
    ckpt = read_checkpoint(qwen3_moe("awq", group=64).write(tmp_path))
    found = _qs507(ckpt, "vllm==0.23.0", 4)
    assert found and {f.severity.label for f in found} == {"info"}
    assert "Falling back to unoptimized AWQ kernels" in found[0].message
    assert _qs507(ckpt, "vllm==0.24.0", 4) == ()


@pytest.mark.parametrize(("engine", "code"), [("vllm==0.20.0", 0), ("vllm==0.33.0", 0)])
def test_cli_exit_codes(tmp_path, engine, code):
    # a warning does not fail the default --fail-on error; TP=2 is clean on both
    path = qwen3_moe("gptq", group=64).write(tmp_path)
    r = cli_in_process("check", str(path), "--engine", engine, "--tp", "2")
    assert r.returncode == code, r.stdout + r.stderr
