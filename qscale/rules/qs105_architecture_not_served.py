"""The engine version serves none of the checkpoint's architectures.

## What it checks
Looks each class in `architectures` of `config.json` up in qscale's engine catalogue: the
model classes each catalogued engine release registers (`docs/models.md` lists the releases
and classes; `qscale models --engine E` prints one). The rule fires when the `--engine`
release registers none of them. It reports nothing for an engine version the catalogue does
not cover, such as SGLang or a vLLM release older than the first one read.

## Why it matters
Both engines pick the model class from `architectures` in their model registry, trying each
entry in turn. If none is registered, the engine stops at start-up, before any weight is read.
vLLM (`vllm/model_executor/models/registry.py`, `_raise_for_unsupported`) and SGLang
(`python/sglang/srt/models/registry.py`) say the same thing: "Model architectures ['X'] are
not supported for now. Supported architectures: …". The checkpoint cannot load, so this is a
finding, not a partial check: the rules that follow the load plan have nothing to check.
qscale cannot plan such a class either. A class the engine serves but qscale has no family
for is QS103 instead.

The catalogue lists the classes each release registers. It does not model vLLM's fallback
to the Transformers backend for classes that only `transformers` or the checkpoint's own code
(`auto_map`, with `--trust-remote-code`) defines.

## Example
``vllm==0.33.0 does not serve architecture `Qwen3_5MoeRenamedForCausalLM`: "Model
architectures ['Qwen3_5MoeRenamedForCausalLM'] are not supported for now"``

## Fix
Manual. Set `architectures` to a class that engine version serves; the fix names the closest
ones. Or target an engine version that serves the class (`qscale models --engine E`).
"""

from __future__ import annotations

import difflib
from collections.abc import Iterator, Sequence

from qscale.engines import catalogue
from qscale.rules._api import (
    Applicability,
    Context,
    EngineSpec,
    Finding,
    Fix,
    Location,
    Rule,
    Severity,
)


def release_label(spec: EngineSpec) -> str:
    """``vllm==0.33.0``: the spec's label, or for a bare ``--engine vllm`` the catalogued
    release it resolves to (the spec's own label names a profile range there)."""
    data = catalogue.load(spec.engine) if spec.version is None else None
    release = data.release_for(None) if data is not None else None
    return f"{spec.engine}=={release}" if release else spec.label


def not_served(spec: EngineSpec, archs: Sequence[str]) -> str | None:
    """The engine's refusal, in its own words, when ``spec`` serves none of ``archs``; None
    when it serves one, when ``archs`` is empty, or when the catalogue does not cover that
    engine version (qscale cannot tell)."""
    if not archs or not catalogue.served(spec):
        return None
    if any(catalogue.lookup(spec, a) is not None for a in archs):
        return None
    shown = repr(list(archs))
    what = f"architecture `{archs[0]}`" if len(archs) == 1 else f"any of {shown}"
    return (
        f"{release_label(spec)} does not serve {what}:"
        f' "Model architectures {shown} are not supported for now"'
    )


def _closest(spec: EngineSpec, arch: str) -> list[str]:
    names = [a.name for a in catalogue.architectures(spec)]
    return difflib.get_close_matches(arch, names, n=3, cutoff=0.6)


def check(ctx: Context) -> Iterator[Finding]:
    """One finding when the engine version serves none of the checkpoint's architectures."""
    archs = ctx.checkpoint.config.architectures
    if ctx.engine is None or (why := not_served(ctx.engine, archs)) is None:
        return
    near = _closest(ctx.engine, archs[0])
    to = f" (closest: {', '.join(f'`{n}`' for n in near)})" if near else ""
    yield RULE.finding(
        why,
        Location(file="config.json", key="/architectures"),
        fix=Fix(
            f"set `architectures` to a class {release_label(ctx.engine)} serves{to}, or target an"
            f" engine version that serves `{archs[0]}` (`qscale models --engine E`)",
            Applicability.MANUAL,
        ),
    )


RULE = Rule(
    code="QS105",
    name="architecture-not-served",
    severity=Severity.ERROR,
    doc=__doc__ or "",
    check=check,
    default_fix=Fix(
        "set `architectures` to a class the engine version serves", Applicability.MANUAL
    ),
)
