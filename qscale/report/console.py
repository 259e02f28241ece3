"""Human-readable report for the terminal, rendered to a string.

The report is a list of lines of styled spans. In colour (a terminal) rich renders them; as
plain text (a pipe, a file, ``--output``) they are joined here, as rich would write them
without colour, so that a check in CI does not import rich (~17 ms of its start-up). Every
span is text, never markup, so a name with ``[…]`` or ``:…:`` in it prints as it is.
"""

from __future__ import annotations

import io
import re
from typing import TYPE_CHECKING

from qscale.findings import FindingGroup, Location, Report, Severity

if TYPE_CHECKING:
    from rich.console import Console

#: one line of output: (text, style) spans; style "" is none
Line = list[tuple[str, str]]
#: what rich's ``Text`` drops from any text it holds (``rich.control.strip_control_codes``):
#: BEL, BS, VT, FF, CR
_CONTROL = dict.fromkeys((7, 8, 11, 12, 13))

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


def _group_lines(group: FindingGroup) -> list[Line]:
    f = group.first
    out: list[Line] = [[
        (f"{f.code} ", "bold"),
        (f.severity.label, STYLE[f.severity]),
        (f" [{f.name}] " if f.name else " ", ""),
        (f.message, ""),
    ]]
    if group.count > 1:
        out.append([(f"    {count_text(group)}", "dim")])
    elif f.location.file and where(f.location) != f.location.file:
        out.append([(f"    at {f.location.file}", "dim")])
    if f.fix is not None:
        out.append([(f"    fix ({f.fix.applicability.value}): {f.fix.title}", "green")])
    return out


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


def report_lines(report: Report, *, allow_partial: bool = False) -> list[Line]:
    """The console report as lines of styled spans (:func:`render` writes them)."""
    lines: list[Line] = []
    groups = report.groups
    for group in groups:  # one block per cause, however many modules share it
        lines += _group_lines(group)
    lines += [[(f"{code} crashed: {err}", "bold magenta")] for code, err in report.crashed]
    lines.append([(summary_line(report, len(groups)), "bold")])
    lines += [[(f"info: stale baseline entry {f.code} {where(f.location)}: matches no finding",
                "cyan")] for f in report.stale]
    if not report.complete:
        if report.crashed or not allow_partial:
            verdict = "exit 2"
        else:
            verdict = "exit code from the findings alone (--allow-partial)"
        lines.append([(f"partial check: {not_run_text(report)}, {verdict}", "bold magenta")])
    return lines


def render(
    report: Report, *, color: bool = False, width: int = 100, allow_partial: bool = False
) -> str:
    """One block per cause (a group of findings, :func:`qscale.findings.group_findings`),
    then a summary line naming the engine and layout checked, then, for a partial check,
    what did not run and the exit code that follows (``allow_partial``: ``--allow-partial``
    was given)."""
    lines = report_lines(report, allow_partial=allow_partial)
    if color or any("\t" in text for line in lines for text, _ in line):
        return _rich(lines, color=color, width=width)  # rich expands tabs by cell width
    return plain(lines)


def plain(lines: list[Line]) -> str:
    """The lines as rich writes them without colour and without wrapping, for text with no
    tab: each line's spans joined, control codes dropped, then a newline."""
    return "".join("".join(t for t, _ in line).translate(_CONTROL) + "\n" for line in lines)


def _rich(lines: list[Line], *, color: bool, width: int) -> str:
    """The lines rendered by rich (styles in colour; tabs expanded as rich does)."""
    from rich.console import Console
    from rich.text import Text

    buf = io.StringIO()
    con: Console = Console(
        file=buf,
        width=width,
        force_terminal=color,
        no_color=not color,
        highlight=False,
        soft_wrap=True,
    )
    for line in lines:
        text = Text()
        for t, style in line:
            text.append(t, style=style or None)
        con.print(text)
    return buf.getvalue()
