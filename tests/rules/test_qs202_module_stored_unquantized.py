from builders import qwen3_5_moe

from rules.helpers import run

P = "model.language_model.layers"


def test_bf16_shared_expert_not_in_ignore_list(tmp_path):
    # AMD-style MXFP4 checkpoint whose ignore list forgot the shared expert.
    b = qwen3_5_moe("ct-mxfp4", shared_expert="bf16", ignore=["lm_head", "re:.*mlp.gate$",
                    "re:.*shared_expert_gate$", "re:.*in_proj_a$", "re:.*in_proj_b$"])
    findings = run(b, tmp_path, "QS202")
    assert {f.location.tensor for f in findings} == {
        f"{P}.{layer}.mlp.shared_expert.{proj}.weight"
        for layer in (0, 1) for proj in ("gate_proj", "up_proj", "down_proj")}
    assert "stored as BF16 but resolves to MXFP4" in findings[0].message


def test_near_miss_bf16_shared_expert_listed_in_ignore(tmp_path):
    assert run(qwen3_5_moe("ct-mxfp4", shared_expert="bf16"), tmp_path, "QS202") == []
