"""Rule, Context and helpers: the only module rule files import."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import TypeVar, cast

from qscale.checkpoint import Checkpoint
from qscale.engines import EngineSpec
from qscale.engines.loader import LoadPlan, MergedParam
from qscale.findings import Applicability, Finding, Fix, Location, Severity
from qscale.formats import ModuleQuant, QuantMap
from qscale.layout import Deployment

__all__ = [
    "Applicability",
    "Context",
    "EngineSpec",
    "Finding",
    "Fix",
    "Location",
    "ModuleQuant",
    "Rule",
    "Severity",
    "fmt_shape",
]

REQUIRED_HEADINGS = ("## What it checks", "## Why it matters", "## Example", "## Fix")

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Context:
    """What a rule may look at."""

    checkpoint: Checkpoint
    quant: QuantMap
    plan: LoadPlan | None = None  #: None when the architecture has no family
    #: the layout and MoE options (--tp, --ep, --a2a-backend, …); default: one GPU
    deployment: Deployment = field(default_factory=Deployment)
    #: the engine version checked against (also when there is no plan); None: not given
    engine: EngineSpec | None = None
    #: facts several rules derive from the same inputs, computed once per check (`shared`)
    _facts: dict[Callable[[Context], object], object] = field(
        default_factory=dict, init=False, repr=False, compare=False
    )

    def shared(self, compute: Callable[[Context], T]) -> T:
        """``compute(self)``, computed when a rule first asks and reused by the others.

        ``compute`` must be a module-level function of the context alone: its result is
        keyed by the function and lives as long as this context (one check).
        """
        if compute not in self._facts:
            self._facts[compute] = compute(self)
        return cast(T, self._facts[compute])

    def share(self, compute: Callable[[Context], T], value: T) -> None:
        """Give ``shared(compute)`` a value computed elsewhere (one the runner already has)."""
        self._facts[compute] = value

    def file_of(self, tensor: str) -> str | None:
        """The file a tensor is stored in."""
        t = self.checkpoint.tensors.get(tensor)
        return t.file if t else None

    def at(self, tensor: str) -> Location:
        """Location of a checkpoint tensor."""
        return Location(file=self.file_of(tensor), tensor=tensor)

    def at_param(self, param: MergedParam) -> Location:
        """Location of an engine parameter, at the first checkpoint tensor feeding it."""
        src = param.sources[0].source
        return Location(file=self.file_of(src), tensor=src, param=param.name)


Check = Callable[[Context], Iterator[Finding]]


@dataclass(frozen=True, slots=True)
class Rule:
    """A rule: code, kebab-case name naming the defect, severity, docs, and its check.

    Input rules (``QS0xx``) have no check: the reader raises them as errors, since qscale
    cannot judge a checkpoint whose files it cannot trust. They are listed for their docs.
    """

    code: str
    name: str
    severity: Severity
    doc: str
    check: Check | None = None
    reads_values: bool = False
    needs_plan: bool = False  #: skipped (with a reason) when there is no load plan
    #: its verdict depends on how the engine builds the modules (which it quantizes, under
    #: which names, which it skips as draft layers): skipped (with the reason) where qscale
    #: has no family for the architecture on the engine, rather than judged on assumed facts
    needs_family: bool = False
    #: the part of the check that needs the family, where the rest does not: without a
    #: family the rule runs that rest and the report lists the part as not checked
    family_part: str | None = None
    #: judges the deep scan of scale values; partial (skipped) when the read was header-only
    reads_scan: bool = False
    #: its verdict on a routed expert's module (``….experts.{e}.{proj}``) depends on what
    #: that module holds alone (resolution, scheme, logical shape, kind, the names, dtypes
    #: and shapes of its tensors), never on the expert's index, on the other experts, or on
    #: tensor values; counts come from ``rules._experts.expert_layers``. The runner judges
    #: a layer whose experts are alike by its first expert, and runs the rule on every
    #: module again when it reports anything there (qscale/rules/_experts.py)
    expert_symmetric: bool = False
    fixable: Applicability | None = None
    tags: tuple[str, ...] = field(default=())
    #: the remedy a finding carries when the check gives none of its own
    default_fix: Fix | None = None

    @property
    def summary(self) -> str:
        """First line of the docs."""
        return self.doc.strip().splitlines()[0]

    def finding(
        self,
        message: str,
        location: Location,
        *,
        fix: Fix | None = None,
        severity: Severity | None = None,
    ) -> Finding:
        """A finding of this rule."""
        return Finding(
            self.code,
            severity or self.severity,
            message,
            location,
            fix or self.default_fix,
            self.name,
        )


def fmt_shape(shape: tuple[int, ...]) -> str:
    """``(256, 1)``-style shape text, ``()`` for scalars."""
    return "(" + ", ".join(map(str, shape)) + ("," if len(shape) == 1 else "") + ")"
