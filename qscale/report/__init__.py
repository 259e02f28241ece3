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


def render(report: Report, fmt: str, *, color: bool = False, width: int = 100) -> str:
    """Render a report in the named format."""
    if fmt == "console":
        return console.render(report, color=color, width=width)
    return RENDERERS[fmt](report)
