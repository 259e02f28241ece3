"""render(report, format) -> str; one module per output format, imported when it renders."""

from __future__ import annotations

import importlib

from qscale.findings import Report

#: format -> the module under qscale.report whose ``render(report)`` writes it; a check
#: imports its own format's alone (the JSON, SARIF and GitHub renderers bring the baseline
#: fingerprints, hashlib and the rule registry's SARIF metadata with them)
RENDERERS = {
    "console": "console",
    "json": "json_report",
    "sarif": "sarif",
    "github": "github",
}


def render(
    report: Report, fmt: str, *, color: bool = False, width: int = 100, allow_partial: bool = False
) -> str:
    """Render a report in the named format (``allow_partial`` only changes the console's
    closing line: every format says a check is partial)."""
    module = importlib.import_module(f"qscale.report.{RENDERERS[fmt]}")
    if fmt == "console":
        return str(module.render(report, color=color, width=width, allow_partial=allow_partial))
    return str(module.render(report))
