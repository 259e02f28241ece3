import pytest
from builders import qwen3_5_moe

from rules.helpers import run

P = "model.language_model.layers"


def test_missing_input_scale_is_reported_with_its_module_and_scheme(tmp_path):
    b = qwen3_5_moe("ct-fp8").drop(rf"^{P}\.0\.mlp\.experts\.1\.up_proj\.input_scale$")
    [f] = run(b, tmp_path, "QS201")
    assert f.location.tensor == f"{P}.0.mlp.experts.1.up_proj.input_scale"
    assert f.location.file == "model.safetensors"
    assert "FP8 per-tensor, static act" in f.message


def test_static_activations_declared_but_no_input_scale_anywhere(tmp_path):
    # The Quark file-to-file FP8 hazard: config says static, no input_scale written.
    b = qwen3_5_moe("ct-fp8").drop(r"\.input_scale$")
    findings = run(b, tmp_path, "QS201")
    assert len(findings) == 25  # every quantized Linear
    assert all(f.location.tensor.endswith(".input_scale") for f in findings)


@pytest.mark.parametrize("scheme", ["ct-fp8", "ct-w4a16", "ct-nvfp4", "modelopt-nvfp4",
                                    "quark-mxfp4", "fp8-block"])
def test_near_miss_complete_checkpoint(tmp_path, scheme):
    assert run(qwen3_5_moe(scheme), tmp_path, "QS201") == []


def test_dynamic_activations_need_no_input_scale(tmp_path):
    assert run(qwen3_5_moe("ct-fp8-dynamic"), tmp_path, "QS201") == []
