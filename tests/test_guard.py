"""qscale.guard.check_loaded: fail closed on scale slots a loader left unusable."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
from builders import qwen3_5_moe

from qscale import QscaleError, read_checkpoint
from qscale.engines.loader import LoadPlan, plan_load
from qscale.engines.profiles import FP8_SENTINEL
from qscale.guard import LoadGuardError, Problem, check_loaded

QKVZ = "language_model.model.layers.0.linear_attn.in_proj_qkvz"
W13 = "language_model.model.layers.0.mlp.experts.w13_weight_scale"
FIXTURES = Path(__file__).parent / "fixtures"
S_QKV, S_Z = 1.9073486328125e-4, 1.7547607421875e-4  # real llm-compressor values (float32)


def _module(tensors: dict[str, torch.Tensor], *, buffers: tuple[str, ...] = ()) -> torch.nn.Module:
    """A real module tree holding ``tensors`` as parameters (or buffers) under dotted names."""
    root = torch.nn.Module()
    for name, t in tensors.items():
        *path, leaf = name.split(".")
        mod = root
        for part in path:
            if part not in mod._modules:
                mod.add_module(part, torch.nn.Module())
            mod = mod._modules[part]
        if name in buffers:
            mod.register_buffer(leaf, t)
        else:
            mod.register_parameter(leaf, torch.nn.Parameter(t, requires_grad=False))
    return root


def _f32(*values: float) -> torch.Tensor:
    return torch.tensor(values, dtype=torch.float32)


def _issues(report_or_exc):
    report = getattr(report_or_exc, "report", report_or_exc)
    return [(i.param, i.problem, i.slots) for i in report.issues]


# --------------------------------------------------------------------------- without a plan


def test_vllm_0_19_1_slot_table_is_caught():
    model = _module(
        {
            f"{QKVZ}.weight": torch.zeros(768, 128, dtype=torch.float8_e4m3fn),
            f"{QKVZ}.weight_scale": _f32(S_QKV, FP8_SENTINEL, FP8_SENTINEL, S_Z),
            f"{QKVZ}.input_scale": _f32(0.0094604, 0.0094604, 0.0094604, 0.0094604),
        }
    )
    with pytest.raises(LoadGuardError) as exc:
        check_loaded(model)
    err = exc.value
    assert isinstance(err, QscaleError) and isinstance(err, RuntimeError)
    assert _issues(err) == [(f"{QKVZ}.weight_scale", Problem.SENTINEL, (1, 2))]
    assert f"`{QKVZ}.weight_scale` slots 1, 2 = [-3.40282347e+38, -3.40282347e+38]" in str(err)
    assert "\n" not in str(err) and "qscale check" in err.hint
    assert err.report is not None and f"{QKVZ}.input_scale" in err.report.checked


def test_vllm_0_20_0_slot_table_passes():
    model = _module({f"{QKVZ}.weight_scale": _f32(S_QKV, S_QKV, S_QKV, S_Z)})
    report = check_loaded(model)
    assert report.ok and report.checked == (f"{QKVZ}.weight_scale",)
    assert report.compared == () and report.skipped == ()


def test_nan_placeholders_are_caught():
    """ModelOpt NVFP4 weight_scale (FP8) is pre-filled NaN; torch.empty may hold NaN."""
    block = torch.full((4, 8), 0.5).to(torch.float8_e4m3fn)
    block[2, 3] = float("nan")
    model = _module(
        {
            "model.layers.0.mlp.down_proj.weight_scale": block,
            "model.layers.0.mlp.down_proj.weight_scale_2": _f32(math.nan),
        }
    )
    report = check_loaded(model, raise_on_error=False)
    assert _issues(report) == [
        ("model.layers.0.mlp.down_proj.weight_scale", Problem.NAN, (19,)),
        ("model.layers.0.mlp.down_proj.weight_scale_2", Problem.NAN, (0,)),
    ]
    assert "slot (2, 3) = nan" in report.message()


def test_e8m0_nan_byte_is_caught():
    scales = torch.full((2, 4), 127, dtype=torch.uint8)  # 2**0
    scales[1, 0] = 255
    report = check_loaded({f"{QKVZ}.weight_scale": scales}, raise_on_error=False)
    assert _issues(report) == [(f"{QKVZ}.weight_scale", Problem.NAN, (4,))]


def test_non_finite_and_non_positive_scales_are_caught():
    report = check_loaded(
        {
            "a.weight_scale": _f32(1.0, math.inf, -math.inf),
            "b.input_scale": _f32(0.0, -2.0, 3.0),
            "c.w2_weight_scale": torch.tensor([0.5, 0.0], dtype=torch.bfloat16),
        },
        raise_on_error=False,
    )
    assert _issues(report) == [
        ("a.weight_scale", Problem.NON_FINITE, (1, 2)),
        ("b.input_scale", Problem.NON_POSITIVE, (0, 1)),
        ("c.w2_weight_scale", Problem.NON_POSITIVE, (1,)),
    ]
    with pytest.raises(LoadGuardError, match="3 scale parameters"):
        check_loaded(
            {
                "a.weight_scale": _f32(math.inf),
                "b.input_scale": _f32(0.0),
                "c.weight_scale_inv": _f32(-1.0),
            }
        )


def test_near_misses_pass():
    """A zero FP8 block scale (an all-zero block), KV-cache scales at vLLM's -1.0 "absent"
    value, and non-scale parameters that hold NaN are all fine."""
    fp8_block = torch.tensor([[0.0, 0.25]]).to(torch.float8_e4m3fn)
    report = check_loaded(
        _module(
            {
                "l.weight_scale": fp8_block,
                "l.attn.k_scale": _f32(-1.0),
                "l.attn.v_scale": _f32(-1.0),
                "l.linear_attn.A_log": _f32(math.nan),
                "l.weight": torch.full((2, 2), math.nan),
            }
        )
    )
    assert report.ok and report.checked == ("l.weight_scale",)


def test_buffers_are_inspected():
    model = _module({"l.input_scale": _f32(FP8_SENTINEL)}, buffers=("l.input_scale",))
    assert _issues(check_loaded(model, raise_on_error=False)) == [
        ("l.input_scale", Problem.SENTINEL, (0,))
    ]


def test_a_parameter_under_two_names_is_reported_once():
    """vLLM may register one parameter under two module paths; both names stay visible to the
    plan, its values are inspected once."""
    model = _module({"experts.routed_experts.w13_weight_scale": _f32(1.0, FP8_SENTINEL)})
    model.add_module("alias", model.experts.routed_experts)
    report = check_loaded(model, raise_on_error=False)
    assert _issues(report) == [("experts.routed_experts.w13_weight_scale", Problem.SENTINEL, (1,))]
    assert report.checked == ("experts.routed_experts.w13_weight_scale",)


def test_large_scale_tensors_are_skipped_not_read():
    big = torch.full((8, 16), math.nan)
    report = check_loaded({"l.weight_scale": big, "m.weight_scale": _f32(1.0)}, max_numel=64)
    assert report.ok and report.skipped == ("l.weight_scale",)
    assert report.checked == ("m.weight_scale",)


def test_message_names_at_most_twelve_parameters():
    bad = {f"layers.{i}.input_scale": _f32(FP8_SENTINEL) for i in range(15)}
    with pytest.raises(LoadGuardError) as exc:
        check_loaded(bad)
    assert "15 scale parameters" in str(exc.value) and "; and 3 more parameters" in str(exc.value)
    assert len(exc.value.report.issues) == 15


# --------------------------------------------------------------------------- with a plan


@pytest.fixture(scope="module")
def fp8_ckpt(tmp_path_factory):
    return read_checkpoint(qwen3_5_moe("ct-fp8").write(tmp_path_factory.mktemp("fp8")))


def _loaded_as_planned(plan: LoadPlan, **overrides: torch.Tensor) -> dict[str, torch.Tensor]:
    """What a loader that behaves exactly like ``plan`` holds: each per-tensor scale slot as
    float32; every other parameter only by name (its values are not the guard's business)."""
    out = {}
    for name, p in plan.params.items():
        if p.slots is None:
            out[name] = torch.empty(0, dtype=torch.bfloat16)
        else:
            out[name] = torch.tensor([math.nan if v is None else v for v in p.slots])
    out.update(overrides)
    return out


def test_plan_of_the_running_version_passes(fp8_ckpt):
    plan = plan_load(fp8_ckpt, "vllm==0.20.0")
    report = check_loaded(_module(_loaded_as_planned(plan)), plan)
    per_tensor = [n for n, p in plan.params.items() if p.slots is not None]
    assert report.ok and sorted(report.compared) == sorted(per_tensor)
    assert f"{QKVZ}.weight_scale" in report.compared


def test_plan_disagreement_is_caught(fp8_ckpt):
    """A plan for 0.19.1 against a model loaded the 0.20.0 way: slots 1-2 differ."""
    old, new = plan_load(fp8_ckpt, "vllm==0.19.1"), plan_load(fp8_ckpt, "vllm==0.20.0")
    with pytest.raises(LoadGuardError) as exc:
        check_loaded(_module(_loaded_as_planned(new)), old)
    issues = exc.value.report.issues
    assert {(i.param, i.problem, i.slots) for i in issues} == {
        (f"{QKVZ}.weight_scale", Problem.PLAN_MISMATCH, (1, 2)),
        (f"{QKVZ}.input_scale", Problem.PLAN_MISMATCH, (1, 2)),
    }
    ws = next(i for i in issues if i.param.endswith("weight_scale"))
    assert ws.expected == (FP8_SENTINEL, FP8_SENTINEL)
    assert ws.values == new.param(f"{QKVZ}.weight_scale").slots[1:3]
    assert "the plan predicts [-3.40282347e+38, -3.40282347e+38]" in str(exc.value)


def test_sentinel_that_the_plan_predicts_is_still_an_error(fp8_ckpt):
    old = plan_load(fp8_ckpt, "vllm==0.19.1")
    report = check_loaded(_loaded_as_planned(old), old, raise_on_error=False)
    assert {(i.param, i.problem) for i in report.issues} == {
        (f"{QKVZ}.weight_scale", Problem.SENTINEL),
        (f"{QKVZ}.input_scale", Problem.SENTINEL),
    }


def test_plan_comparison_is_exact(fp8_ckpt):
    plan = plan_load(fp8_ckpt, "vllm==0.20.0")
    want = torch.tensor(plan.param(W13).slots, dtype=torch.float32)
    off = want.clone()
    off[3] = torch.nextafter(want[3], torch.tensor(1.0))  # one float32 ulp
    report = check_loaded(
        _loaded_as_planned(plan, **{W13: off.reshape(2, 2)}), plan, raise_on_error=False
    )
    assert _issues(report) == [(W13, Problem.PLAN_MISMATCH, (3,))]
    assert "slot (1, 1)" in report.message()


def test_plan_values_are_rounded_to_the_parameter_dtype(tmp_path):
    """A float32 checkpoint scale loaded into a bfloat16 parameter is compared as bfloat16."""
    name = "model.language_model.layers.0.linear_attn.out_proj.weight_scale"
    ckpt = read_checkpoint(
        qwen3_5_moe("ct-fp8").retype(name, torch.float32).set_value(name, 0.1).write(tmp_path)
    )
    plan = plan_load(ckpt, "vllm==0.20.0")
    param = "language_model.model.layers.0.linear_attn.out_proj.weight_scale"
    assert plan.param(param).slots == (float(torch.tensor(0.1, dtype=torch.float32)),)
    as_bf16 = torch.tensor([0.1], dtype=torch.bfloat16)
    assert check_loaded(_loaded_as_planned(plan, **{param: as_bf16}), plan).ok
    next_bf16 = torch.nextafter(as_bf16, torch.tensor([1.0], dtype=torch.bfloat16))
    report = check_loaded(
        _loaded_as_planned(plan, **{param: next_bf16}), plan, raise_on_error=False
    )
    assert _issues(report) == [(param, Problem.PLAN_MISMATCH, (0,))]


def test_missing_parameter_and_slot_count(fp8_ckpt):
    plan = plan_load(fp8_ckpt, "vllm==0.20.0")
    loaded = _loaded_as_planned(plan, **{f"{QKVZ}.input_scale": _f32(0.01, 0.01)})
    del loaded[f"{QKVZ}.weight"]
    report = check_loaded(loaded, plan, raise_on_error=False)
    assert _issues(report) == [
        (f"{QKVZ}.input_scale", Problem.SLOT_COUNT, ()),
        (f"{QKVZ}.weight", Problem.MISSING, ()),
    ]
    assert "has 2 values where the plan predicts 4 slots" in report.message()


def test_slot_the_plan_says_is_never_written(tmp_path):
    """NVFP4 global scales come from torch.empty: on 0.19.1 in_proj_qkvz slots 1-2 hold
    whatever memory held, here a plausible-looking value."""
    ckpt = read_checkpoint(qwen3_5_moe("ct-nvfp4").write(tmp_path))
    plan = plan_load(ckpt, "vllm==0.19.1")
    name = f"{QKVZ}.weight_global_scale"
    s = plan.param(name).slots
    assert s[1] is None and s[2] is None
    garbage = _f32(s[0], 1234.5, 1234.5, s[3])
    with pytest.raises(LoadGuardError, match="which the plan says the loader never writes") as exc:
        check_loaded(_loaded_as_planned(plan, **{name: garbage}), plan)
    # the input global scale's unwritten slots hold NaN here (as in the oracle's runs): the value
    # check reports those, the plan comparison does not report them twice
    assert _issues(exc.value) == [
        (f"{QKVZ}.input_global_scale", Problem.NAN, (1, 2)),
        (name, Problem.UNWRITTEN, (1, 2)),
    ]


# --------------------------------------------------------------------------- real vLLM goldens

#: Goldens where real vLLM loaded scale slots it never wrote (every other load must pass).
BROKEN = {
    # tuple shard id (0, 1, 2) fills slot 0 only (vLLM PR #38517)
    "llmc-qwen3_5_moe-FP8@vllm-0.19.1",
    # Quark file-to-file FP8 declares static input scales but writes none
    "quark-qwen3_5_moe-FP8-la-f2f",
    "quark-qwen3_5_moe-FP8-la-f2f@vllm-0.19.1",
    "quark-qwen3_5_moe-FP8-la-f2f@vllm-0.20.0",
    "quark-qwen3_5_moe-FP8-NEG-conv1d-f2f@vllm-0.19.1",
    "quark-qwen3_5_moe-FP8-NEG-conv1d-f2f@vllm-0.20.0",
}


def _golden_tensors(data: dict) -> dict[str, torch.Tensor]:
    """The golden's parameters: values where recorded (numel <= 64), otherwise names only."""
    out = {}
    for name, p in data["params"].items():
        dtype = getattr(torch, p["dtype"])
        values = p.get("values")
        if values is None:
            out[name] = torch.empty(0, dtype=dtype)
        elif dtype.is_floating_point:
            out[name] = torch.tensor([float(v) for v in values], dtype=torch.float64).to(dtype)
        else:
            out[name] = torch.tensor([int(v) for v in values]).to(dtype)
    return out


def _goldens():
    for g in sorted((FIXTURES / "vllm_golden").glob("*.json")):
        data = json.loads(g.read_text())
        if data["load"] == "ok":
            yield pytest.param(g.stem, data, id=g.stem)


@pytest.mark.parametrize(("stem", "data"), list(_goldens()))
def test_what_real_vllm_loaded(stem, data):
    tensors = _golden_tensors(data)
    report = check_loaded(tensors, raise_on_error=False)
    assert report.ok is (stem not in BROKEN), report.message() if report.issues else stem
    assert all(i.problem is Problem.SENTINEL for i in report.issues)
    tool, _, name = data["checkpoint"].partition("/")
    ckpt_dir = FIXTURES / "real" / f"{tool}-{name}"
    if ckpt_dir.is_dir() and "gpt_oss" not in name:  # gpt-oss renames are not modelled
        plan = plan_load(read_checkpoint(ckpt_dir), f"vllm=={data['vllm_version']}")
        with_plan = check_loaded(tensors, plan, raise_on_error=False)
        assert with_plan.issues == report.issues  # every slot equals the plan, bit for bit
        assert len(with_plan.compared) == sum(p.slots is not None for p in plan.params.values())
