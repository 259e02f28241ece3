"""The engine version serves none of the checkpoint's architectures.

## What it checks
Looks each class in `architectures` of `config.json` up in qscale's catalogue of the model
classes each vLLM and SGLang release registers. `qscale models --engine E` lists that
catalogue. The rule fires when the `--engine` version registers none of them.

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
import importlib
from collections.abc import Iterator, Sequence
from types import ModuleType
from typing import Protocol, cast

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

_CATALOGUE = "qscale.engines.catalogue"


class Served(Protocol):
    """A catalogue entry: one architecture an engine release serves."""

    @property
    def name(self) -> str: ...
    @property
    def status(self) -> str: ...  #: "planned" | "not-plannable"
    @property
    def why(self) -> str: ...  #: "" when planned; else why qscale cannot plan it
    @property
    def source(self) -> str: ...  #: the engine file and release it was read from
    @property
    def kind(self) -> str: ...  #: the registry group: "text", "multimodal", …


class Catalogue(Protocol):
    """The part of ``qscale.engines.catalogue`` qscale reads (also ``qscale models``)."""

    def architectures(self, spec: EngineSpec) -> Sequence[Served]: ...

    def lookup(self, spec: EngineSpec, arch: str) -> Served | None: ...


def catalogue() -> Catalogue | None:
    """The engine catalogue, or None in a qscale without one (nothing is then "not served").

    Imported by name so that this rule, ``qscale models`` and the docs generator work before
    and after ``qscale.engines.catalogue`` exists."""
    try:
        module: ModuleType = importlib.import_module(_CATALOGUE)
    except ModuleNotFoundError as exc:
        if exc.name != _CATALOGUE:
            raise
        return None
    return cast(Catalogue, module)


def not_served(spec: EngineSpec, archs: Sequence[str]) -> str | None:
    """The engine's refusal, in its own words, when ``spec`` serves none of ``archs``; None
    when it serves one, when ``archs`` is empty, or when no catalogue covers that engine
    version (qscale cannot tell)."""
    cat = catalogue()
    if cat is None or not archs:
        return None
    covers = getattr(cat, "served", None)  # whether the catalogue has data for ``spec``
    if covers is not None and not covers(spec):
        return None
    if any(cat.lookup(spec, a) is not None for a in archs):
        return None
    shown = repr(list(archs))
    what = f"architecture `{archs[0]}`" if len(archs) == 1 else f"any of {shown}"
    return (
        f"{spec.label} does not serve {what}:"
        f' "Model architectures {shown} are not supported for now"'
    )


def _closest(spec: EngineSpec, arch: str) -> list[str]:
    cat = catalogue()
    names = [a.name for a in cat.architectures(spec)] if cat is not None else []
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
            f"set `architectures` to a class {ctx.engine.label} serves{to}, or target an"
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
