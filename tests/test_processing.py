"""What vLLM's process_weights_after_loading makes of the loaded slots (facts §4)."""

import json

import pytest
from builders import qwen3_5_moe
from typer.testing import CliRunner

from qscale.cli import app
from qscale.engines.loader import MergedParam, ShardSlot
from qscale.engines.processing import Effect, process_param
from qscale.engines.profiles import FP8_SENTINEL, PostLoad

S = FP8_SENTINEL


def param(slots, name="m.qkv_proj.weight_scale", expert=None):
    return MergedParam(name, (ShardSlot("x", None, expert),), (4, 4, 4), tuple(slots))


def effects(done):
    return [o.effect for o in done.partitions]


def test_requantize_with_max_dequantizes_unfilled_partitions_with_the_sentinel():
    done = process_param(param([2.0, S, S, 1.0]), PostLoad.REQUANTIZE_MAX)
    assert done.result == 2.0
    assert effects(done) == [Effect.EXACT, Effect.CORRUPT, Effect.CORRUPT, Effect.REQUANTIZED]
    assert done.partitions[3].ratio == 2.0  # requantized to a scale twice its own


def test_last_slot_unfilled_means_fused_on_disk_no_requantization():
    # vLLM skips requantization when weight_scale[-1] <= finfo(float8_e4m3fn).min
    done = process_param(param([2.0, 1.0, S]), PostLoad.REQUANTIZE_MAX)
    assert effects(done) == [Effect.EXACT, Effect.WRONG_SCALE, Effect.WRONG_SCALE]
    assert done.partitions[1].ratio == 2.0 and done.partitions[2].ratio is None


def test_activation_max_ignores_unfilled_slots():
    done = process_param(param([0.5, S, S, 0.25], "m.qkv.input_scale"), PostLoad.ACT_MAX)
    assert done.result == 0.5
    assert effects(done) == [Effect.EXACT, Effect.IGNORED, Effect.IGNORED, Effect.REQUANTIZED]


def test_uninitialised_slot_poisons_the_max():
    done = process_param(param([0.5, None, 0.5]), PostLoad.WEIGHT_MAX_DIVISOR)
    assert done.result is None and set(effects(done)) == {Effect.UNINITIALISED}


@pytest.mark.parametrize(("step", "ratio"), [(PostLoad.WEIGHT_MAX_DIVISOR, 0.5),
                                             (PostLoad.WEIGHT_MAX, 2.0)])
def test_global_scale_conventions(step, ratio):
    done = process_param(param([100.0, 200.0]), step)
    wrong = [o for o in done.partitions if o.effect == Effect.WRONG_SCALE]
    assert [o.index for o in wrong] == [0] and wrong[0].ratio == pytest.approx(ratio)


def test_moe_first_column_serves_w3():
    p = param([1.0, 3.0, 2.0, 2.0], "l.experts.w13_weight_scale_2", expert=0)
    done = process_param(p, PostLoad.WEIGHT_FIRST_COLUMN)
    assert effects(done) == [Effect.EXACT, Effect.WRONG_SCALE, Effect.EXACT, Effect.EXACT]
    assert done.partitions[1].ratio == pytest.approx(1 / 3)


def test_moe_requantize_is_per_expert():
    p = param([1.0, 3.0, 2.0, 2.0], "l.experts.w13_weight_scale", expert=0)
    done = process_param(p, PostLoad.REQUANTIZE_MAX)
    assert effects(done) == [Effect.REQUANTIZED, Effect.EXACT, Effect.EXACT, Effect.EXACT]


def test_plan_json_shows_the_processed_slots(tmp_path):
    path = qwen3_5_moe("ct-fp8").write(tmp_path)
    res = CliRunner().invoke(app, ["plan", str(path), "-e", "vllm==0.19.1", "-p",
                                   "in_proj_qkvz", "-f", "json"])
    assert res.exit_code == 0, res.output
    [layer] = [p for p in json.loads(res.output)["params"] if p["name"].endswith("in_proj_qkvz")]
    ws = layer["after_processing"]["weight_scale"]
    assert ws["step"] == "requantize-max"
    assert [p["effect"] for p in ws["partitions"]][1:3] == ["corrupt", "corrupt"]
    assert [p["effect"] for p in layer["after_processing"]["input_scale"]["partitions"]][1:3] \
        == ["ignored", "ignored"]
