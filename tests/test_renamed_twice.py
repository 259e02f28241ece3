"""Tensors stored already fused under a name the engine's stacked rename applies to again."""

from __future__ import annotations

import torch
from builders import Built, qwen3_5_moe

from qscale import CheckOptions, check, read_checkpoint
from qscale.engines import parse_engine
from qscale.engines.families import FAMILIES
from qscale.engines.loader import plan_load, renamed_twice

LA = "model.language_model.layers.0.linear_attn."
ENGINE = "vllm==0.33.0"


def _fuse(built: Built, parts: tuple[str, str], fused: str) -> Built:
    """Store ``parts`` of layer 0's linear attention as one tensor, the way the engine fuses
    them: weights concatenated along the rows, a per-tensor scale kept once."""
    a, b = (LA + p for p in parts)
    for leaf in [n[len(a):] for n in list(built.tensors) if n.startswith(a + ".")]:
        x, y = built.tensors.pop(a + leaf), built.tensors.pop(b + leaf)
        built.tensors[LA + fused + leaf] = torch.cat([x, y]) if x.dim() > 1 else x
    return built


def _codes(built: Built, tmp_path, *codes: str) -> list:
    ckpt = read_checkpoint(built.write(tmp_path))
    return list(check(ckpt, CheckOptions(select=list(codes), engine=ENGINE)).findings)


def test_fused_qkvz_renamed_again_in_an_unquantized_checkpoint_is_refused(tmp_path):
    built = _fuse(qwen3_5_moe("bf16"), ("in_proj_qkv", "in_proj_z"), "in_proj_qkvz")
    [f] = _codes(built, tmp_path, "QS402", "QS404")
    assert f.code == "QS402" and f.location.tensor == LA + "in_proj_qkvz.weight"
    assert "in_proj_qkvzz.weight" in f.message


def test_fused_ba_renamed_again_in_a_quantized_checkpoint_is_silently_skipped(tmp_path):
    built = _fuse(qwen3_5_moe("ct-fp8"), ("in_proj_b", "in_proj_a"), "in_proj_ba")
    ckpt = read_checkpoint(built.write(tmp_path))
    plan = plan_load(ckpt, ENGINE)
    assert [e for _, e in plan.renamed_away] == [
        "language_model.model.layers.0.linear_attn.in_proj_baa.weight"
    ]
    assert not any("in_proj_baa" in p for p in plan.params)
    [f] = check(ckpt, CheckOptions(select=["QS402", "QS404"], engine=ENGINE)).findings
    assert f.code == "QS404" and "in_proj_baa" in f.message and "garbage" in f.message


def test_near_miss_unfused_names_are_renamed_once(tmp_path):
    ckpt = read_checkpoint(qwen3_5_moe("bf16").write(tmp_path))
    plan = plan_load(ckpt, ENGINE)
    assert plan.renamed_away == ()
    assert "language_model.model.layers.0.linear_attn.in_proj_qkvz.weight" in plan.params
    assert _codes(qwen3_5_moe("bf16"), tmp_path / "again", "QS402", "QS404") == []


def test_near_miss_a_fused_name_no_shard_name_prefixes():
    # Llama's dotted shard names (".gate_proj", ".q_proj") are no prefix of its fused names
    spec = parse_engine(ENGINE)
    fam = FAMILIES["LlamaForCausalLM"].for_engine("vllm")
    for name in ("mlp.gate_up_proj.weight", "self_attn.qkv_proj.weight", "mlp.gate_proj.weight"):
        assert renamed_twice(fam, spec, f"model.layers.0.{name}") is None


def test_near_miss_sglang_matches_dotted_names():
    arch = "Qwen3_5MoeForConditionalGeneration"
    sglang = parse_engine("sglang==0.5.23")
    assert renamed_twice(FAMILIES[arch].for_engine("sglang"), sglang,
                         LA + "in_proj_qkvz.weight") is None
    vllm = parse_engine(ENGINE)
    assert renamed_twice(FAMILIES[arch].for_engine("vllm"), vllm,
                         LA + "in_proj_qkvz.weight") is not None
