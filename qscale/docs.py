"""Generate docs/rules/*.md from the rule registry: `python -m qscale.docs`."""

from __future__ import annotations

from pathlib import Path

from qscale import rules
from qscale.cli.rule import rule_doc


def render_rule_docs() -> dict[str, str]:
    """File name -> Markdown, one per rule, plus an index."""
    out = {f"{r.code}.md": rule_doc(r) for r in rules.ALL_RULES}
    lines = ["# qscale rules", "", "| code | name | severity | summary |", "|---|---|---|---|"]
    lines += [
        f"| [{r.code}]({r.code}.md) | {r.name} | {r.severity.label} | {r.summary} |"
        for r in rules.ALL_RULES
    ]
    out["README.md"] = "\n".join(lines) + "\n"
    return out


def main() -> None:
    """Write the docs next to the repository's docs/rules."""
    target = Path(__file__).resolve().parents[1] / "docs" / "rules"
    target.mkdir(parents=True, exist_ok=True)
    for stale in target.glob("*.md"):
        stale.unlink()
    for name, text in render_rule_docs().items():
        (target / name).write_text(text)


if __name__ == "__main__":
    main()
