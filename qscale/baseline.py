"""Accepted findings: stable fingerprints, baseline files, and suppression.

A baseline records the findings a team has accepted, keyed by a fingerprint that depends only
on what the finding is about (rule code, location, message with its numbers blanked), never on
where or when qscale ran. ``qscale check --baseline FILE`` then drops those findings from the
report and from the exit code, and lists entries that no longer match anything as stale.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from qscale import rules
from qscale._files import write_text_atomic
from qscale._version import __version__
from qscale.errors import BaselineError
from qscale.findings import Finding, Location, Report, Severity

BASELINE_VERSION = 1
#: The key of qscale's fingerprint in SARIF ``partialFingerprints`` and in baseline files.
FINGERPRINT_KEY = "qscaleFinding/v1"

# A number standing on its own: a scale value, a shape entry, a partition index, an engine
# version. Digits inside names (`layers.0.mlp`, `BF16`, `F8_E4M3`) are left alone.
_NUMBER = re.compile(r"(?<![\w.])[-+]?\d+(?:\.\d+)*(?:[eE][-+]?\d+)?(?!\w)")
_SPACE = re.compile(r"\s+")
_LOCATION_KEYS = frozenset(("file", "tensor", "param", "key"))


def message_key(message: str) -> str:
    """The message with every stand-alone number replaced by ``#`` and whitespace collapsed.

    Scale values and versions change when a checkpoint is re-quantized or the engine is
    upgraded; the defect they describe does not.
    """
    return _SPACE.sub(" ", _NUMBER.sub("#", message)).strip()


def fingerprint(finding: Finding) -> str:
    """A stable identity for a finding: the same defect gets the same value on every run.

    Built from the rule code, the tensor / engine param / config key the finding points at
    (the file only when it points at no tensor or param, so re-sharding keeps fingerprints),
    and :func:`message_key`. Nothing from the run itself (paths, times, versions) enters it.
    """
    loc = finding.location
    file = loc.file if loc.tensor is None and loc.param is None else None
    parts = (finding.code, file, loc.tensor, loc.param, loc.key, message_key(finding.message))
    ident = json.dumps(parts, ensure_ascii=True, separators=(",", ":"))
    return hashlib.sha256(ident.encode("ascii")).hexdigest()[:32]


@dataclass(frozen=True, slots=True)
class Baseline:
    """Accepted findings, keyed by :func:`fingerprint`."""

    entries: Mapping[str, Finding]


def build_baseline(report: Report) -> Baseline:
    """Every finding of ``report``, accepted (without its fix: a baseline records what was
    accepted, not how it could be remedied)."""
    return Baseline({fingerprint(f): replace(f, fix=None) for f in report.findings})


def render_baseline(baseline: Baseline) -> str:
    """The baseline file's text: versioned JSON, one entry per fingerprint."""
    data = {
        "qscale_baseline": BASELINE_VERSION,
        "qscale_version": __version__,
        "fingerprint": FINGERPRINT_KEY,
        "findings": {fp: _entry(f) for fp, f in baseline.entries.items()},
    }
    return json.dumps(data, indent=2) + "\n"


def write_baseline(report: Report, path: Path) -> int:
    """Write ``report``'s findings to ``path`` as a baseline (atomically); return their count."""
    baseline = build_baseline(report)
    try:
        write_text_atomic(path, render_baseline(baseline))
    except OSError as exc:
        raise BaselineError(
            f"{path}: cannot write the baseline: {exc.strerror or exc}",
            hint="pass a path in an existing, writable folder",
        ) from exc
    return len(baseline.entries)


def read_baseline(path: Path) -> Baseline:
    """Read and validate a baseline file.

    Raises:
        BaselineError: the file is missing, is not JSON, has another version, or an entry is
            malformed or does not carry its own fingerprint.
    """
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        why = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise BaselineError(f"{path}: cannot read the baseline: {why}") from exc
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise BaselineError(
            f"{path}: not valid JSON ({exc.msg} at line {exc.lineno}, column {exc.colno})"
        ) from exc
    if not isinstance(data, dict) or "qscale_baseline" not in data:
        raise BaselineError(f"{path}: not a qscale baseline (no `qscale_baseline` version)")
    if data["qscale_baseline"] != BASELINE_VERSION:
        raise BaselineError(
            f"{path}: baseline version {data['qscale_baseline']!r} is not supported"
            f" (this qscale reads version {BASELINE_VERSION})"
        )
    found = data.get("findings")
    if not isinstance(found, dict):
        raise BaselineError(f"{path}: `findings` must be an object keyed by fingerprint")
    return Baseline({fp: _parse_entry(path, fp, raw) for fp, raw in found.items()})


def apply_baseline(
    report: Report, baseline: Baseline, *, checked: Collection[str] | None = None
) -> Report:
    """Drop the findings ``baseline`` accepts; record its entries that matched nothing.

    Args:
        report: the full report.
        baseline: accepted findings.
        checked: codes of the rules this run evaluated (see :func:`checked_codes`); an entry of
            another rule is neither matched nor stale. None: every rule counts as evaluated.

    Returns:
        The report without the accepted findings, ``summary["suppressed"]`` set to how many
        were dropped, and ``stale`` holding the unmatched entries.
    """
    seen = {fingerprint(f) for f in report.findings}
    kept = tuple(f for f in report.findings if fingerprint(f) not in baseline.entries)
    stale = tuple(
        f
        for fp, f in baseline.entries.items()
        if fp not in seen and (checked is None or f.code in checked)
    )
    summary = dict(report.summary)
    summary.update({s.label: sum(f.severity == s for f in kept) for s in Severity})
    summary["suppressed"] = len(report.findings) - len(kept)
    return replace(report, findings=kept, stale=stale, summary=summary)


def checked_codes(report: Report, select: Sequence[str], ignore: Sequence[str]) -> frozenset[str]:
    """Rules a run with these ``--select``/``--ignore`` evaluated: the selected rules that were
    neither skipped nor crashed, plus those the reader and runner always apply (input rules
    and the engine-version note, which have no check function)."""
    not_run = {code for code, _ in (*report.skipped, *report.crashed)}
    ran = {r.code for r in rules.select(select, ignore)} - not_run
    return frozenset(ran | {r.code for r in rules.ALL_RULES if r.check is None})


def _entry(f: Finding) -> dict[str, Any]:
    return {
        "code": f.code,
        "name": f.name,
        "severity": f.severity.label,
        "message": f.message,
        "location": f.location.as_dict(),
    }


def _parse_entry(path: Path, fp: str, raw: object) -> Finding:
    def bad(why: str) -> BaselineError:
        return BaselineError(f"{path}: entry {fp!r}: {why}")

    if not isinstance(raw, dict):
        raise bad("must be an object")
    for key in ("code", "message", "severity"):
        if not isinstance(raw.get(key), str):
            raise bad(f"`{key}` must be a string")
    if raw["severity"] not in {s.label for s in Severity}:
        raise bad(f"unknown severity {raw['severity']!r}")
    loc = raw.get("location", {})
    if not isinstance(loc, dict) or not set(loc) <= _LOCATION_KEYS:
        raise bad("`location` must be an object with file/tensor/param/key")
    if not all(isinstance(v, str) for v in loc.values()):
        raise bad("`location` values must be strings")
    name = raw.get("name", "")
    finding = Finding(
        raw["code"],
        Severity.parse(raw["severity"]),
        raw["message"],
        Location(**loc),
        name=name if isinstance(name, str) else "",
    )
    if fingerprint(finding) != fp:
        raise bad("the key is not the fingerprint of its code, location and message")
    return finding
