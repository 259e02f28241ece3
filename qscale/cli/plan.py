"""`qscale plan`: the engine's merged parameters, partitions and simulated scale slots."""

from __future__ import annotations

import json
import math
from typing import Annotated, Any

import typer

from qscale.cli.options import (
    EngineOpt,
    FormatOpt,
    ModelArg,
    OutputFormat,
    OutputOpt,
    emit,
    error_document,
)
from qscale.engines.loader import LoadPlan, MergedParam, Slot, is_sentinel, plan_load
from qscale.engines.processing import Processed, process
from qscale.progress import read_progress
from qscale.source import read_checkpoint


def _slot_json(v: Slot) -> float | str:
    if v is None:
        return "uninitialized"
    return v if math.isfinite(v) else str(v)


def _slot_text(v: Slot) -> str:
    if v is None:
        return "uninit"
    return f"{v:.4g}" + (" (sentinel)" if is_sentinel(v) else "")


def _processed_json(done: Processed) -> dict[str, Any]:
    return {
        "step": done.step.value,
        "scale": None
        if done.result is None and done.param.sources[0].expert is not None
        else _slot_json(done.result),
        "partitions": [
            {"effect": o.effect.value, "used": _slot_json(o.used), "ratio": o.ratio}
            for o in done.partitions
        ],
    }


def plan_dict(plan: LoadPlan, params: list[MergedParam]) -> dict[str, Any]:
    """The plan as JSON-ready data: scale slots grouped under their merged layer, and what
    processing after load makes of them."""
    processed = {d.param.name: d for d in process(plan)}
    layers: dict[str, dict[str, Any]] = {}
    for p in params:
        module, _, leaf = p.name.rpartition(".")
        entry = layers.setdefault(
            module,
            {
                "name": module,
                "partitions": None,
                "slots": {},
                "after_processing": {},
                "sources": {},
                "errors": [],
            },
        )
        if p.partitions is not None:
            entry["partitions"] = list(p.partitions)
        if p.slots is not None:
            entry["slots"][leaf] = [_slot_json(v) for v in p.slots]
        if p.name in processed:
            entry["after_processing"][leaf] = _processed_json(processed[p.name])
        entry["sources"][leaf] = [
            {
                "tensor": s.source,
                "shard_id": _shard(s.shard_id),
                **({"expert": s.expert} if s.expert is not None else {}),
            }
            for s in p.sources
        ]
        if p.kept_from is not None:
            entry.setdefault("kept_from", {})[leaf] = p.kept_from
        entry["errors"] += list(p.errors)
    return {
        "schema_version": 1,
        "engine": plan.engine.label,
        "family": plan.family.name,
        "notes": list(plan.notes),
        "skipped": list(plan.skipped),
        "params": list(layers.values()),
    }


def _shard(s: object) -> object:
    return list(s) if isinstance(s, tuple) else s


@error_document
def plan_cmd(
    model: ModelArg,
    engine: EngineOpt = None,
    param: Annotated[
        str | None,
        typer.Option("--param", "-p", help="Only engine parameters whose name contains this text."),
    ] = None,
    fmt: FormatOpt = OutputFormat.console,
    output: OutputOpt = None,
) -> None:
    """Show what the engine builds: merged parameters, partitions, and each scale slot.

    Example: qscale plan ./ckpt --engine vllm==0.19.1 --param in_proj_qkvz
    """
    with read_progress(fmt == OutputFormat.console) as progress:
        ckpt = read_checkpoint(model, progress=progress, header_only=True)  # no value rule runs
    plan = plan_load(ckpt, engine)
    params = [p for p in plan.params.values() if param is None or param in p.name]
    processed = {d.param.name: d for d in process(plan)}
    if fmt == OutputFormat.json:
        emit(json.dumps(plan_dict(plan, params), indent=2) + "\n", output, ckpt.input_paths())
        return
    lines = [
        f"{model}: {plan.engine.label} ({plan.family.name} family),"
        f" {len(plan.params)} engine parameters"
    ]
    lines += [f"note: {n}" for n in plan.notes]
    for p in params:
        if p.slots is None and p.partitions is None and len(p.sources) == 1:
            continue  # plain one-to-one parameters: nothing to show
        parts = f" partitions {list(p.partitions)}" if p.partitions else ""
        lines.append(f"{p.name}{parts}")
        if p.slots is not None:
            lines.append("    slots: [" + ", ".join(_slot_text(v) for v in p.slots) + "]")
        if p.kept_from is not None:
            lines.append(f"    one value for the layer, each shard's copy over the last: kept"
                         f" {p.kept_from}")
        done = processed.get(p.name)
        if done is not None and any(o.effect.value != "exact" for o in done.partitions):
            effects = ", ".join(f"{o.index}: {o.effect.value}" for o in done.partitions[:8])
            lines.append(f"    after processing ({done.step.value}): {effects}")
        lines.extend(f"    <- {s.source} shard {s.shard_id!r}" for s in p.sources[:8])
        lines.extend(f"    error: {e}" for e in p.errors)
    emit("\n".join(lines) + "\n", output, ckpt.input_paths())
