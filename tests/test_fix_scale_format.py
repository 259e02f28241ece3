"""Scale tensors normalised to the dtype, shape and name the format expects."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from builders import qwen3_5_moe
from safetensors.torch import load_file

from qscale import CheckOptions, check, read_checkpoint
from qscale.fix import Status, fix

P = "model.language_model.layers"
O_PROJ = f"{P}.1.self_attn.o_proj"
DOWN = f"{P}.1.mlp.experts.0.down_proj"


def codes(path, engine=None):
    return sorted(
        f.code
        for f in check(read_checkpoint(path), CheckOptions(engine=engine)).findings
        if f.severity.label == "error"
    )


def test_f64_scale_widened_to_f32_exactly(tmp_path):
    built = qwen3_5_moe("ct-fp8").retype(rf"{O_PROJ}\.weight_scale$", torch.float64)
    src = built.write(tmp_path)
    assert codes(src) == ["QS301"]
    result = fix(src, tmp_path / "out")
    assert result.status == Status.FIXED and codes(tmp_path / "out") == []
    old = load_file(str(src / "model.safetensors"))[f"{O_PROJ}.weight_scale"]
    new = load_file(str(tmp_path / "out" / "model.safetensors"))[f"{O_PROJ}.weight_scale"]
    assert new.dtype == torch.float32 and new.shape == old.shape
    assert torch.equal(new.double(), old)


def test_f64_scale_that_f32_cannot_hold_is_rejected(tmp_path):
    built = qwen3_5_moe("ct-fp8").add(
        f"{O_PROJ}.weight_scale", torch.tensor([0.1], dtype=torch.float64)
    )
    src = built.write(tmp_path)
    result = fix(src, tmp_path / "out")
    assert result.status == Status.REJECTED and not (tmp_path / "out").exists()
    [rej] = result.plan.rejected
    assert rej.finding.code == "QS301" and "F32 cannot hold exactly" in rej.reason


@pytest.mark.parametrize(("shape", "want"), [((1, 1), ()), ((1, 1, 1), ())])
def test_unit_dimensions_of_a_scale_are_redeclared(tmp_path, shape, want):
    src = qwen3_5_moe("ct-fp8").reshape(f"{O_PROJ}.input_scale", shape).write(tmp_path)
    assert codes(src) == ["QS302"]
    result = fix(src, tmp_path / "out")
    assert result.status == Status.FIXED and codes(tmp_path / "out") == []
    old = load_file(str(src / "model.safetensors"))[f"{O_PROJ}.input_scale"]
    new = load_file(str(tmp_path / "out" / "model.safetensors"))[f"{O_PROJ}.input_scale"]
    assert tuple(new.shape) == want and new.dtype == old.dtype
    assert torch.equal(new.reshape(-1), old.reshape(-1))


def test_block_scale_renamed_to_the_spelling_the_format_reads(tmp_path):
    built = qwen3_5_moe("fp8-block")
    t = built.tensors.pop(f"{DOWN}.weight_scale_inv")
    src = built.add(f"{DOWN}.weight_scale", t).write(tmp_path)
    assert "QS209" in codes(src)
    result = fix(src, tmp_path / "out")
    assert result.status == Status.FIXED and codes(tmp_path / "out") == []
    [change] = result.plan.applied
    assert change.fixer == "scale-format" and "QS209" in change.codes
    new = load_file(str(tmp_path / "out" / "model.safetensors"))
    assert f"{DOWN}.weight_scale" not in new
    assert np.array_equal(new[f"{DOWN}.weight_scale_inv"].numpy(), t.numpy())
    [rec] = result.records
    assert rec["action"] == "rename" and rec["before"]["sha256"] == rec["after"]["sha256"]


def test_per_tensor_inv_scale_is_not_renamed(tmp_path):
    built = qwen3_5_moe("ct-fp8")
    t = built.tensors.pop(f"{O_PROJ}.weight_scale")
    src = built.add(f"{O_PROJ}.weight_scale_inv", t).write(tmp_path)
    result = fix(src, tmp_path / "out")
    assert result.status == Status.REJECTED
    reasons = {r.finding.code: r.reason for r in result.plan.rejected}
    assert "reciprocal" in reasons["QS209"]
