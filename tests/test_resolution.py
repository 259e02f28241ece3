"""Per-module scheme resolution: config semantics plus what the engine always builds BF16."""

from __future__ import annotations

from builders import qwen3_5_moe

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

