"""Per-module scheme resolution: config semantics plus what the engine always builds BF16."""

from __future__ import annotations

import pytest
from builders import dense, qwen3_5_moe

from qscale import CheckOptions, check, read_checkpoint, resolve_quantization

P = "model.language_model.layers.0.mlp"


def test_router_gates_are_unquantized_even_when_the_config_targets_them(tmp_path):
    # No ignore entry for the gates: the config's `Linear` target covers them, but vLLM builds
    # routers and the shared-expert gate with quant_config=None, so BF16 gates are right.
    ckpt = read_checkpoint(
        qwen3_5_moe("ct-fp8", ignore=["lm_head", "re:.*in_proj_[ab]$"]).write(tmp_path)
    )
    q = resolve_quantization(ckpt)
    for name in (f"{P}.gate", f"{P}.shared_expert_gate"):
        assert q.modules[name].scheme is None
        assert "the engine builds" in q.modules[name].resolution.reason
    assert q.modules[f"{P}.shared_expert.up_proj"].scheme is not None
    assert check(ckpt, CheckOptions(select=["QS202"])).findings == ()


def test_unknown_architecture_keeps_config_semantics(tmp_path):
    b = qwen3_5_moe("ct-fp8", ignore=["lm_head", "re:.*in_proj_[ab]$"])
    b.config["architectures"] = ["SomethingNewForCausalLM"]
    ckpt = read_checkpoint(b.write(tmp_path))
    assert resolve_quantization(ckpt).modules[f"{P}.gate"].scheme is not None
    # whether the engine builds the gate quantized is not known without a family: QS202
    # reports nothing from the config's semantics alone, and says it did not run
    report = check(ckpt, CheckOptions(select=["QS202", "QS401"]))
    assert report.findings == ()
    assert [code for code, _ in report.skipped] == ["QS202", "QS401"]


#: an FP8 per-channel group that names vLLM's fused attention layer, next to a `Linear` one
_QKV_FP8 = {
    "targets": ["re:.*qkv_proj$"],
    "weights": {"num_bits": 8, "type": "float", "symmetric": True, "strategy": "channel"},
    "format": "float-quantized",
}


@pytest.mark.parametrize("shard_targets", [["Linear"],
                                           [r"re:.*self_attn\.(q|k|v|o)_proj$", "Linear"]],
                         ids=["linear-class", "shard-names"])
def test_a_target_on_the_engines_name_wins_over_the_linear_class_as_in_vllm(tmp_path,
                                                                            shard_targets):
    """vLLM 0.33's ``find_matched_target`` tries every exact and ``re:`` target on its own
    layer name (``…self_attn.qkv_proj``) before the shard names and the class name: real
    vLLM 0.33.0's ``CompressedTensorsConfig.get_scheme_dict`` gives this config's FP8 group to
    ``model.layers.0.self_attn.qkv_proj`` and the W4A16 ``Linear`` group to ``o_proj`` and
    ``gate_up_proj`` (``oracle/ct_match_oracle.py``). A quantizer that matches the
    checkpoint's ``q_proj`` writes it W4A16, so vLLM builds FP8 parameters for W4A16 tensors:
    a load failure, not a clean check. The same where the W4A16 group also names the
    checkpoint's ``q_proj`` / ``k_proj`` / ``v_proj``: vLLM's own name is tried first."""
    b = dense("LlamaForCausalLM", "ct-w4a16")
    groups = b.config["quantization_config"]["config_groups"]
    groups["group_0"]["targets"] = shard_targets
    groups["group_1"] = _QKV_FP8
    ckpt = read_checkpoint(b.write(tmp_path))
    q = resolve_quantization(ckpt, "vllm==0.33.0")
    for proj in ("q_proj", "k_proj", "v_proj"):
        res = q.modules[f"model.layers.0.self_attn.{proj}"].resolution
        assert res.scheme is not None and res.scheme.label == "FP8 per-channel, weight-only"
        assert "group_1" in res.reason and "`model.layers.0.self_attn.qkv_proj`" in res.reason
    for name in ("self_attn.o_proj", "mlp.gate_proj", "mlp.down_proj"):
        res = q.modules[f"model.layers.0.{name}"].resolution
        assert res.scheme is not None and res.scheme.label == "W4A16 g128", name
    report = check(ckpt, CheckOptions(engine="vllm==0.33.0"))
    errors = {f.location.tensor for f in report.findings if f.code in ("QS201", "QS203")}
    assert "model.layers.0.self_attn.q_proj.weight_packed" in errors
    assert not any(".o_proj." in e or ".mlp." in e for e in errors)


def test_the_engines_name_under_an_ignore_entry_leaves_the_checkpoint_name_to_decide(tmp_path):
    # vLLM skips a layer an ignore entry names under its own name; the named-target step on the
    # engine's name is then not taken (QS204 judges the entry)
    b = dense("LlamaForCausalLM", "ct-w4a16")
    qc = b.config["quantization_config"]
    qc["config_groups"]["group_1"] = _QKV_FP8
    qc["ignore"] = [*qc["ignore"], "re:.*qkv_proj$"]
    q = resolve_quantization(read_checkpoint(b.write(tmp_path)), "vllm==0.33.0")
    res = q.modules["model.layers.0.self_attn.q_proj"].resolution
    assert res.scheme is not None and res.scheme.label == "W4A16 g128"
