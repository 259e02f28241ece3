import pytest
from builders import qwen3_5_moe

from qscale import CheckOptions, check, read_checkpoint
from rules.helpers import run

P = "model.language_model.layers.1"


def rename(built, old, new):
    built.tensors[new] = built.tensors.pop(old)
    return built


def test_block_fp8_scale_inv_in_a_compressed_tensors_checkpoint(tmp_path):
    down = f"{P}.mlp.shared_expert.down_proj"
    built = rename(qwen3_5_moe("ct-fp8-block"), f"{down}.weight_scale", f"{down}.weight_scale_inv")
    [f] = run(built, tmp_path, "QS209")
    assert f.location.tensor == f"{down}.weight_scale_inv"
    assert "reads `weight_scale`" in f.message and f.fix.applicability.value == "safe"
    # reported once, by QS209, not also as missing (QS201) and unexpected (QS203)
    report = check(read_checkpoint(tmp_path / "ckpt"), CheckOptions(select=["QS201", "QS203"]))
    assert report.findings == ()


def test_compressed_tensors_spelling_in_an_fp8_block_checkpoint(tmp_path):
    o = f"{P}.self_attn.o_proj"
    [f] = run(rename(qwen3_5_moe("fp8-block"), f"{o}.weight_scale_inv", f"{o}.weight_scale"),
              tmp_path, "QS209")
    assert "reads `weight_scale_inv`" in f.message


@pytest.mark.parametrize("scheme", ["ct-fp8-block", "fp8-block", "ct-fp8"])
def test_near_miss_native_spelling(tmp_path, scheme):
    assert run(qwen3_5_moe(scheme), tmp_path, "QS209") == []
