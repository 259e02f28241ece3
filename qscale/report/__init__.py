"""render(report, format) -> str; one module per output format."""

from __future__ import annotations

from qscale.findings import Report
from qscale.report import console, github, json_report, sarif

RENDERERS = {
    "console": console.render,
    "json": json_report.render,
    "sarif": sarif.render,
    "github": github.render,
}


def render(
    report: Report, fmt: str, *, color: bool = False, width: int = 100, allow_partial: bool = False
) -> str:
    """Render a report in the named format (``allow_partial`` only changes the console's
    closing line: every format says a check is partial)."""
    if fmt == "console":
        return console.render(report, color=color, width=width, allow_partial=allow_partial)
    return RENDERERS[fmt](report)
