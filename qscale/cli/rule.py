"""`qscale rule CODE` / `qscale rule --all`: the rule documentation."""

from __future__ import annotations

from typing import Annotated

import typer

from qscale import rules
from qscale.errors import UsageError
from qscale.rules._api import Rule


def rule_doc(r: Rule) -> str:
    """A rule's full documentation as Markdown."""
    body = r.doc.strip().split("\n", 1)
    rest = body[1].strip() if len(body) > 1 else ""
    return (
        f"# {r.code} {r.name}\n\n{body[0]}\n\nSeverity: {r.severity.label}"
        f"{' (input: qscale stops with exit 2)' if r.check is None else ''}\n\n{rest}\n"
    )


def rule_cmd(
    code: Annotated[str | None, typer.Argument(help="Rule code or name, e.g. QS201.")] = None,
    all_: Annotated[bool, typer.Option("--all", help="List every rule.")] = False,
) -> None:
    """Explain a rule, or list them all."""
    if all_:
        for r in rules.ALL_RULES:
            typer.echo(f"{r.code}  {r.severity.label:7}  {r.name:34} {r.summary}")
        return
    if code is None:
        raise UsageError("give a rule code, or --all")
    typer.echo(rule_doc(rules.get(code)), nl=False)
