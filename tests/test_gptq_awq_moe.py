"""GPTQ and AWQ Qwen3-MoE (per-expert ``mlp.experts.<e>.{gate,up,down}_proj`` as AutoGPTQ /
GPTQModel / AutoAWQ export them) as vLLM 0.33 loads them: which modules its fused-MoE and
router layers quantize, and the Marlin / MoE WNA16 kernel choice under MoE tensor parallel."""

from __future__ import annotations

import subprocess

import pytest
import torch
from builders import gptq_int4, qwen3_moe
from cli_runner import cli_in_process

from qscale import CheckOptions, check, read_checkpoint, resolve_quantization

V33 = CheckOptions(engine="vllm==0.33.0")
L1 = "model.layers.1"


def _cli(path, *args: str) -> subprocess.CompletedProcess[str]:
    return cli_in_process("check", str(path), "--engine", "vllm==0.33.0", *args)


@pytest.mark.parametrize("scheme", ["gptq", "awq"])
def test_qwen3_moe_is_clean(tmp_path, scheme):
    r = _cli(qwen3_moe(scheme).write(tmp_path))
    assert r.returncode == 0, r.stdout + r.stderr
    # 2 layers x (4 attention + 4 experts x 3): the routers stay F16
    assert "no findings" in r.stdout and "32/45 modules quantized" in r.stdout


@pytest.mark.parametrize("scheme", ["gptq", "awq"])
def test_missing_expert_qzeros_names_the_expert(tmp_path, scheme):
    b = qwen3_moe(scheme).drop(rf"{L1}\.mlp\.experts\.2\.down_proj\.qzeros")
    r = _cli(b.write(tmp_path))
    assert r.returncode == 1
    assert (f"QS201 error [missing-quantization-tensor] `{L1}.mlp.experts.2.down_proj.qzeros`"
            " is missing") in r.stdout
    assert r.stdout.count(" error [") == 1


def test_gptq_experts_ignore_modules_in_block_to_quantize(tmp_path):
    # vLLM's GPTQ MoE path consults only `dynamic`: experts the list leaves out are built
    # quantized all the same, and the packed experts load
    b = qwen3_moe("gptq").set_config("/quantization_config/modules_in_block_to_quantize", [
        ["self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj"], ["self_attn.o_proj"]])
    ckpt = read_checkpoint(b.write(tmp_path))
    q = resolve_quantization(ckpt, "vllm==0.33.0")
    assert q.modules[f"{L1}.mlp.experts.3.down_proj"].scheme is not None
    assert check(ckpt, V33).findings == ()


def test_gptq_dynamic_skip_matches_the_fused_moe_name(tmp_path):
    b = qwen3_moe("gptq").set_config("/quantization_config/dynamic", {
        r"-:.*\.1\.mlp\.experts$": {},  # the fused-MoE layer's name: layer 1 built BF16
        r"-:.*\.0\.mlp\.experts\.0\.gate_proj": {}})  # near miss: a per-expert name
    q = resolve_quantization(read_checkpoint(b.write(tmp_path)), "vllm==0.33.0")
    assert q.modules[f"{L1}.mlp.experts.0.up_proj"].scheme is None
    assert "dynamic" in q.modules[f"{L1}.mlp.experts.0.up_proj"].resolution.reason
    assert q.modules["model.layers.0.mlp.experts.0.gate_proj"].scheme is not None


def test_awq_modules_to_not_convert_on_the_fused_moe_name(tmp_path):
    b = qwen3_moe("awq").set_config("/quantization_config/modules_to_not_convert",
                                    ["layers.1.mlp.experts", "experts.0.gate_proj"])
    q = resolve_quantization(read_checkpoint(b.write(tmp_path)), "vllm==0.33.0")
    assert q.modules[f"{L1}.mlp.experts.2.down_proj"].scheme is None
    # near miss: a per-expert entry is no substring of `model.layers.0.mlp.experts`
    assert q.modules["model.layers.0.mlp.experts.0.gate_proj"].scheme is not None


def _quantized_router(b):
    g = torch.Generator().manual_seed(1)
    for layer in (0, 1):
        name = f"model.layers.{layer}.mlp.gate"
        b.drop(rf"{name}\.weight")
        b.tensors.update(gptq_int4(name, 8, 256, g))
    return b


def test_qwen3_moe_router_stored_gptq_is_built_quantized(tmp_path):
    # Qwen3MoeSparseMoeBlock builds its GateLinear with the quant config: the stored dtypes
    # (no modules_in_block_to_quantize) make it a GPTQ layer, which loads the packed router
    ckpt = read_checkpoint(_quantized_router(qwen3_moe("gptq", experts=8)).write(tmp_path))
    q = resolve_quantization(ckpt, "vllm==0.33.0")
    assert q.modules[f"{L1}.mlp.gate"].scheme is not None
    assert check(ckpt, V33).findings == ()


def test_qwen3_moe_router_not_listed_is_unquantized(tmp_path):
    # near miss: a list without the router builds it unquantized; its packed tensors then
    # have no parameter to load into
    b = _quantized_router(qwen3_moe("gptq", experts=8)).set_config(
        "/quantization_config/modules_in_block_to_quantize",
        ["self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.o_proj"])
    ckpt = read_checkpoint(b.write(tmp_path))
    q = resolve_quantization(ckpt, "vllm==0.33.0")
    assert q.modules[f"{L1}.mlp.gate"].scheme is None
    found = check(ckpt, V33).findings
    assert found and all(".mlp.gate" in (f.location.tensor or "") for f in found)


@pytest.mark.parametrize("scheme", ["gptq", "awq"])
def test_group_cut_by_moe_tp_falls_back_to_moe_wna16(tmp_path, scheme):
    # 128 intermediate at MoE TP=2: 64 per rank cuts the 128-groups; Marlin MoE declines and
    # MoE WNA16 loads it at group 64 (attention: 128 per rank, whole groups)
    r = _cli(qwen3_moe(scheme, moe_inter=128).write(tmp_path), "--tp", "2")
    assert r.returncode == 0, r.stdout + r.stderr
    assert "QS505 info" in r.stdout and "MoE WNA16 kernels (group 64" in r.stdout


def test_group_too_small_for_moe_wna16_is_refused(tmp_path):
    # 64 intermediate, group 64, MoE TP=4: 16 per rank; MoE WNA16 would need group 16 < 32
    path = qwen3_moe("gptq", group=64, moe_inter=64).write(tmp_path)
    r = _cli(path, "--tp", "4")
    assert r.returncode == 1
    assert "QS505 error" in r.stdout and "`model.layers.0.mlp.experts`" in r.stdout
    assert "MoE TP that works: 1, 2" in r.stdout
    # near miss: TP=2 leaves 32 per rank, MoE WNA16 at group 32
    r = _cli(path, "--tp", "2")
    assert r.returncode == 0 and "MoE WNA16 kernels (group 32" in r.stdout
    # and expert parallel keeps every expert whole (MoE TP=1): Marlin, no finding
    r = _cli(path, "--tp", "4", "--ep", "4")
    assert r.returncode == 0 and "QS505" not in r.stdout, r.stdout


def test_moe_marlin_tile_check_by_release(tmp_path):
    # group 32, 256 intermediate at MoE TP=8: 32 per rank, whole groups. vLLM <= 0.24 (and
    # 0.29 under act order) asks Marlin MoE for a multiple of max(64, group): MoE WNA16
    # fallback (info); 0.30 pads the tiles: Marlin, no finding
    from qscale.layout import Deployment

    ckpt = read_checkpoint(qwen3_moe("gptq", group=32).write(tmp_path))

    def qs505(engine: str) -> list[str]:
        opts = CheckOptions(engine=engine, select=("QS505",), deployment=Deployment(tp=8))
        return [f.message for f in check(ckpt, opts).findings if ".experts" in f.message]

    (msg,) = qs505("vllm==0.24.0")
    assert "expert intermediate per rank 32 at MoE TP=8 is not a multiple of 64" in msg
    assert "Falling back to Moe WNA16 kernels" in msg and "MoE TP that keeps Marlin: 1, 2, 4" in msg
    assert qs505("vllm==0.29.0") == []  # near miss: padded without act order
    assert qs505("vllm==0.33.0") == []
