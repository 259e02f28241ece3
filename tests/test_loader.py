"""The load plan: mapping, tuple expansion, version-exact slot values."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
from builders import qwen3_5_moe

from qscale import CheckOptions, check, read_checkpoint
from qscale.engines import parse_engine
from qscale.engines.loader import expand_shard_id, plan_load, unfilled_params
from qscale.engines.profiles import FP8_SENTINEL
from qscale.errors import UnknownEngine

P = "model.language_model.layers.0.linear_attn"
QKVZ = "language_model.model.layers.0.linear_attn.in_proj_qkvz"
FIXTURES = Path(__file__).parent / "fixtures"


def test_expand_shard_id():
    assert expand_shard_id((0, 1, 2), 4) == (0, 1, 2)
    assert expand_shard_id("k", 3) == (1,)
    assert expand_shard_id(3, 4) == (3,)
    assert expand_shard_id(None, 2) == (0, 1)


@pytest.fixture(scope="module")
def fp8(tmp_path_factory):
    return read_checkpoint(qwen3_5_moe("ct-fp8").write(tmp_path_factory.mktemp("fp8")))


def _val(ckpt, name):
    return float(ckpt.value(name)[0])


def test_version_exact_slots(fp8):
    s_qkv = _val(fp8, f"{P}.in_proj_qkv.weight_scale")
    s_z = _val(fp8, f"{P}.in_proj_z.weight_scale")
    old = plan_load(fp8, "vllm==0.19.1").param(f"{QKVZ}.weight_scale")
    new = plan_load(fp8, "vllm==0.20.0").param(f"{QKVZ}.weight_scale")
    assert old.slots == (s_qkv, FP8_SENTINEL, FP8_SENTINEL, s_z)
    assert new.slots == (s_qkv, s_qkv, s_qkv, s_z)
    assert old.partitions == (128, 128, 256, 256)  # key_dim, key_dim, value_dim, value_dim


def test_stacked_mapping_and_experts(fp8):
    plan = plan_load(fp8, "vllm==0.20.0")
    qkv = plan.param("language_model.model.layers.1.self_attn.qkv_proj.weight_scale")
    assert [s.shard_id for s in qkv.sources] == ["k", "q", "v"]
    w13 = plan.param("language_model.model.layers.0.mlp.experts.w13_weight_scale")
    assert len(w13.slots) == 4 and all(v is not None and v > 0 for v in w13.slots)
    assert "lm_head.weight" not in plan.params
    assert "language_model.lm_head.weight" in plan.params


def test_vllm_older_than_tuple_support_refuses(fp8):
    p = plan_load(fp8, "vllm==0.17.0").param(f"{QKVZ}.weight_scale")
    assert p.errors and "no tuple shard ids" in p.errors[0]


def test_vector_scale_on_tuple_shard_is_predicted_as_a_refusal(tmp_path):
    ckpt = read_checkpoint(
        qwen3_5_moe("ct-fp8").reshape(f"{P}.in_proj_qkv.weight_scale", (3,)).write(tmp_path)
    )
    p = plan_load(ckpt, "vllm==0.33.0").param(f"{QKVZ}.weight_scale")
    assert p.errors and "assert loaded_weight.shape[0] == 1" in p.errors[0]
    s = plan_load(ckpt, "sglang==0.5.12").param(f"{QKVZ}.weight_scale")
    assert not s.errors  # SGLang splits a [3] scale over the three partitions


def test_unknown_engine_and_version_mapping():
    with pytest.raises(UnknownEngine):
        parse_engine("trtllm==1.0")
    assert not parse_engine("vllm==0.50.0").exact
    assert parse_engine("vllm==0.19.1").exact


# ---------------------------------------------------------------- real vLLM, real checkpoints

GOLDENS = sorted((FIXTURES / "vllm_golden").glob("*.json"))


def _golden_cases():
    for g in GOLDENS:
        data = json.loads(g.read_text())
        tool, _, name = data["checkpoint"].partition("/")
        ckpt_dir = FIXTURES / "real" / f"{tool}-{name}"
        if data.get("load") == "ok" and ckpt_dir.is_dir():
            yield pytest.param(data, ckpt_dir, id=g.stem)


def _same(predicted, actual, init):
    if predicted is None:  # never written: vLLM still holds its initial value
        return init is not None and (actual == init or (math.isnan(actual) and math.isnan(init)))
    return math.isclose(actual, predicted, rel_tol=0, abs_tol=0) or actual == pytest.approx(
        predicted, rel=1e-7
    )


@pytest.mark.parametrize(("golden", "ckpt_dir"), list(_golden_cases()))
def test_predicted_slots_equal_real_vllm(golden, ckpt_dir):
    plan = plan_load(read_checkpoint(ckpt_dir), f"vllm=={golden['vllm_version']}")
    for name, p in plan.params.items():
        if p.slots is None or p.errors:
            continue
        real = golden["params"].get(name)
        assert real is not None, f"vLLM has no parameter {name}"
        values = real.get("values")
        init = real.get("init_values") or [None] * len(values)
        assert len(values) == len(p.slots), name
        for pv, av, iv in zip(p.slots, values, init, strict=True):
            assert _same(pv, av, iv), (name, p.slots, values)


@pytest.mark.parametrize("version", ["0.19.1", "0.20.0", "0.32.0"])
def test_seed_checkpoint_in_proj_qkvz_slots_equal_real_vllm(version):
    """The llm-compressor FP8 Qwen3.5-MoE checkpoint, slot by slot, against real vLLM."""
    suffix = "" if version == "0.32.0" else f"@vllm-{version}"
    golden = json.loads(
        (FIXTURES / "vllm_golden" / f"llmc-qwen3_5_moe-FP8{suffix}.json").read_text()
    )
    assert golden["vllm_version"] == version and golden["load"] == "ok"
    plan = plan_load(
        read_checkpoint(FIXTURES / "real" / "llmc-qwen3_5_moe-FP8"), f"vllm=={version}"
    )
    for leaf in ("weight_scale", "input_scale"):
        real = golden["params"][f"{QKVZ}.{leaf}"]["values"]
        assert list(plan.param(f"{QKVZ}.{leaf}").slots) == real
    broken = plan.param(f"{QKVZ}.weight_scale").slots
    assert (broken[1] == FP8_SENTINEL) is (version == "0.19.1")


@pytest.mark.parametrize(("golden", "ckpt_dir"), list(_golden_cases()))
def test_every_predicted_parameter_exists_in_real_vllm(golden, ckpt_dir):
    """No checkpoint tensor is mapped to a parameter name real vLLM does not have."""
    plan = plan_load(read_checkpoint(ckpt_dir), f"vllm=={golden['vllm_version']}")
    assert sorted(set(plan.params) - set(golden["params"])) == []


@pytest.mark.parametrize(("golden", "ckpt_dir"), list(_golden_cases()))
def test_every_real_vllm_parameter_is_filled_or_engine_owned(golden, ckpt_dir):
    """The other direction: what real vLLM held that no checkpoint tensor fed is either a
    parameter the engine owns, or a tensor missing from the checkpoint that QS201 reports."""
    ckpt = read_checkpoint(ckpt_dir)
    plan = plan_load(ckpt, f"vllm=={golden['vllm_version']}")
    unfilled = unfilled_params(plan, golden["params"])
    if not unfilled:
        return
    report = check(ckpt, CheckOptions(select=["QS201"], engine=f"vllm=={golden['vllm_version']}"))
    missing_layers = {f.location.tensor.rsplit(".", 2)[0] for f in report.findings}
    assert all(p.endswith("input_scale") for p in unfilled), unfilled
    assert missing_layers, "unfilled engine parameters but no QS201 finding"
