"""Severity, Location, Fix, Finding, Report: the outcome model every command renders."""

from __future__ import annotations

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

    @property
    def complete(self) -> bool:
        """Whether every selected rule ran to the end: none skipped, none crashed. A report
        that is not complete is *partial*: its findings say nothing of the rules that did not
        run, so ``qscale check`` exits 2 on it unless ``--allow-partial`` is given."""
        return not self.skipped and not self.crashed

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
