"""Severity, Location, Fix, Finding, Report: the outcome model every command renders."""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from enum import Enum, IntEnum


class Severity(IntEnum):
    """How bad a finding is. Ordered, so ``--fail-on`` is a comparison.

    ERROR: the engine refuses the checkpoint, or loads wrong weights silently.
    WARNING: it loads, but accuracy or speed degrades.
    INFO: worth knowing.
    """

    INFO = 1
    WARNING = 2
    ERROR = 3

    @property
    def label(self) -> str:
        """Lower-case wire value."""
        return self.name.lower()

    @classmethod
    def parse(cls, text: str) -> Severity:
        """From the wire value (case-insensitive)."""
        return cls[text.upper()]


class Applicability(str, Enum):
    """Whether ``qscale fix`` applies a fix by default (ruff's model)."""

    SAFE = "safe"
    UNSAFE = "unsafe"
    MANUAL = "manual"


@dataclass(frozen=True, slots=True)
class Location:
    """Where a finding points; every field is optional."""

    file: str | None = None  #: safetensors or config file, relative to the checkpoint
    tensor: str | None = None  #: checkpoint tensor name
    param: str | None = None  #: engine parameter name
    key: str | None = None  #: JSON pointer into the config file, e.g. /quantization_config/ignore

    def as_dict(self) -> dict[str, str]:
        """Only the fields that are set."""
        return {k: v for k in ("file", "tensor", "param", "key") if (v := getattr(self, k))}


@dataclass(frozen=True, slots=True)
class Fix:
    """A remedy: imperative title, applicability."""

    title: str
    applicability: Applicability


@dataclass(frozen=True, slots=True)
class Finding:
    """One problem a rule found."""

    code: str
    severity: Severity
    message: str
    location: Location = field(default_factory=Location)
    fix: Fix | None = None
    name: str = ""  #: the rule's kebab-case name

    def sort_key(self) -> tuple[str, str, str, str]:
        """Findings sort by (file, tensor, param, code)."""
        loc = self.location
        return (loc.file or "", loc.tensor or "", loc.param or "", self.code)

    @property
    def cause(self) -> tuple[str | None, ...]:
        """What makes two findings one cause (see :func:`group_findings`): the rule, the
        severity, the message and the fix with the names in them abstracted (every
        back-quoted dotted name, e.g. a tensor, module or ignore entry, and the index in a
        config key), and the config key. Shapes, dtypes, values and versions stay, so
        findings that differ in what was observed or expected are different causes; the
        file and the tensor / param they point at do not enter."""
        key = _KEY_INDEX.sub("/{N}", self.location.key) if self.location.key else None
        return (
            self.code,
            self.severity.label,
            nameless(self.message),
            key,
            nameless(self.fix.title) if self.fix else None,
        )


# A back-quoted name with a dot in it and no space: `model.layers.3.mlp.gate_proj.weight`,
# `re:.*visual.*`; not `F8_E4M3`, `[128, 128]` or `weight_block_size`.
_QUOTED_NAME = re.compile(r"`[^`\s]*\.[^`\s]*`")
_KEY_INDEX = re.compile(r"/\d+(?=/|$)")


def nameless(text: str) -> str:
    """The text with every back-quoted dotted name replaced by ```{name}```."""
    return _QUOTED_NAME.sub("`{name}`", text)


#: how many member locations a group keeps as examples in every format
EXAMPLES = 5


@dataclass(frozen=True, slots=True)
class FindingGroup:
    """Findings of one cause (:attr:`Finding.cause`): the first stands for the group, the
    rest differ only in the names they point at."""

    members: tuple[Finding, ...]

    @property
    def first(self) -> Finding:
        """The finding that stands for the group (the first in report order)."""
        return self.members[0]

    @property
    def count(self) -> int:
        return len(self.members)

    def examples(self, n: int = EXAMPLES) -> tuple[Location, ...]:
        """The locations of the first ``n`` members (the first included)."""
        return tuple(f.location for f in self.members[:n])


def group_findings(findings: Iterable[Finding]) -> tuple[FindingGroup, ...]:
    """Findings with the same cause, as one group each, in the order of their first member.

    One defect repeated on every layer and expert (a wrong ``weight_block_size`` on a 397B
    checkpoint gives ~94k QS302 findings) becomes a handful of groups; every format renders a
    group once, with its count and a few examples. Baselines still match single findings.
    """
    by_cause: dict[tuple[str | None, ...], list[Finding]] = {}
    for f in findings:
        by_cause.setdefault(f.cause, []).append(f)
    return tuple(FindingGroup(tuple(members)) for members in by_cause.values())


@dataclass(frozen=True, slots=True)
class Report:
    """The outcome of one check: findings, rules skipped with why, rules that crashed."""

    source: str
    findings: tuple[Finding, ...]
    skipped: tuple[tuple[str, str], ...] = ()  #: (code, reason)
    crashed: tuple[tuple[str, str], ...] = ()  #: (code, error)
    engine: str | None = None
    summary: dict[str, int] = field(default_factory=dict)
    stale: tuple[Finding, ...] = ()  #: baseline entries that matched no finding (qscale.baseline)
    layout: str | None = None  #: the parallel layout checked, e.g. ``TP=2 EP=4 (DP=2, …)``
    #: why the engine version asked for is not one qscale has read ("" when it is); the
    #: check then models it by the nearest release and is partial (QS010)
    unmodelled: str = ""

    @property
    def complete(self) -> bool:
        """Whether every selected rule ran to the end: none skipped, none crashed. A report
        that is not complete is *partial*: its findings say nothing of the rules that did not
        run, so ``qscale check`` exits 2 on it unless ``--allow-partial`` is given."""
        return not self.skipped and not self.crashed and not self.unmodelled

    @property
    def groups(self) -> tuple[FindingGroup, ...]:
        """The findings grouped by cause (:func:`group_findings`)."""
        return group_findings(self.findings)

    def not_run(self) -> dict[str, tuple[str, ...]]:
        """Why rules did not run -> the codes of those rules, in report order (a crashed
        rule's reason is ``crashed: <error>``)."""
        out: dict[str, list[str]] = {}
        for code, why in self.skipped:
            out.setdefault(why, []).append(code)
        for code, err in self.crashed:
            out.setdefault(f"crashed: {err}", []).append(code)
        return {why: tuple(codes) for why, codes in out.items()}

    def count(self, severity: Severity) -> int:
        """Findings of exactly this severity."""
        return sum(f.severity == severity for f in self.findings)

    def fails(self, threshold: Severity) -> bool:
        """Whether any finding is at or above ``threshold``."""
        return any(f.severity >= threshold for f in self.findings)
