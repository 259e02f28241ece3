"""Versioned JSON output. Breaking changes bump SCHEMA_VERSION and get a CHANGELOG entry.

Version 2 added ``complete`` and ``skipped``: a report whose ``complete`` is false is partial
(rules were skipped or crashed), and its findings do not clear the checkpoint.

Version 3 groups findings: each entry of ``findings`` is one cause (qscale.findings.
group_findings) with ``count`` (how many findings it stands for) and ``examples`` (the
locations of up to five of them, the entry's own first); ``summary`` still counts single
findings. It adds ``layout`` and ``unmodelled_engine`` (why the check is partial when the
engine version is not one qscale has read), and a run that cannot finish (exit 2) prints
``{"schema_version": 3, "error": {"message": …, "hint": …}}`` instead of a report.
"""

from __future__ import annotations

import json
from typing import Any

from qscale._version import __version__
from qscale.baseline import fingerprint
from qscale.findings import Finding, FindingGroup, Report

SCHEMA_VERSION = 3


def finding_dict(f: Finding) -> dict[str, Any]:
    """One finding as JSON-ready data."""
    out: dict[str, Any] = {
        "code": f.code,
        "name": f.name,
        "severity": f.severity.label,
        "message": f.message,
        "location": f.location.as_dict(),
        "fingerprint": fingerprint(f),
    }
    if f.fix is not None:
        out["fix"] = {"title": f.fix.title, "applicability": f.fix.applicability.value}
    return out


def group_dict(g: FindingGroup) -> dict[str, Any]:
    """One group as JSON-ready data: its first finding, ``count`` and ``examples``."""
    return {
        **finding_dict(g.first),
        "count": g.count,
        "examples": [loc.as_dict() for loc in g.examples()],
    }


def error_dict(
    message: str, hint: str = "", code: str | None = None, source: str = ""
) -> dict[str, Any]:
    """The document of a run that could not finish (exit 2)."""
    err: dict[str, Any] = {"message": message}
    if code:
        err["code"] = code
    if hint:
        err["hint"] = hint
    return {
        "schema_version": SCHEMA_VERSION,
        "qscale_version": __version__,
        "source": source,
        "complete": False,
        "error": err,
    }


def report_dict(report: Report) -> dict[str, Any]:
    """The whole report as JSON-ready data."""
    return {
        "schema_version": SCHEMA_VERSION,
        "qscale_version": __version__,
        "source": report.source,
        "engine": report.engine,
        "layout": report.layout,
        "complete": report.complete,
        "unmodelled_engine": report.unmodelled or None,
        "findings": [group_dict(g) for g in report.groups],
        "skipped": [{"rule": c, "why": why} for c, why in report.skipped],
        "crashed": [{"code": c, "error": e} for c, e in report.crashed],
        "summary": dict(report.summary),
        "stale_baseline": [finding_dict(f) for f in report.stale],
    }


def render(report: Report) -> str:
    """Pretty-printed JSON with a trailing newline."""
    return json.dumps(report_dict(report), indent=2) + "\n"
