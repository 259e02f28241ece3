"""GitHub Actions workflow commands: one ``::error``/``::warning``/``::notice`` line per group of
findings with one cause (qscale.findings.group_findings), with its count and a few examples.

    ::error file=ckpt/model.safetensors,title=QS401 unfilled-scale-slot::`…` slots after …

GitHub turns each line of a step's output into an annotation on the run (and on the file, when
the checkpoint is in the repository). Values are escaped as the Actions runner expects: ``%``,
CR and LF everywhere, and also ``:`` and ``,`` in properties.
"""

from __future__ import annotations

from pathlib import PurePath

from qscale.baseline import fingerprint
from qscale.findings import Finding, FindingGroup, Report, Severity
from qscale.report.console import count_text, not_run_text, scope_text
from qscale.report.sarif import checkpoint_folder

_COMMAND = {Severity.ERROR: "error", Severity.WARNING: "warning", Severity.INFO: "notice"}


def escape_data(text: str) -> str:
    """Escape a command's message."""
    return text.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")


def escape_property(text: str) -> str:
    """Escape a command property's value (``file=``, ``title=``)."""
    return escape_data(text).replace(":", "%3A").replace(",", "%2C")


def command(name: str, message: str, **props: str | None) -> str:
    """One workflow command line, e.g. ``::error file=a,title=b::message``."""
    given = ",".join(f"{k}={escape_property(v)}" for k, v in props.items() if v)
    return f"::{name}{' ' + given if given else ''}::{escape_data(message)}"


def error_text(message: str, hint: str = "") -> str:
    """The ``::error`` line of a run that could not finish (exit 2)."""
    return (
        command(
            "error",
            "\n".join(x for x in (message, hint and f"hint: {hint}") if x),
            title="qscale: check did not finish",
        )
        + "\n"
    )


def render(report: Report) -> str:
    """One annotation per group of findings, stale baseline entry and crashed rule, one for a
    partial check, then a summary line."""
    folder = checkpoint_folder(report.source)
    groups = report.groups
    lines = [
        command(
            _COMMAND[g.first.severity],
            _message(g),
            file=_file(folder, g.first),
            title=f"{g.first.code} {g.first.name}".strip(),
        )
        for g in groups
    ]
    lines += [
        command(
            "notice",
            f"baseline entry {fingerprint(f)} matches no finding: {f.message}",
            file=_file(folder, f),
            title=f"stale baseline entry {f.code} {f.name}".strip(),
        )
        for f in report.stale
    ]
    lines += [command("error", err, title=f"{code} crashed") for code, err in report.crashed]
    if not report.complete:
        lines.append(command("error", not_run_text(report), title="qscale: partial check"))
    counts = ", ".join(f"{report.count(s)} {s.label}" for s in reversed(Severity))
    tail = ""
    if "suppressed" in report.summary:
        tail = f"; {report.summary['suppressed']} suppressed, {len(report.stale)} stale (baseline)"
    if not report.complete:
        tail += "; partial check"
    if len(groups) < len(report.findings):
        counts += f" in {len(groups)} groups"
    checked = f" ({scope_text(report)})" if scope_text(report) else ""
    lines.append(f"qscale: {report.source}{checked}: {counts}{tail}")
    return "\n".join(lines) + "\n"


def _file(folder: str, f: Finding) -> str | None:
    if f.location.file is None:
        return None
    return (PurePath(folder) / f.location.file).as_posix()


def _message(g: FindingGroup | Finding) -> str:
    f = g.first if isinstance(g, FindingGroup) else g
    loc = f.location
    extra = [
        f"{what}: {value}"
        for what, value in (("tensor", loc.tensor), ("param", loc.param), ("key", loc.key))
        if value and value not in f.message
    ]
    if isinstance(g, FindingGroup) and g.count > 1:
        extra.append(count_text(g))
    if f.fix is not None:
        extra.append(f"fix ({f.fix.applicability.value}): {f.fix.title}")
    return "\n".join((f.message, *extra))
