"""supported_layouts(): every TP × EP combination up to a bound, which ones the engine loads
and why not the others (``qscale layouts``).

vLLM runs expert parallel over TP × DP ranks, so a (TP, EP) cell is TP-only when EP is 1 and
TP with DP = EP / TP and expert parallel on when EP is a multiple of TP; other cells are not
vLLM layouts. SGLang splits the experts inside the TP group, so EP must divide TP.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from qscale.checkpoint import Checkpoint
from qscale.constraints import Problem, problems
from qscale.engines import EngineSpec, parse_engine
from qscale.errors import UsageError
from qscale.findings import Severity
from qscale.formats import resolve_quantization
from qscale.layout import Deployment, resolve
from qscale.loader import LoadPlan, plan_load
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
    cells = [
        _cell(shapes, spec, base or Deployment(), tp, ep) for tp in tps for ep in eps
    ]
    return LayoutTable(spec.label, spec.engine, tps, eps, tuple(cells), _everywhere(plan))


def _everywhere(plan: LoadPlan) -> tuple[str, ...]:
    """What fails whatever the layout: refusals, parameter load errors, skipped weights."""
    out = [r.reason for r in plan.refusals]
    out += [f"`{p.name}`: {e}" for p in plan.params.values() for e in p.errors]
    if plan.dropped:
        out.append(
            f"the loader skips {len(plan.dropped)} checkpoint tensor(s) such as"
            f" `{plan.dropped[0]}` without loading them (QS404)"
        )
    return tuple(out)


def _cell(shapes: Shapes, spec: EngineSpec, base: Deployment, tp: int, ep: int) -> Cell:
    if spec.engine == "vllm":
        if ep == 1:
            d = replace(base, tp=tp, dp=1, ep=None, enable_expert_parallel=False)
        elif ep % tp == 0:
            d = replace(base, tp=tp, dp=ep // tp, ep=None, enable_expert_parallel=True)
        else:
            return Cell(tp, ep, None, why_not=f"vLLM's EP size is TP × DP; {ep} is no"
                        f" multiple of TP={tp}")
    elif tp % ep == 0:
        d = replace(base, tp=tp, dp=1, ep=ep if ep > 1 else None, enable_expert_parallel=False)
    else:
        return Cell(tp, ep, None, why_not=f"SGLang splits experts inside the TP group; EP={ep}"
                    f" does not divide TP={tp}")
    try:
        lay = resolve(d, spec)
    except UsageError as exc:
        return Cell(tp, ep, None, why_not=exc.message)
    if lay.ep != ep:
        return Cell(tp, ep, None, why_not=f"with the {lay.backend.name} backend {spec.engine}"
                    f" runs EP={lay.ep} at TP={tp}")
    found = problems(shapes, lay, spec.version)
    return Cell(
        tp, ep, d, lay.label,
        errors=tuple(p for p in found if p.severity == Severity.ERROR),
        warnings=tuple(p for p in found if p.severity == Severity.WARNING),
    )
