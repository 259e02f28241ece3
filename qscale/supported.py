"""supported_layouts(): every TP × EP combination up to a bound, which ones the engine loads
and why not the others (``qscale layouts``).

vLLM runs expert parallel over TP × DP ranks, so a (TP, EP) cell is TP-only when EP is 1 and
TP with DP = EP / TP and expert parallel on when EP is a multiple of TP; other cells are not
vLLM layouts. SGLang splits the experts inside the TP group, so EP must divide TP.

The verdicts are `qscale check`'s: the rules that do not depend on the layout run once, and
their errors refuse every cell (``refused``); per cell, the partition constraints (QS5xx,
:func:`qscale.constraints.problems`) and the layout-conditional rules (QS601 shared-expert
fusion, QS801 engine-bug advisories) run for that layout.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from functools import partial

from qscale.checkpoint import Checkpoint
from qscale.constraints import Problem, problems
from qscale.engines import EngineSpec, parse_engine
from qscale.engines.loader import LoadPlan, plan_load
from qscale.errors import UsageError
from qscale.findings import Severity
from qscale.formats import QuantMap, resolve_quantization
from qscale.layout import Deployment, resolve
from qscale.rules._api import Context
from qscale.sharding import Shapes, read_shapes


@dataclass(frozen=True, slots=True)
class Cell:
    """One TP × EP combination and what the engine makes of it."""

    tp: int
    ep: int
    deployment: Deployment | None  #: None: the engine cannot run this combination
    layout: str = ""  #: what the engine builds, e.g. ``TP=2 EP=4 (DP=2, MoE TP=1, …)``
    errors: tuple[Problem, ...] = ()
    warnings: tuple[Problem, ...] = ()
    why_not: str = ""  #: why the engine cannot run it at all

    @property
    def loads(self) -> bool:
        """The engine runs this combination and refuses nothing."""
        return self.deployment is not None and not self.errors


@dataclass(frozen=True, slots=True)
class LayoutTable:
    """Every TP × EP combination up to a bound."""

    engine: str  #: the engine label, e.g. ``vllm==0.20.0``
    name: str  #: the engine, e.g. ``vllm``
    tps: tuple[int, ...]
    eps: tuple[int, ...]
    cells: tuple[Cell, ...]
    #: why the engine refuses this checkpoint in every layout (the load plan's refusals and
    #: load errors, QS402) or loads it wrongly in every layout (QS404): no cell loads then
    refused: tuple[str, ...] = ()

    def cell(self, tp: int, ep: int) -> Cell:
        """The cell of one combination."""
        return next(c for c in self.cells if (c.tp, c.ep) == (tp, ep))


def sizes_up_to(bound: int, count: int | None) -> tuple[int, ...]:
    """Powers of two up to ``bound``, and the divisors of ``count`` (heads, experts) below it."""
    pows = {1 << i for i in range(bound.bit_length()) if 1 << i <= bound}
    divs = {d for d in range(1, bound + 1) if count and count % d == 0}
    return tuple(sorted(pows | divs))


def supported_layouts(
    ckpt: Checkpoint,
    engine: str | EngineSpec | None = None,
    *,
    max_tp: int = 16,
    max_ep: int = 64,
    base: Deployment | None = None,
) -> LayoutTable:
    """Which TP × EP combinations the engine loads this checkpoint with, and why not the rest.

    ``base`` carries the options every combination shares (all-to-all backend, platform).
    """
    if max_tp < 1 or max_ep < 1:
        raise UsageError("--max-tp and --max-ep start at 1")
    spec = engine if isinstance(engine, EngineSpec) else parse_engine(engine)
    quant = resolve_quantization(ckpt, spec)
    plan = plan_load(ckpt, spec, quant)
    shapes = read_shapes(ckpt, quant, plan)
    n_exp = shapes.experts[0].experts if shapes.experts else None
    tps = sizes_up_to(max_tp, shapes.heads)
    eps = sizes_up_to(max_ep, n_exp) if n_exp else (1,)
    base = base or Deployment()
    per_layout = partial(_layout_findings, ckpt, quant, plan, spec)
    cells = [_cell(shapes, spec, base, tp, ep, per_layout) for tp in tps for ep in eps]
    everywhere = _everywhere(ckpt, quant, spec, base)
    return LayoutTable(spec.label, spec.engine, tps, eps, tuple(cells), everywhere)


#: rules whose verdict depends on the layout: run per cell, not in :func:`_everywhere`
LAYOUT_RULES = ("QS5", "QS601", "QS801")


def _everywhere(
    ckpt: Checkpoint, quant: QuantMap, spec: EngineSpec, base: Deployment
) -> tuple[str, ...]:
    """The errors `qscale check` gives whatever the layout (every rule but
    :data:`LAYOUT_RULES`), one line per cause: ``QS401 `…` slots after loading …``."""
    from qscale.runner import CheckOptions, run_rules  # the runner imports the rules

    options = CheckOptions(engine=_engine_arg(spec), ignore=LAYOUT_RULES, deployment=base)
    report = run_rules(ckpt, quant, options)
    out = []
    for g in report.groups:
        if g.first.severity >= Severity.ERROR:
            more = f" (×{g.count} like it)" if g.count > 1 else ""
            out.append(f"{g.first.code} {g.first.message}{more}")
    out += [f"{code} crashed: {err}" for code, err in report.crashed]
    return tuple(out)


def _engine_arg(spec: EngineSpec) -> str:
    return (
        spec.engine
        if spec.version is None
        else f"{spec.engine}=={'.'.join(map(str, spec.version))}"
    )


def _layout_findings(
    ckpt: Checkpoint, quant: QuantMap, plan: LoadPlan, spec: EngineSpec, d: Deployment
) -> list[Problem]:
    """QS601 and QS801, as `qscale check` runs them for the layout ``d``."""
    from qscale import rules  # the rules import this module's neighbours

    ctx = Context(ckpt, quant, plan, deployment=d, engine=spec)
    out = []
    for code in ("QS601", "QS801"):
        rule = rules.BY_CODE[code]
        assert rule.check is not None
        for f in rule.check(ctx):
            if f.severity >= Severity.WARNING:
                loc = f.location
                fix = f.fix.title if f.fix else ""
                out.append(Problem(f.code, f.severity, f.message, fix, loc.tensor, loc.param))
    return out


def _cell(
    shapes: Shapes,
    spec: EngineSpec,
    base: Deployment,
    tp: int,
    ep: int,
    per_layout: Callable[[Deployment], list[Problem]],
) -> Cell:
    if spec.engine == "vllm":
        if ep == 1:
            d = replace(base, tp=tp, dp=1, ep=None, enable_expert_parallel=False)
        elif ep % tp == 0:
            d = replace(base, tp=tp, dp=ep // tp, ep=None, enable_expert_parallel=True)
        else:
            return Cell(
                tp, ep, None, why_not=f"vLLM's EP size is TP × DP; {ep} is no multiple of TP={tp}"
            )
    elif tp % ep == 0:
        d = replace(base, tp=tp, dp=1, ep=ep if ep > 1 else None, enable_expert_parallel=False)
    else:
        return Cell(
            tp,
            ep,
            None,
            why_not=f"SGLang splits experts inside the TP group; EP={ep} does not divide TP={tp}",
        )
    try:
        lay = resolve(d, spec)
    except UsageError as exc:
        return Cell(tp, ep, None, why_not=exc.message)
    if lay.ep != ep:
        return Cell(
            tp,
            ep,
            None,
            why_not=f"with the {lay.backend.name} backend {spec.engine}"
            f" runs EP={lay.ep} at TP={tp}",
        )
    found = [*problems(shapes, lay, spec.version), *per_layout(d)]
    return Cell(
        tp,
        ep,
        d,
        lay.label,
        errors=tuple(p for p in found if p.severity == Severity.ERROR),
        warnings=tuple(p for p in found if p.severity == Severity.WARNING),
    )
