"""Versioned JSON output. Breaking changes bump SCHEMA_VERSION and get a CHANGELOG entry.

Version 2 added ``complete`` and ``skipped``: a report whose ``complete`` is false is partial
(rules were skipped or crashed), and its findings do not clear the checkpoint.
"""

from __future__ import annotations

import json
from typing import Any

from qscale._version import __version__
from qscale.baseline import fingerprint
from qscale.findings import Finding, Report

SCHEMA_VERSION = 2


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


def report_dict(report: Report) -> dict[str, Any]:
    """The whole report as JSON-ready data."""
    return {
        "schema_version": SCHEMA_VERSION,
        "qscale_version": __version__,
        "source": report.source,
        "engine": report.engine,
        "complete": report.complete,
        "findings": [finding_dict(f) for f in report.findings],
        "skipped": [{"rule": c, "why": why} for c, why in report.skipped],
        "crashed": [{"code": c, "error": e} for c, e in report.crashed],
        "summary": dict(report.summary),
        "stale_baseline": [finding_dict(f) for f in report.stale],
    }


def render(report: Report) -> str:
    """Pretty-printed JSON with a trailing newline."""
    return json.dumps(report_dict(report), indent=2) + "\n"
