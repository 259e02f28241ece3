"""A module the quantization config quantizes is stored unquantized.

## What it checks
Finds modules whose resolved scheme is quantized while the checkpoint holds a plain
BF16/F16/F32 `weight` and no quantization tensor for them — typically a module the quantizer
skipped (a shared expert, `linear_attn`) without adding it to the config's ignore/exclude
list. MTP draft layers are QS207's. An LM head the engine builds unquantized whatever the
config says (a `ParallelLMHead` under `quant_method: fp8`, `quark`, a compressed-tensors
`Linear` class target, or a method the release does not apply to heads) is not reported: BF16
is what it loads.

Whether a module is built quantized is the engine's decision as much as the config's (a
vision tower or an MTP layer the engine builds without the quantization config, a head it
never quantizes): where qscale has no family for the architecture on the engine version
(QS103), this rule does not run and the check is partial.

## Why it matters
The engine builds the module quantized from the config and then meets a float weight:
vLLM fails with a shape or dtype error, or (ModelOpt NVFP4) with "weight_scale … was never
loaded (still NaN)"; where shapes happen to agree, raw float bytes are read as FP8 codes.

## Example
`model.layers.0.mlp.shared_expert.gate_proj` is stored as BF16 but resolves to MXFP4
(`global_quant_config`)

## Fix
Add the module to the ignore/exclude list (what the quantizer meant), or quantize it.
"""

from collections.abc import Iterator

from qscale.rules._api import Applicability, Context, Finding, Fix, Rule, Severity
from qscale.rules._structure import head_built_unquantized, loaded_by_main_model, structure


def check(ctx: Context) -> Iterator[Finding]:
    """Report quantized-by-config modules that hold only a float weight."""
    for mq in structure(ctx).stored_unquantized:
        if not loaded_by_main_model(ctx, mq.module.name):
            continue  # MTP layers load only with speculative decoding: QS207's
        if head_built_unquantized(ctx, mq):
            continue  # a BF16 head is what the engine builds (Qwen3-32B-FP8, DeepSeek-R1)
        assert mq.scheme is not None
        w = mq.module.tensors["weight"]
        yield RULE.finding(
            f"`{mq.module.name}` is stored as {w.dtype} but resolves to {mq.scheme.label}"
            f" ({mq.resolution.reason})",
            ctx.at(w.name),
            fix=FIX,
        )


FIX = Fix(
    "add the module, with the other shards of its fused layer, to the ignore/exclude list"
    " (qscale fix)",
    Applicability.SAFE,
)

RULE = Rule(
    code="QS202",
    name="module-stored-unquantized",
    severity=Severity.ERROR,
    doc=__doc__ or "",
    check=check,
    expert_symmetric=True,
    fixable=Applicability.SAFE,
    needs_family=True,
)
