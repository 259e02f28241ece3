"""`qscale rule CODE` / `qscale rule --all`: the rule documentation."""

from __future__ import annotations

import ast
import re
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from qscale.errors import UsageError
from qscale.findings import Severity

if TYPE_CHECKING:
    from qscale.rules._api import Rule

RULES_DIR = Path(__file__).resolve().parent.parent / "rules"


@dataclass(frozen=True)
class RuleDoc:
    """What `qscale rule` shows of a rule, read from its module's source: importing the rules
    would load every format parser, numpy and the engine catalogue (~0.6 s) to print a text."""

    code: str
    name: str
    severity: Severity
    doc: str
    check: bool | None  #: None: an input rule, raised by the reader

    @property
    def summary(self) -> str:
        return self.doc.strip().splitlines()[0]


def _rule_doc(path: Path) -> RuleDoc | None:
    """The rule declared as ``RULE = Rule(code=…, name=…, severity=Severity.X, doc=__doc__ or
    "", check=…)`` in ``path``, or None where the module is not written so."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    doc = ast.get_docstring(tree, clean=False)
    for node in tree.body:
        if not (isinstance(node, ast.Assign) and isinstance(node.value, ast.Call)
                and [getattr(t, "id", None) for t in node.targets] == ["RULE"]):
            continue
        kw = {k.arg: k.value for k in node.value.keywords}
        code, name, sev = kw.get("code"), kw.get("name"), kw.get("severity")
        if not (isinstance(code, ast.Constant) and isinstance(name, ast.Constant)
                and isinstance(sev, ast.Attribute) and sev.attr in Severity.__members__
                and doc is not None and not node.value.args):
            return None
        check = kw.get("check")
        has_check = None if check is None or (
            isinstance(check, ast.Constant) and check.value is None) else True
        return RuleDoc(str(code.value), str(name.value), Severity[sev.attr], doc, has_check)
    return None


def rule_docs() -> list[RuleDoc] | None:
    """Every rule, by code, from the sources; None where one cannot be read so (the caller
    then imports the rules)."""
    out = []
    for path in sorted(RULES_DIR.glob("qs[0-9][0-9][0-9]_*.py")):
        r = _rule_doc(path)
        if r is None:
            return None
        out.append(r)
    return sorted(out, key=lambda r: r.code)


def rule_codes() -> set[str]:
    """Every rule's code: the registry's where a check has imported it, else the sources'."""
    registry = sys.modules.get("qscale.rules")
    docs = rule_docs() if registry is None else None
    if docs is None:
        from qscale import rules

        return set(rules.BY_CODE)
    return {r.code for r in docs}


def _rule_file(code: str) -> RuleDoc | None:
    """The rule ``code`` names (a code or a name), read from the one module its file name
    gives (``qs204_ignore_entry_mismatch.py``: QS204, ignore-entry-mismatch), or None."""
    key, name = code.upper(), code.lower()
    if re.fullmatch(r"QS[0-9]{3}", key):
        pattern = f"qs{key[2:]}_*.py"
    elif re.fullmatch(r"[a-z0-9]+(-[a-z0-9]+)*", name):
        pattern = f"qs[0-9][0-9][0-9]_{name.replace('-', '_')}.py"
    else:
        return None
    for path in sorted(RULES_DIR.glob(pattern)):
        r = _rule_doc(path)
        if r is not None and (r.code == key or r.name == name):
            return r
    return None


def _find(code: str) -> RuleDoc | Rule:
    found = _rule_file(code)  # one module parsed, not all of them
    if found is not None:
        return found
    docs = rule_docs()
    for r in docs or ():
        if r.code == code.upper() or r.name == code.lower():
            return r
    from qscale import rules  # the registry words the errors (removed codes, no such rule)

    return rules.get(code)


def rule_doc(r: Rule | RuleDoc) -> str:
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
        listed: list[RuleDoc] | tuple[Rule, ...] | None = rule_docs()
        if listed is None:
            from qscale import rules

            listed = rules.ALL_RULES
        for r in listed:
            typer.echo(f"{r.code}  {r.severity.label:7}  {r.name:34} {r.summary}")
        return
    if code is None:
        raise UsageError("give a rule code, or --all")
    typer.echo(rule_doc(_find(code)), nl=False)
