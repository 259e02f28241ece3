"""The config declares an FP8 KV cache, but attention layers carry no usable k/v scales.

## What it checks
When the quantization config declares KV-cache quantization (compressed-tensors
`kv_cache_scheme`, ModelOpt `kv_cache_quant_algo`, Quark `kv_cache_group`), every
full-attention layer must carry a k and a v scale in a spelling vLLM's name remap
(`maybe_remap_kv_scale_name`) accepts: `self_attn.{k,v}_scale`, `self_attn.kv_scale`
(duplicated to both), ModelOpt `self_attn.{k,v}_proj.{k,v}_scale`,
`self_attn.qkv_proj.{k,v}_scale`, or compressed-tensors `self_attn.{k,v}_proj.output_scale`.
Layers without them, and scales that are all exactly 1.0, are reported.

## Why it matters
A missing scale is not an error to the engine: it logs "Using KV cache scaling factor 1.0 for
fp8_e4m3" and quantizes keys and values with unit scale, which clips or flushes them (one
measurement: −4.2 points on MATH-500). Exporters have shipped all-1.0 scales too. Linear-attention
(GDN) layers of hybrid models have no KV cache and are not checked.

## Example
`model.layers.3.self_attn`: no k/v scale for the declared FP8 KV cache (3 of 4 full-attention
layers lack them); the engine will use 1.0

## Fix
Calibrate the KV cache (or export the scales the calibration produced under an accepted name);
otherwise drop `kv_cache_scheme` and serve with a BF16 or dynamically scaled KV cache.
"""

import re
from collections.abc import Iterator, Mapping
from typing import Any

from qscale.rules._api import Applicability, Context, Finding, Fix, Location, Rule, Severity

#: per (k|v): the spellings under ``<layer>.self_attn`` vLLM remaps onto ``attn.{k,v}_scale``
SPELLINGS = {
    "k": (
        "k_scale",
        "kv_scale",
        "k_proj.k_scale",
        "k_proj.output_scale",
        "qkv_proj.k_scale",
        "attn.k_scale",
    ),
    "v": (
        "v_scale",
        "kv_scale",
        "v_proj.v_scale",
        "v_proj.output_scale",
        "qkv_proj.v_scale",
        "attn.v_scale",
    ),
}
ATTN = re.compile(r"^(.*\.self_attn)\.(q_proj|k_proj|v_proj|qkv_proj|o_proj)\.")


def declared(ctx: Context) -> str | None:
    """Where the config declares a quantized KV cache, if it does."""
    fmt = ctx.quant.format
    if fmt is not None and getattr(fmt, "kv_cache", None) is not None:
        return "kv_cache_scheme"
    # vLLM 0.33.0 reads hf_quant_config.json only when config.json has no
    # quantization_config (transformers_utils/config.py, ``get_config``)
    inline = ctx.checkpoint.config.quantization_config
    sources: list[Mapping[str, Any]] = [inline] if inline else [
        c.get("quantization", c) for c in ctx.checkpoint.extra_configs.values()]
    for src in sources:
        if isinstance(src.get("kv_cache_scheme"), dict):  # inline ModelOpt (vLLM: FP8)
            return "kv_cache_scheme"
        if src.get("kv_cache_quant_algo"):
            return "kv_cache_quant_algo"
        if src.get("kv_cache_group"):
            return "kv_cache_group"
    return None


def check(ctx: Context) -> Iterator[Finding]:
    """Report full-attention layers without k/v scales, and all-1.0 scales."""
    where = declared(ctx)
    if where is None:
        return
    tensors = ctx.checkpoint.tensors
    layers = sorted({m.group(1) for n in tensors if (m := ATTN.match(n))})
    lacking, found = [], []
    for layer in layers:
        names = {
            kv: next((f"{layer}.{s}" for s in spells if f"{layer}.{s}" in tensors), None)
            for kv, spells in SPELLINGS.items()
        }
        if None in names.values():
            lacking.append(layer)
        found += [n for n in names.values() if n is not None]
    for layer in lacking:
        first = next(n for n in tensors if n.startswith(layer + "."))
        yield RULE.finding(
            f"`{layer}`: no k/v scale for the KV-cache quantization `{where}` declares"
            f" ({len(lacking)} of {len(layers)} full-attention layers lack them); the engine"
            " will use 1.0",
            ctx.at(first),
            fix=FIX,
        )
    values = [ctx.checkpoint.value(n) for n in found]
    if found and all(v is not None and v.size and (v == 1.0).all() for v in values):
        yield RULE.finding(
            f"all {len(found)} KV-cache scales are exactly 1.0: exported without calibration",
            Location(file=ctx.file_of(found[0]), tensor=found[0]),
            fix=FIX,
        )


FIX = Fix(
    "calibrate the KV cache and export its scales, or drop the KV-cache scheme",
    Applicability.MANUAL,
)

RULE = Rule(
    code="QS701",
    name="kv-cache-scales-missing",
    severity=Severity.WARNING,
    doc=__doc__ or "",
    check=check,
    reads_values=True,
)
