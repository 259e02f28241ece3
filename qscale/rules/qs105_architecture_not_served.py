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
not supported for now. Supported architectures: …". The checkpoint cannot load, so this is an error
finding; the rules that follow the load plan did not look at the tensors, so the check is
partial as well (exit 2, or 1 with `--allow-partial`).
qscale cannot plan such a class either. A class the engine serves but qscale has no family
for is QS103 instead.

A class the registry does not name but transformers does (or one the checkpoint's own code
defines through `auto_map`) is not refused: vLLM loads it with its Transformers backend
(`ModelRegistry._try_resolve_transformers`), which qscale does not plan, so the check is
partial (QS103) instead. Classes vLLM dropped or moved to a plugin get its own sentence for
them (`_PREVIOUSLY_SUPPORTED_MODELS`, `_OOT_SUPPORTED_MODELS`).

## Example
``vllm==0.33.0 does not serve architecture `Qwen3_5MoeRenamedForCausalLM`: "Model
architectures ['Qwen3_5MoeRenamedForCausalLM'] are not supported for now"``

## Fix
Manual. Set `architectures` to a class that engine version serves; the fix names the closest
ones. Or target an engine version that serves the class (`qscale models --engine E`).
"""

from __future__ import annotations

import difflib
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

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

release_label = catalogue.release_label


def not_served(spec: EngineSpec, archs: Sequence[str], raw: Mapping[str, Any]) -> str | None:
    """The finding's message when ``spec`` serves none of ``archs`` (:func:`catalogue.refusal`:
    its registry, then its Transformers backend); None when it serves one."""
    words = catalogue.refusal(spec, archs, raw)
    if words is None:
        return None
    shown = repr(list(archs))
    what = f"architecture `{archs[0]}`" if len(archs) == 1 else f"any of {shown}"
    return f'{release_label(spec)} does not serve {what}: "{words}"'


def _closest(spec: EngineSpec, arch: str) -> list[str]:
    names = [a.name for a in catalogue.architectures(spec)]
    return difflib.get_close_matches(arch, names, n=3, cutoff=0.6)


def check(ctx: Context) -> Iterator[Finding]:
    """One finding when the engine version serves none of the checkpoint's architectures."""
    archs = ctx.checkpoint.config.architectures
    if ctx.engine is None or (why := not_served(ctx.engine, archs, ctx.checkpoint.config.raw)
                              ) is None:
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
