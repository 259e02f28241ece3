"""plan_fix(): check the checkpoint, ask every fixer for changes, decide what is applied.

A finding is *resolved* when an applied change claims it. Every other finding is *rejected*
with a reason: the fixer's refusal, an unsafe fix that needs ``--unsafe-fixes``, the rule's
manual fix, or "no automatic fix". Rejections at error severity block the fix: nothing is
written (exit 1). Two changes that touch the same tensor conflict; the later one (in fixer
order) is dropped and its findings stay rejected.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable

from qscale.checkpoint import Checkpoint
from qscale.engines import parse_engine
from qscale.engines.loader import plan_load
from qscale.errors import QscaleError, UnknownFormat
from qscale.findings import Applicability, Finding, Severity
from qscale.fix import (
    channel_scale,
    dequant_head,
    global_scale,
    ignore_names,
    index,
    scalar_input,
    scale_format,
    shared_expert,
    unregistered,
)
from qscale.fix.context import FixContext, Fixer
from qscale.fix.layout import file_size, layout_file
from qscale.fix.model import (
    Change,
    ConfigEdit,
    Edit,
    FileAction,
    FixPlan,
    Refusal,
    Rejection,
    touched,
)
from qscale.formats import resolve_quantization
from qscale.layout import Deployment
from qscale.runner import CheckOptions, run_rules

#: Every fixer, in priority order (an earlier fixer wins a conflict over the same tensor).
FIXERS: tuple[Fixer, ...] = (
    channel_scale.plan,
    scalar_input.plan,
    scale_format.plan,
    ignore_names.plan,
    shared_expert.plan,
    global_scale.plan,
    dequant_head.plan,
    unregistered.plan,
)


class RuleCrash(QscaleError, RuntimeError):
    """A rule crashed while checking the checkpoint to fix."""

    default_hint = "rerun `qscale check --debug` and report the traceback"


def plan_fix(
    ckpt: Checkpoint,
    *,
    engine: str | None = None,
    unsafe: bool = False,
    stale_index: Finding | None = None,
    deployment: Deployment | None = None,
) -> FixPlan:
    """Everything `qscale fix` would do to ``ckpt`` for ``engine`` served with ``deployment``
    (default: one GPU); reads no tensor data except the small scales the rules read."""
    spec = parse_engine(engine)
    quant = resolve_quantization(ckpt)
    deployment = deployment or Deployment()
    report = run_rules(ckpt, quant, CheckOptions(engine=engine, deployment=deployment))
    if stale_index is not None and ckpt.index_file:
        report = dataclasses.replace(report, findings=(stale_index, *report.findings))
    if report.crashed:
        code, err = report.crashed[0]
        raise RuleCrash(f"rule {code} crashed while checking {ckpt.source}: {err}")
    try:
        load = plan_load(ckpt, spec, quant)
    except UnknownFormat:
        load = None
    ctx = FixContext(ckpt, quant, load, report, spec, engine, deployment)
    changes: list[Change] = []
    refusals: dict[Finding, str] = {}
    for fixer in FIXERS:
        for item in fixer(ctx):
            if isinstance(item, Refusal):
                refusals.setdefault(item.finding, item.reason)
            else:
                changes.append(item)
    if stale_index is not None and ckpt.index_file:
        changes.append(index.rebuild(stale_index, ckpt.index_file))
    wanted = [c for c in changes if c.applicability == Applicability.SAFE or unsafe]
    applied, conflicts = _without_conflicts(wanted)
    available = tuple(c for c in changes if c.applicability == Applicability.UNSAFE and not unsafe)
    resolved = {f for c in applied for f in c.resolves}
    resolved |= _notes_on(resolved, report.findings)
    rejected = tuple(
        _reject(f, refusals, available, conflicts) for f in report.findings if f not in resolved
    )
    return FixPlan(
        source=ckpt.source,
        engine=report.engine or spec.label,
        report=report,
        applied=tuple(applied),
        available=available,
        rejected=rejected,
        files=file_actions(ckpt, tuple(applied), rebuild_index=stale_index is not None),
        checkpoint=ckpt,
        rebuild_index=stale_index is not None,
    )


def _notes_on(resolved: set[Finding], findings: Iterable[Finding]) -> set[Finding]:
    """QS801 info notes on a resolved finding: the note names the engine bug behind a
    finding of another rule at the same place (QS401, QS601); fixing that finding removes
    the note's cause too, so the plan does not list it as left over."""
    at = {f.location for f in resolved}
    return {
        f
        for f in findings
        if f.code == "QS801" and f.severity == Severity.INFO and f.location in at
    }


def _touched(c: Change) -> set[str]:
    return {n for e in c.edits for n in touched(e)}


def _without_conflicts(changes: Iterable[Change]) -> tuple[list[Change], dict[Finding, str]]:
    kept: list[Change] = []
    owner: dict[str, Change] = {}
    conflicts: dict[Finding, str] = {}
    for c in changes:
        clash = next((owner[t] for t in _touched(c) if t in owner), None)
        if clash is not None:
            for f in c.resolves:
                conflicts.setdefault(f, f"its fix conflicts with “{clash.title}” (same tensor)")
            continue
        kept.append(c)
        owner.update(dict.fromkeys(_touched(c), c))
    return kept, conflicts


def _reject(
    f: Finding,
    refusals: dict[Finding, str],
    available: tuple[Change, ...],
    conflicts: dict[Finding, str],
) -> Rejection:
    blocking = f.severity >= Severity.ERROR
    offered = next((c for c in available if f in c.resolves), None)
    if offered is not None:
        reason = f"unsafe fix available with --unsafe-fixes: {offered.title}"
    elif f in conflicts:
        reason = conflicts[f]
    elif f in refusals:
        reason = refusals[f]
    elif f.fix is not None and f.fix.applicability == Applicability.MANUAL:
        reason = f"no automatic fix; by hand: {f.fix.title}"
    elif f.fix is not None:
        reason = f"`qscale fix` has no rewrite for this case yet ({f.fix.title})"
    else:
        reason = "no fix"
    return Rejection(f, reason, blocking)


def file_actions(
    ckpt: Checkpoint, changes: tuple[Change, ...], *, rebuild_index: bool = False
) -> tuple[FileAction, ...]:
    """What the output does with each safetensors and config file, with sizes."""
    edits: dict[str, list[Edit]] = {}
    for c in changes:
        for e in c.edits:
            edits.setdefault(e.file, []).append(e)
    out = []
    for h in ckpt.files:
        mine = [e for e in edits.get(h.file, ()) if not isinstance(e, ConfigEdit)]
        if not mine:
            out.append(FileAction(h.file, "link", h.size, h.size))
            continue
        layout = layout_file(h, mine)
        names = tuple(dict.fromkeys(n for e in mine for n in touched(e)))
        out.append(FileAction(h.file, "rewrite", file_size(layout, h.metadata), h.size, names))
    for name, es in edits.items():
        if any(isinstance(e, ConfigEdit) for e in es):
            out.append(FileAction(name, "write", 0, 0))
    if ckpt.index_file and (rebuild_index or any(a.action == "rewrite" for a in out)):
        out.append(FileAction(ckpt.index_file, "write", 0, 0))
    return tuple(out)
