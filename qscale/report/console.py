"""Human-readable report for the terminal (rich), rendered to a string."""

from __future__ import annotations

import io

from rich.console import Console
from rich.text import Text

from qscale.findings import Report, Severity

STYLE = {Severity.ERROR: "bold red", Severity.WARNING: "yellow", Severity.INFO: "cyan"}


def not_run_text(report: Report) -> str:
    """``14 rules did not run: QS205, QS401, … (why)``, reasons joined by ``; ``."""
    groups = report.not_run()
    n = sum(map(len, groups.values()))
    parts = "; ".join(f"{', '.join(codes)} ({why})" for why, codes in groups.items())
    return f"{n} rule{'s' if n != 1 else ''} did not run: {parts}"


def render(
    report: Report, *, color: bool = False, width: int = 100, allow_partial: bool = False
) -> str:
    """One block per finding, then a summary line, then, for a partial check, what did not
    run and the exit code that follows (``allow_partial``: ``--allow-partial`` was given)."""
    buf = io.StringIO()
    con = Console(
        file=buf,
        width=width,
        force_terminal=color,
        no_color=not color,
        highlight=False,
        soft_wrap=True,
    )
    for f in report.findings:
        where = f.location.tensor or f.location.param or f.location.key or ""
        line = Text()
        line.append(f"{f.code} ", style="bold")
        line.append(f"{f.severity.label}", style=STYLE[f.severity])
        line.append(f" [{f.name}] " if f.name else " ")
        line.append(f.message)
        con.print(line)
        if f.location.file and where:
            con.print(f"    at {f.location.file}", style="dim")
        if f.fix is not None:
            con.print(f"    fix ({f.fix.applicability.value}): {f.fix.title}", style="green")
    for code, err in report.crashed:
        con.print(f"{code} crashed: {err}", style="bold magenta")
    s = report.summary
    counts = ", ".join(f"{report.count(sev)} {sev.label}" for sev in reversed(Severity))
    scope = ""
    if "modules" in s:
        scope = (
            f" — {s.get('files', 0)} files, {s.get('tensors', 0)} tensors,"
            f" {s.get('quantized_modules', 0)}/{s['modules']} modules quantized"
        )
    head = "no findings" if not report.findings else counts
    if not report.complete:  # never a clean-looking line when rules did not run
        head += " from the rules that ran"
    if "suppressed" in s:  # a --baseline was applied
        head += f" ({s['suppressed']} suppressed by the baseline)"
    con.print(Text(f"{report.source}: {head}{scope}", style="bold"))
    for f in report.stale:
        where = f.location.tensor or f.location.param or f.location.key or f.location.file or ""
        con.print(Text(f"info: stale baseline entry {f.code} {where}: matches no finding", "cyan"))
    if not report.complete:
        if report.crashed or not allow_partial:
            verdict = "exit 2"
        else:
            verdict = "exit code from the findings alone (--allow-partial)"
        con.print(Text(f"partial check: {not_run_text(report)}, {verdict}", "bold magenta"))
    return buf.getvalue()
