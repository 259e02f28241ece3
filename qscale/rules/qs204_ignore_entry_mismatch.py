"""An ignore/exclude entry does not match the modules the engine sees.

## What it checks
Every entry of the quantization config's skip list — compressed-tensors `ignore`, Quark
`exclude`, ModelOpt `exclude_modules`, `quant_method: fp8` `ignored_layers` /
`modules_to_not_convert` — against the checkpoint's modules, in both namings that matter:

- the checkpoint's own names, which the quantizer matched when it exported;
- the engine's names. vLLM renames exact entries with the model's name mapper (so
  Hugging Face names are right), but matches `re:` entries unchanged against **its own**
  module names — for the Qwen3.5 VL class `language_model.model.layers.…`, for the text-only
  class `model.layers.…`, never `model.language_model.layers.…`.

A regex that skips modules under the checkpoint's names but not under the engine's is an
error: the engine builds those modules quantized while they are stored unquantized. An entry
that matches nothing in either naming is a warning, with the closest module names.

## Why it matters
Ignore lists that do not match are the most frequent reason a quantized checkpoint fails to
load or loads garbage: prefix drift after a fine-tune or a VLM wrapper, fused names
(`qkv_proj`) where the checkpoint stores `q_proj`/`k_proj`/`v_proj`, regexes anchored on the
Hugging Face prefix.

## Example
`re:^model\\.language_model\\.layers\\.\\d+\\.mlp\\.shared_expert\\..*` skips 6 modules under the
checkpoint's names but none under vLLM's (`language_model.model.layers.0.mlp.shared_expert.…`)

## Fix
Write the entry so it matches both namings (`re:.*mlp\\.shared_expert\\..*`), or list the
modules by their exact Hugging Face names (`qscale fix` rewrites the list).
"""

import difflib
from collections.abc import Callable, Collection, Iterator, Sequence

from qscale.engines.catalogue import family_or_none
from qscale.families import Family
from qscale.formats._api import equal_or_regex, wildcard
from qscale.formats.compressed_tensors import CompressedTensorsConfig
from qscale.formats.fp8 import Fp8Config
from qscale.formats.modelopt import ModelOptConfig
from qscale.formats.quark import QuarkConfig
from qscale.loader import engine_name
from qscale.rules._api import Applicability, Context, Finding, Fix, Location, Rule, Severity

Matcher = Callable[[str, str], bool]


def skip_list(ctx: Context) -> tuple[str, Sequence[str], Matcher] | None:
    """(config key, entries, matcher) of the format's skip list."""
    fmt = ctx.quant.format
    if isinstance(fmt, CompressedTensorsConfig):
        return "ignore", fmt.ignore, equal_or_regex
    if isinstance(fmt, QuarkConfig):
        return "exclude", fmt.exclude, equal_or_regex
    if isinstance(fmt, ModelOptConfig):
        return "exclude_modules", fmt.exclude, wildcard
    if isinstance(fmt, Fp8Config):
        return "ignored_layers", sorted(fmt.ignored), str.__eq__
    return None


def check(ctx: Context) -> Iterator[Finding]:
    """Report skip-list entries that match nothing, or match differently in the engine."""
    found = skip_list(ctx)
    if found is None:
        return
    key, entries, match = found
    fam = ctx.plan.family if ctx.plan else family_or_none(ctx.checkpoint)
    names = list(ctx.quant.modules)  # every module: an exclude may name a conv or a norm
    known = set(names)
    fmt = ctx.quant.format
    at = Location(file=fmt.config_key if fmt else None, key=f"/quantization_config/{key}")
    for entry in entries:
        if match is not wildcard and not entry.startswith("re:"):
            hits = [entry] if entry in known else []  # exact names: a set lookup
        else:
            hits = [n for n in names if match(n, entry)]
        if entry.startswith("re:") and fam is not None and hits:
            engine_hits = [n for n in hits if match(engine_name(fam, n), entry)]
            lost = [n for n in hits if n not in engine_hits]
            if lost:
                yield RULE.finding(
                    f"`{entry}` skips {len(hits)} module(s) under the checkpoint's names but"
                    f" {len(engine_hits)} of them under vLLM's, which `re:` entries are matched"
                    f" against: `{engine_name(fam, lost[0])}` (checkpoint `{lost[0]}`) is built"
                    " quantized",
                    at,
                    fix=FIX,
                )
            continue
        if hits or entry.startswith("re:"):
            continue
        shards = _shards(fam, entry, known) if fam else []
        close = shards or _drifted(entry, names) or difflib.get_close_matches(entry, names, n=2)
        label = "the engine fuses it from" if shards else "closest:"
        hint = f"; {label} {', '.join(f'`{c}`' for c in close)}" if close else ""
        yield RULE.finding(
            f"`{entry}` matches no module of the checkpoint{hint}",
            at,
            fix=FIX,
            severity=Severity.WARNING,
        )


def _drifted(entry: str, names: Sequence[str]) -> list[str]:
    """Modules whose name ends like the entry once its leading prefix is dropped (prefix
    drift: ``model.layers.0.mlp.gate`` for ``model.language_model.layers.0.mlp.gate``)."""
    parts = entry.split(".")
    for cut in range(1, min(3, len(parts) - 1)):
        tail = "." + ".".join(parts[cut:])
        found = [n for n in names if n.endswith(tail)]
        if found:
            return found[:2]
    return []


def _shards(fam: Family, entry: str, names: Collection[str]) -> list[str]:
    """The checkpoint modules a fused engine name (``…qkv_proj``) is built from."""
    out = []
    for st in fam.stacked:
        if entry.endswith(st.param):
            shard = entry[: -len(st.param)] + st.weight
            if shard in names:
                out.append(shard)
    return out


FIX = Fix(
    "rewrite the entry into names both the quantizer and the engine match (qscale fix)",
    Applicability.SAFE,
)

RULE = Rule(
    code="QS204",
    name="ignore-entry-mismatch",
    severity=Severity.ERROR,
    doc=__doc__ or "",
    check=check,
    fixable=Applicability.SAFE,
)
