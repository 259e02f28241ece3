"""Generate docs/rules/*.md from the rule registry and docs/models.md from the engine
catalogue: `python -m qscale.docs`."""

from __future__ import annotations

from pathlib import Path

from qscale import rules
from qscale.cli.models import catalogued_releases, models_dict, served_architectures
from qscale.cli.rule import rule_doc
from qscale.engines import PROFILES, parse_engine
from qscale.rules._api import Rule


def render_rule_docs() -> dict[str, str]:
    """File name -> Markdown, one per rule, plus an index."""
    out = {f"{r.code}.md": rule_doc(r) for r in rules.ALL_RULES}
    lines = [
        "# qscale rules",
        "",
        "*Without a family*: what the rule does where qscale has no family for the"
        " architecture on the engine version (QS103, QS105: no load plan). Rules that follow"
        " the load plan, or whose verdict depends on how the engine builds the modules, do not"
        " run; some run the part that does not; the check is then partial (exit 2). Those"
        " that run judge the stored tensors against the config as it resolves on the"
        " checkpoint's own names (what the quantizer wrote): headers, config validity, and"
        " the dtypes, shapes and values of the tensors a scheme declares.",
        "",
        "| code | name | severity | without a family | summary |",
        "|---|---|---|---|---|",
    ]
    lines += [
        f"| [{r.code}]({r.code}.md) | {r.name} | {r.severity.label} | {_without_family(r)}"
        f" | {r.summary} |"
        for r in rules.ALL_RULES
    ]
    out["README.md"] = "\n".join(lines) + "\n"
    return out


def _without_family(rule: Rule) -> str:
    """What a rule does without a load plan: ``runs``, ``not run``, or ``runs; not: …``."""
    if rule.check is None:
        return "input (reader)"
    if rule.needs_plan or rule.needs_family:
        return "not run"
    if rule.family_part:
        return f"runs, but not: {_cell(rule.family_part)}"
    return "runs"


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


def render_methods_doc() -> str:
    """docs/methods.md: every ``quant_method`` qscale parses (with the spellings it maps onto
    it) and the first paragraph of its parser's docstring; then the methods vLLM 0.33 or
    SGLang know that qscale stops at with QS102."""
    import inspect

    from qscale import formats

    lines = [
        "# Quantization methods",
        "",
        "Generated from `qscale/formats` by `python -m qscale.docs`. For a modelled method"
        " `qscale check` resolves each module's scheme, checks its tensors' presence, dtype and"
        " shape (QS201-QS302), the engine's refusals and the parallel layouts (QS4xx, QS5xx).",
        "",
        "| quant_method | also accepted | what qscale reads |",
        "|---|---|---|",
    ]
    for method, parser in sorted(formats.FORMATS.items()):
        aliases = sorted(a for a, m in formats.ALIASES.items() if m == method)
        module = inspect.getmodule(parser.function())
        doc = (module.__doc__ or "").strip().split("\n\n")[0] if module else ""
        also = ", ".join(f"`{a}`" for a in aliases)
        lines.append(f"| `{method}` | {also} | {_cell(doc.replace('``', '`'))} |")
    known = set(formats.FORMATS) | set(formats.ALIASES)
    for title, names in (
        ("known to vLLM 0.33", formats.VLLM_METHODS),
        ("known to SGLang only", formats.SGLANG_ONLY_METHODS),
    ):
        rest = sorted(set(names) - known)
        lines += ["", f"Not modelled, {title} ([QS102](rules/QS102.md), exit 2): "
                  + ", ".join(f"`{n}`" for n in rest) + "."]
    return "\n".join(lines + _registry_table()) + "\n"


def _qscale_status(name: str) -> str:
    """What qscale does with one registry name, read from the parsers it registers."""
    from qscale import formats
    from qscale.formats import auto_round, fp_quant, moe_wna16, runtime_only, torchao

    if name in formats.ALIASES:
        return f"modelled, as `{formats.ALIASES[name]}`"
    entry = formats.FORMATS.get(name)
    parser = entry.function() if entry is not None else None
    if parser in (runtime_only.parse_runtime_only, moe_wna16.parse_moe_wna16):
        return "refused ([QS101](rules/QS101.md)): the engine refuses it in a checkpoint"
    if parser is torchao.parse:
        return (f"modelled on vLLM 0.18.0-0.33.x for {torchao.MODELLED}; other configs"
                " (Int4 preshuffled / plain_int32 packing, AWQ over other bases, other"
                " granularities),"
                " routed experts (FusedMoE) and other releases: config and metadata checked,"
                " the load not ([QS102](rules/QS102.md))")
    if parser is fp_quant.parse:
        return ("modelled on vLLM 0.18.0-0.33.0 tensor by tensor (MXFP4 / NVFP4, the"
                " merged layers' one global scale, TP); SGLang refuses it"
                " ([QS101](rules/QS101.md))")
    if parser is auto_round.parse_inc:
        return "modelled, as `auto-round` (vLLM 0.33 only; QS102 elsewhere)"
    if parser is not None:
        return "modelled"
    return f"[QS102](rules/QS102.md): {formats.registry.BY_NAME[name].why_not}"


def _registry_table() -> list[str]:
    """Every name of vLLM 0.33's registry: its config class, whether checkpoints carry it,
    who writes it, and what qscale does with it."""
    from qscale.formats import registry

    lines = [
        "",
        "## vLLM 0.33's quantization registry",
        "",
        "Every name of `QUANTIZATION_METHODS` in vLLM 0.33.0"
        " (`vllm/model_executor/layers/quantization/__init__.py`), plus `auto-round`, which"
        " `INCConfig` takes over; from `qscale/formats/registry.py`. A runtime method quantizes"
        " an unquantized checkpoint while it loads; a serve-time method is picked with"
        " `--quantization` over another format's checkpoint.",
        "",
        "| quant_method | vLLM 0.33 config | in checkpoints | written by | qscale |",
        "|---|---|---|---|---|",
    ]
    lines += [f"| `{m.name}` | `{m.config}` (`vllm/{m.source}`) | {m.use.value} |"
              f" {_cell(m.written_by)} | {_cell(_qscale_status(m.name))} |"
              for m in sorted(registry.VLLM_0_33, key=lambda m: m.name)]
    return lines


def main() -> None:
    """Write the docs next to the repository's docs/rules (and docs/models.md)."""
    docs = Path(__file__).resolve().parents[1] / "docs"
    target = docs / "rules"
    target.mkdir(parents=True, exist_ok=True)
    for stale in target.glob("*.md"):
        stale.unlink()
    for name, text in render_rule_docs().items():
        (target / name).write_text(text)
    (docs / "methods.md").write_text(render_methods_doc())
    models = render_models_doc()
    if models is not None:
        (docs / "models.md").write_text(models)
    else:  # no catalogue: no page (rather than a stale one)
        (docs / "models.md").unlink(missing_ok=True)


if __name__ == "__main__":
    main()
