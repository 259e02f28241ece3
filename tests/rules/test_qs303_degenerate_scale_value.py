import math
from pathlib import Path

import pytest
from builders import qwen3_5_moe

from rules.helpers import run

REAL = Path(__file__).parents[1] / "fixtures" / "real"
P = "model.language_model.layers"
UP_IN = f"{P}.1.mlp.experts.1.up_proj.input_scale"


@pytest.mark.parametrize(("value", "text"), [
    (0.0, "= 0;"), (math.nan, "= NaN"), (math.inf, "= inf"), (-1e-3, "(negative)"),
    (-3.4028234663852886e38, "float32 sentinel"),
])
def test_uncalibrated_expert_input_scale(tmp_path, value, text):
    built = qwen3_5_moe("ct-fp8").retype(UP_IN, __import__("torch").float32).set_value(UP_IN, value)
    [f] = run(built, tmp_path, "QS303")
    assert f.location.tensor == UP_IN and text in f.message


def test_one_bad_value_in_a_vector_scale(tmp_path):
    built = qwen3_5_moe("ct-fp8").reshape(UP_IN, (3,)).set_value(UP_IN, [1e-3, 0.0, 0.0])
    [f] = run(built, tmp_path, "QS303")
    assert "[1] = 0 (and 1 more of 3 values)" in f.message


def test_nvfp4_global_scale_zero(tmp_path):
    name = f"{P}.1.self_attn.o_proj.weight_global_scale"
    [f] = run(qwen3_5_moe("ct-nvfp4").set_value(name, 0.0), tmp_path, "QS303")
    assert f.location.tensor == name


@pytest.mark.parametrize("scheme", ["ct-fp8", "ct-nvfp4", "modelopt-nvfp4", "modelopt-fp8"])
def test_near_miss_calibrated(tmp_path, scheme):
    assert run(qwen3_5_moe(scheme), tmp_path, "QS303") == []


def test_near_miss_a_real_checkpoint(tmp_path):
    from qscale import CheckOptions, check, read_checkpoint
    report = check(read_checkpoint(REAL / "llmc-qwen3_5_moe-FP8"), CheckOptions(select=["QS303"]))
    assert report.findings == ()
