"""check(checkpoint, options) -> Report; rule selection; a crashing rule does not stop the rest."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field

from qscale import rules
from qscale._gc import gc_paused
from qscale.checkpoint import Checkpoint
from qscale.engines import parse_engine, unmodelled
from qscale.engines.catalogue import release_label
from qscale.engines.loader import plan_load
from qscale.errors import UnknownFormat
from qscale.findings import Finding, Location, Report, Severity
from qscale.formats import QuantMap, resolve_quantization
from qscale.layout import Deployment, Layout, Platform
from qscale.layout import resolve as resolve_layout
from qscale.rules._api import Context, Rule
from qscale.rules._experts import reduced_context
from qscale.rules.qs010_engine_version_not_modelled import RULE as ENGINE_NOTE

log = logging.getLogger(__name__)

HEADER_ONLY = (
    "--header-only: scales larger than the header pass decodes were not read; drop the flag"
    " to check every value"
)


@dataclass(frozen=True, slots=True)
class CheckOptions:
    """What to check."""

    select: Sequence[str] = ()
    ignore: Sequence[str] = ()
    engine: str | None = None  #: e.g. "vllm==0.19.1"; None: the newest vLLM profile
    #: the layout and MoE options the checkpoint will be served with (qscale.layout)
    deployment: Deployment = field(default_factory=Deployment)


def run_rules(ckpt: Checkpoint, quant: QuantMap, options: CheckOptions) -> Report:
    """Run the selected rules over an already resolved checkpoint."""
    with gc_paused():
        return _run_rules(ckpt, quant, options)


def _run_rules(ckpt: Checkpoint, quant: QuantMap, options: CheckOptions) -> Report:
    spec = parse_engine(options.engine)
    layout = resolve_layout(options.deployment, spec)  # contradictory options: UsageError
    plan, why = None, ""
    try:
        plan = plan_load(ckpt, spec, quant)
    except UnknownFormat as exc:  # QS103: no family; QS105: the engine serves no such class
        why = f"{exc.code} {exc.message}" if exc.code else exc.message
    ctx = Context(ckpt, quant, plan, deployment=options.deployment, engine=spec)
    # A version qscale has not read is checked as the nearest one it has: an extrapolation,
    # so the check is partial (exit 2 unless --allow-partial), with QS010 saying why.
    not_modelled = unmodelled(spec)
    findings: list[Finding] = (
        [ENGINE_NOTE.finding(not_modelled, Location())] if not_modelled else []
    )
    crashed: list[tuple[str, str]] = []
    skipped: list[tuple[str, str]] = []
    chosen = rules.select(options.select, options.ignore)
    # the rules that judge each routed expert by its own module see alike experts once
    reduced = _reduced(ctx) if any(r.expert_symmetric for r in chosen) else None
    for rule in chosen:
        assert rule.check is not None
        if plan is None and (rule.needs_plan or rule.needs_family):
            skipped.append((rule.code, why))
            continue
        if plan is None and rule.family_part:  # ran in part: the report says which part not
            skipped.append((rule.code, f"{rule.family_part} not checked: {why}"))
        if rule.reads_scan and ckpt.header_only:  # judged the small tensors only: partial
            skipped.append((rule.code, HEADER_ONLY))
        try:
            findings.extend(_judge(rule, ctx, reduced))
        except Exception as exc:  # a rule bug must not hide the other rules' findings
            log.debug("rule %s crashed", rule.code, exc_info=True)
            crashed.append((rule.code, f"{type(exc).__name__}: {exc}"))
    # An architecture the engine does not serve is a QS105 error, and the check stays partial:
    # the rules that follow the load plan did not look at the tensors (exit 2 unless
    # --allow-partial, which gives the findings that ran).
    findings.sort(key=Finding.sort_key)
    summary = {
        "modules": len(quant.modules),
        "quantized_modules": quant.count_quantized(),
        "tensors": len(ckpt.tensors),
        "files": len(ckpt.files),
        **{s.label: sum(f.severity == s for f in findings) for s in Severity},
    }
    return Report(
        ckpt.source,
        tuple(findings),
        skipped=tuple(skipped),
        crashed=tuple(crashed),
        engine=release_label(spec),
        summary=summary,
        layout=_layout_label(layout, options.deployment),
        unmodelled=not_modelled,
    )


def _reduced(ctx: Context) -> Context | None:
    """``reduced_context(ctx)``; None (every rule on every module) should grouping fail."""
    try:
        return reduced_context(ctx)
    except Exception:  # a bug in the grouping must cost speed, never the report
        log.debug("grouping the experts failed", exc_info=True)
        return None


def _judge(rule: Rule, ctx: Context, reduced: Context | None) -> list[Finding]:
    """The rule's findings on ``ctx``. An expert-symmetric rule runs on ``reduced`` first:
    clean there is clean on ``ctx`` (its verdict on an expert is that of any alike one);
    anything else (a finding, a crash) is judged again on every module, so each finding
    names its own tensor."""
    assert rule.check is not None
    if reduced is not None and rule.expert_symmetric:
        try:
            if not any(True for _ in rule.check(reduced)):
                return []
        except Exception:  # judged again below, where a crash is reported as itself
            log.debug("rule %s crashed on the reduced map", rule.code, exc_info=True)
    return list(rule.check(ctx))


def _layout_label(layout: Layout, d: Deployment) -> str:
    """``TP=1 EP=1 (MoE TP=1)``, with the backend and platform when they are not the default."""
    out = layout.label
    if d.a2a_backend:
        out += f", {d.a2a_backend}"
    if d.platform is not None and d.platform != Platform.CUDA:
        out += f", {d.platform.value}"
    return out


def check(ckpt: Checkpoint, options: CheckOptions | None = None) -> Report:
    """Resolve every module's quantization and run the rules."""
    with gc_paused():
        options = options or CheckOptions()
        return run_rules(ckpt, resolve_quantization(ckpt, options.engine), options)
