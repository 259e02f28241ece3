"""Generate docs/rules/*.md from the rule registry and docs/models.md from the engine
catalogue: `python -m qscale.docs`."""

from __future__ import annotations

from pathlib import Path

from qscale import rules
from qscale.cli.models import catalogued_releases, models_dict, served_architectures
from qscale.cli.rule import rule_doc
from qscale.engines import PROFILES, parse_engine


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


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def render_models_doc() -> str | None:
    """docs/models.md: per engine release the catalogue holds, newest first, every
    architecture it serves and whether qscale plans it; None without a catalogue."""
    lines = [
        "# Architectures each engine release serves",
        "",
        "Generated from qscale's engine catalogue by `python -m qscale.docs`;"
        " `qscale models --engine E` prints the same table for one release.",
        "",
        "* **planned**: qscale simulates how the engine loads the architecture, so every rule"
        " of `qscale check` runs.",
        "* **not-plannable**: the engine serves it, but qscale cannot plan its load (the why"
        " column says why); `qscale check` is then partial and exits 2 unless"
        " `--allow-partial` is given ([QS103](rules/QS103.md)).",
        "* An architecture the release does not list is not served:"
        " [QS105](rules/QS105.md).",
    ]
    sections = 0
    for engine in dict.fromkeys(p.engine for p in PROFILES):
        for release in reversed(catalogued_releases(engine)):
            spec = parse_engine(f"{engine}=={release}")
            archs = served_architectures(spec)
            data = models_dict(spec, archs)
            counts = ", ".join(f"{n} {s}" for s, n in data["summary"].items())
            n = f"{len(archs)} architecture{'s' if len(archs) != 1 else ''}"
            lines += ["", f"## {data['engine']}", "", f"{n}: {counts}."]
            lines += ["", "| architecture | kind | status | why |", "|---|---|---|---|"]
            lines += [
                f"| `{a.name}` | {a.kind} | {a.status} | {_cell(a.why)} |" for a in archs
            ]
            sections += 1
    return "\n".join(lines) + "\n" if sections else None


def main() -> None:
    """Write the docs next to the repository's docs/rules (and docs/models.md)."""
    docs = Path(__file__).resolve().parents[1] / "docs"
    target = docs / "rules"
    target.mkdir(parents=True, exist_ok=True)
    for stale in target.glob("*.md"):
        stale.unlink()
    for name, text in render_rule_docs().items():
        (target / name).write_text(text)
    models = render_models_doc()
    if models is not None:
        (docs / "models.md").write_text(models)
    else:  # no catalogue: no page (rather than a stale one)
        (docs / "models.md").unlink(missing_ok=True)


if __name__ == "__main__":
    main()
