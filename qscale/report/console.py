"""Human-readable report for the terminal (rich), rendered to a string."""

from __future__ import annotations

import io
import re

from rich.console import Console
from rich.text import Text

from qscale.findings import FindingGroup, Location, Report, Severity

STYLE = {Severity.ERROR: "bold red", Severity.WARNING: "yellow", Severity.INFO: "cyan"}


def not_run_text(report: Report) -> str:
    """``14 rules did not run: QS205, QS401, … (why)``, reasons joined by ``; ``; for an engine
    version qscale has not read, why (QS010) first."""
    groups = report.not_run()
    n = sum(map(len, groups.values()))
    parts = "; ".join(f"{', '.join(codes)} ({why})" for why, codes in groups.items())
    ran = f"{n} rule{'s' if n != 1 else ''} did not run: {parts}" if n else ""
    if report.unmodelled:
        return f"QS010 {report.unmodelled}" + (f"; {ran}" if ran else "")
    return ran


def where(loc: Location) -> str:
    """The most precise name of a location: tensor, param, config key, file."""
    return loc.tensor or loc.param or loc.key or loc.file or ""


def scope_text(report: Report) -> str:
    """``vllm==0.33.0, TP=1 EP=1 (MoE TP=1)``: what the check was run against."""
    return ", ".join(x for x in (report.engine, report.layout) if x)


def count_text(group: FindingGroup) -> str:
    """`` ×94078 findings of this cause, e.g. `a`, `b`, `c`, …`` for a group of more than one
    finding, else "". The examples are the members' locations, or, where those do not tell
    them apart (QS204's entries all sit in one config key), the first name each message quotes."""
    if group.count == 1:
        return ""
    shown = group.members[:3]
    names = [where(f.location) for f in shown]
    if len(set(names)) < len(names):
        names = [m.group(1) if (m := _FIRST_NAME.search(f.message)) else "" for f in shown]
    names = [f"`{n}`" for n in names if n]
    more = ", …" if group.count > len(names) else ""
    eg = f", e.g. {', '.join(names)}{more}" if names else ""
    return f"×{group.count} findings of this cause{eg}"


_FIRST_NAME = re.compile(r"`([^`\s]+)`")


def _print_group(con: Console, group: FindingGroup) -> None:
    f = group.first
    line = Text()
    line.append(f"{f.code} ", style="bold")
    line.append(f"{f.severity.label}", style=STYLE[f.severity])
    line.append(f" [{f.name}] " if f.name else " ")
    line.append(f.message)
    con.print(line)
    if group.count > 1:
        con.print(f"    {count_text(group)}", style="dim")
    elif f.location.file and where(f.location) != f.location.file:
        con.print(f"    at {f.location.file}", style="dim")
    if f.fix is not None:
        con.print(f"    fix ({f.fix.applicability.value}): {f.fix.title}", style="green")


def summary_line(report: Report, n_groups: int) -> str:
    """``SOURCE (vllm==0.33.0, TP=1 EP=1 (MoE TP=1)): 3 error, … in 2 groups — …``."""
    s = report.summary
    counts = ", ".join(f"{report.count(sev)} {sev.label}" for sev in reversed(Severity))
    scope = ""
    if "modules" in s:
        scope = (
            f" — {s.get('files', 0)} files, {s.get('tensors', 0)} tensors,"
            f" {s.get('quantized_modules', 0)}/{s['modules']} modules quantized"
        )
    head = "no findings" if not report.findings else counts
    if n_groups < len(report.findings):
        head += f" in {n_groups} group{'s' if n_groups != 1 else ''}"
    if not report.complete:  # never a clean-looking line when rules did not run
        head += " from the rules that ran"
    if "suppressed" in s:  # a --baseline was applied
        head += f" ({s['suppressed']} suppressed by the baseline)"
    checked = f" ({scope_text(report)})" if scope_text(report) else ""
    return f"{report.source}{checked}: {head}{scope}"


def render(
    report: Report, *, color: bool = False, width: int = 100, allow_partial: bool = False
) -> str:
    """One block per cause (a group of findings, :func:`qscale.findings.group_findings`),
    then a summary line naming the engine and layout checked, then, for a partial check,
    what did not run and the exit code that follows (``allow_partial``: ``--allow-partial``
    was given)."""
    buf = io.StringIO()
    con = Console(
        file=buf,
        width=width,
        force_terminal=color,
        no_color=not color,
        highlight=False,
        soft_wrap=True,
    )
    groups = report.groups
    for group in groups:  # one block per cause, however many modules share it
        _print_group(con, group)
    for code, err in report.crashed:
        con.print(f"{code} crashed: {err}", style="bold magenta")
    con.print(Text(summary_line(report, len(groups)), style="bold"))
    for f in report.stale:
        con.print(
            Text(
                f"info: stale baseline entry {f.code} {where(f.location)}: matches no finding",
                "cyan",
            )
        )
    if not report.complete:
        if report.crashed or not allow_partial:
            verdict = "exit 2"
        else:
            verdict = "exit code from the findings alone (--allow-partial)"
        con.print(Text(f"partial check: {not_run_text(report)}, {verdict}", "bold magenta"))
    return buf.getvalue()
