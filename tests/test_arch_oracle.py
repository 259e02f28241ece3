"""qscale's load plan against real vLLM, tensor by tensor, for ~30 architectures.

Each golden under tests/fixtures/vllm_golden/ that carries ``"calls"`` was written by the
oracle (oracle/README.md: "Architecture goldens") while real vLLM 0.32.0 or 0.33.0 loaded a
tiny llm-compressor checkpoint on a CPU. ``calls`` lists every weight-loader call as
[checkpoint tensor, vLLM parameter, shard_id, expert_id]; ``uncalled`` the checkpoint tensors
that reached no loader. Checkpoints: tests/fixtures/arch/<tool>-<name> (made by
oracle/arch_ckpts.py) or tests/fixtures/real/<tool>-<name> (small_ckpts.py).

For every golden:
(a) every parameter qscale predicts exists in vLLM, with the rows (sum of partitions) and the
    slot count qscale predicts;
(b) every checkpoint tensor vLLM fed to a loader is mapped by qscale to the same
    (parameter, shard_id, expert_id), and the tensors vLLM passed over are ones qscale skips;
(c) predicted per-tensor scale slots equal vLLM's values (None = never written: vLLM still
    holds its construction value, NaN under the oracle's torch.empty);
(d) qscale's load outcome (refusal or not) agrees with vLLM's.

Architectures qscale cannot plan yet are in NOT_PLANNED, asserted still unplannable (shrink it
when they become plannable); known disagreements are in DISAGREE, asserted exactly.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pytest

from qscale import read_checkpoint
from qscale.engines.loader import LoadPlan, MergedParam, plan_load
from qscale.errors import UnknownFormat

FIXTURES = Path(__file__).parent / "fixtures"
GOLDEN_DIR = FIXTURES / "vllm_golden"

#: config.json architectures qscale cannot plan (plan_load raises UnknownFormat). Asserted
#: still unplannable: shrink when they become plannable.
NOT_PLANNED: dict[str, str] = {
    # "fuses `gate_up_proj` ... but no stacked mapping for it was found in its loader code"
    "Gemma4ForCausalLM": "cannot plan",
    # vLLM's registry maps it to its Transformers backend (TransformersMoEForCausalLM), whose
    # weight names qscale does not plan: a partial check (QS103), not "not served"
    "HunYuanMoEV1ForCausalLM": "Transformers backend",
}

#: golden stem -> substrings; every line of `disagreements()` must contain one of them and
#: every substring must match a line. Fix qscale, then remove the entry.
_GPTOSS = ["'gpt_oss_w2', "]
_DSV32 = ["(d) vLLM load=error 'NotImplementedError: Sparse Attention is not supported on CPU.'"]
DISAGREE: dict[str, list[str]] = {
    # gpt-oss per-expert down_proj bias / weight_scale: vLLM passes shard_id "gpt_oss_w2",
    # qscale "w2"
    **{f"llmc-gpt_oss-W4A16{v}": _GPTOSS for v in ("", "@vllm-0.33.0")},
    # Step3 text copies q_proj/k_proj/v_proj straight into slices of a ReplicatedLinear
    # qkv_proj (`param.narrow(param.output_dim, ...)`, no weight_loader); a per-tensor FP8
    # `q_proj.weight_scale` meets a PerTensorScaleParameter without output_dim: vLLM refuses.
    # qscale keeps q/k/v_proj unfused and predicts a load
    **{
        f"hand-step3_text-FP8{v}": [
            "(d) vLLM load=error \"AttributeError: 'PerTensorScaleParameter' object has no"
            " attribute 'output_dim'\"; qscale predicts a load"
        ]
        for v in ("", "@vllm-0.33.0")
    },
    # platform, not the checkpoint: vLLM's CPU platform has no sparse (DSA) attention
    **{f"llmc-deepseek_v32-FP8{v}": _DSV32 for v in ("", "@vllm-0.33.0")},
    # platform, not the checkpoint: on a CPU, vLLM 0.32/0.33 INCWna16Scheme.get_moe_method
    # builds auto-round integer experts unquantized ("CPU does not support quantized MoE
    # yet") and then finds no `w2_qweight`; the `@moe-as-gpu` goldens take the GPU path
    # (AutoGPTQMoEMethod) and agree with qscale
    **{f"autoround-qwen3_moe-auto_round{v}": [
        "(d) vLLM load=error \"AttributeError: Layer model.layers.0.mlp.experts has no"
        " parameter 'w2_qweight'"] for v in ("", "@vllm-0.33.0")},
}


def _goldens() -> list[Any]:
    """Goldens with loader calls, or of a checkpoint under fixtures/arch (a failed load)."""
    out = []
    for g in sorted(GOLDEN_DIR.glob("*.json")):
        data = json.loads(g.read_text())
        tool, _, name = data["checkpoint"].partition("/")
        arch, real = FIXTURES / "arch" / f"{tool}-{name}", FIXTURES / "real" / f"{tool}-{name}"
        data["_stem"] = g.stem
        if arch.is_dir():
            out.append(pytest.param(data, arch, id=g.stem))
        elif "calls" in data and real.is_dir():
            out.append(pytest.param(data, real, id=g.stem))
    return out


def _js(v: Any) -> Any:
    return list(v) if isinstance(v, tuple) else v


def _same(predicted: float | None, actual: Any, init: Any) -> bool:
    if predicted is None:  # never written: still the construction value
        return init is not None and (actual == init or (_nan(actual) and _nan(init)))
    if isinstance(actual, str):
        return _nan(actual) and math.isnan(predicted) if actual == "nan" else False
    return actual == predicted or actual == pytest.approx(predicted, rel=1e-7)


def _nan(v: Any) -> bool:
    return v == "nan" or (isinstance(v, float) and math.isnan(v))


def disagreements(golden: dict[str, Any], plan: LoadPlan) -> list[str]:
    """Every difference between qscale's plan and what real vLLM did, one line each."""
    out = _outcome(golden, plan)
    if golden["load"] == "ok":
        for name, p in sorted(plan.params.items()):
            out += _param(name, p, golden["params"].get(name))
    return out + _calls(golden, plan)


def _outcome(golden: dict[str, Any], plan: LoadPlan) -> list[str]:
    """(d) load or refusal."""
    why = [r.reason for r in plan.refusals] + [e for p in plan.params.values() for e in p.errors]
    if (golden["load"] == "ok") != bool(why):
        return []
    return [
        f"(d) vLLM load={golden['load']} {golden.get('error', '')[:200]!r};"
        f" qscale {'refuses: ' + '; '.join(why)[:300] if why else 'predicts a load'}"
    ]


def _param(name: str, p: MergedParam, real: dict[str, Any] | None) -> list[str]:
    """(a) the parameter, its rows and slot count; (c) its per-tensor slot values."""
    if real is None:
        return [f"(a) qscale predicts `{name}`; vLLM has no such parameter"]
    expert = any(s.expert is not None for s in p.sources)
    rows = (
        p.partitions
        and not expert
        and p.leaf in ("weight", "weight_packed")
        and real["shape"]
        and sum(p.partitions) != real["shape"][0]
    )
    if rows:
        return [
            f"(a) `{name}`: qscale partitions {list(p.partitions or ())}"
            f" (sum {sum(p.partitions or ())}), vLLM shape {real['shape']}"
        ]
    if p.slots is None or p.errors:
        return []
    values = real.get("values")
    if values is None or len(values) != len(p.slots):
        return [f"(a) `{name}`: qscale predicts {len(p.slots)} slots, vLLM shape {real['shape']}"]
    init = real.get("init_values") or [None] * len(values)
    if all(_same(a, b, c) for a, b, c in zip(p.slots, values, init, strict=True)):
        return []
    return [f"(c) `{name}`: qscale slots {list(p.slots)}, vLLM {values}"]


def _calls(golden: dict[str, Any], plan: LoadPlan) -> list[str]:
    """(b) per checkpoint tensor: (param, shard_id, expert_id) of every loader call."""
    out = []
    predicted: dict[str, set[tuple[str, Any, Any]]] = {}
    for pname, p in plan.params.items():
        for s in p.sources:
            predicted.setdefault(s.source, set()).add((pname, _hashable(s.shard_id), s.expert))
    real_calls: dict[str, set[tuple[str, Any, Any]]] = {}
    for ckpt, pname, shard, expert in golden.get("calls", []):
        real_calls.setdefault(ckpt, set()).add((pname, _hashable(shard), expert))
    not_loaded = set(plan.skipped) | set(plan.dropped)
    for ckpt, calls in sorted(real_calls.items()):
        pred = predicted.get(ckpt)
        if pred is None:
            why = "skips it" if ckpt in not_loaded else "has no such checkpoint tensor"
            out.append(f"(b) `{ckpt}`: vLLM loads it into {sorted(calls, key=str)}; qscale {why}")
        elif pred != calls:
            out.append(
                f"(b) `{ckpt}`: vLLM loads {sorted(calls, key=str)}; qscale {sorted(pred, key=str)}"
            )
    if golden["load"] != "ok":
        return out
    params = golden["params"]
    out += [
        f"(b) `{ckpt}`: vLLM passes it over (no loader call); qscale loads it"
        f" into {sorted(predicted[ckpt], key=str)}"
        for ckpt in golden.get("uncalled", [])
        if ckpt in predicted and ckpt not in not_loaded and not _written(params, predicted[ckpt])
    ]
    return out


def _written(params: dict[str, Any], pred: set[tuple[str, Any, Any]]) -> bool:
    """Some loaders copy a tensor without a weight_loader call (vLLM 0.32.0 gpt-oss `sinks`):
    the parameter then no longer holds its construction value."""
    for pname, _, _ in pred:
        real = params.get(pname, {})
        vals, init = real.get("values"), real.get("init_values")
        if vals is not None and init is not None and vals != init:
            return True
    return False


def _hashable(v: Any) -> Any:
    return tuple(v) if isinstance(v, list | tuple) else v


CASES = _goldens()


@pytest.mark.skipif(not CASES, reason="no architecture goldens")
@pytest.mark.parametrize(("golden", "ckpt_dir"), CASES)
def test_plan_matches_real_vllm_per_tensor(golden: dict[str, Any], ckpt_dir: Path) -> None:
    ckpt = read_checkpoint(ckpt_dir)
    arch = ckpt.config.architecture
    version = golden["vllm_version"]
    stem = golden["_stem"]  # the golden's file name (an oracle variant may add a suffix)
    if arch in NOT_PLANNED:
        with pytest.raises(UnknownFormat, match=NOT_PLANNED[arch]):
            plan_load(ckpt, f"vllm=={version}")
        return
    plan = plan_load(ckpt, f"vllm=={version}")
    found = disagreements(golden, plan)
    expected = DISAGREE.get(stem, [])
    assert [d for d in found if not any(e in d for e in expected)] == []
    assert [e for e in expected if not any(e in d for d in found)] == []


def test_not_planned_is_not_stale() -> None:
    """Every NOT_PLANNED architecture still has a golden here (no dead entries)."""
    seen = set()
    for case in CASES:
        _, d = case.values
        seen.add(json.loads((d / "config.json").read_text())["architectures"][0])
    assert seen >= set(NOT_PLANNED), sorted(set(NOT_PLANNED) - seen)
    assert set(DISAGREE) <= {c.id for c in CASES}


MINIMAX = [c for c in CASES if "minimax_m2" in c.id]


@pytest.mark.parametrize(("golden", "ckpt_dir"), MINIMAX)
def test_expert_names_vllm_passes_over_are_reported(golden: dict[str, Any], ckpt_dir: Path
                                                    ) -> None:
    """MiniMax-M2 experts stored as gate/up/down_proj: real vLLM makes no loader call for
    them (its expert mapping takes w1/w2/w3) and loads "ok" with the fused experts unwritten.
    qscale's plan drops exactly those tensors, and QS404 makes it an error."""
    from qscale import CheckOptions, check

    ckpt = read_checkpoint(ckpt_dir)
    version = golden["vllm_version"]
    plan = plan_load(ckpt, f"vllm=={version}")
    skipped_by_vllm = {n for n in golden["uncalled"] if ".experts." in n}
    assert skipped_by_vllm and set(plan.dropped) == skipped_by_vllm
    report = check(ckpt, CheckOptions(engine=f"vllm=={version}"))
    assert any(f.code == "QS404" and f.severity.label == "error" for f in report.findings)
