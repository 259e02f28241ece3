"""MTP / draft layers are stored in one precision but the config builds them in another.

## What it checks
Modules under the family's draft prefixes (Qwen3.5 / Qwen3-Next `mtp.`), which the main model
skips and the MTP draft model loads with the **same** quantization config: a module stored in
BF16 that the config quantizes (it is missing from `ignore`/`exclude`), or a module stored
quantized that the config leaves unquantized. An MTP head (DeepSeek's `shared_head.head`) is
judged as the engine builds it, a `ParallelLMHead`: unquantized under `quant_method: fp8`.
The draft prefixes are the family's: without a family for the architecture on the engine
version (QS103) the rule does not run and the check is partial.

## Why it matters
Without speculative decoding nothing happens. With `--speculative-config '{"method": "mtp"}'`
the draft model is built from the config, and the load fails on the missing scale tensors, or
loads FP8 codes as BF16 and accepts almost no draft tokens — a throughput regression that looks
like a speculative-decoding problem. Quantizers often skip MTP layers (they are not part of the
`ForCausalLM` forward pass they calibrate) but forget to add them to the ignore list.

## Example
`mtp.layers.0.mlp.experts.0.gate_proj` is stored as BF16 but resolves to FP8 per-tensor, static
act (config_groups.group_0 (target `Linear`)); the MTP draft model would build it quantized

## Fix
Add the MTP layers to the ignore list (`re:^mtp\\..*`), or quantize them like the main model.
"""

from collections.abc import Iterator

from qscale.rules._api import Applicability, Context, Finding, Fix, Rule, Severity
from qscale.rules._structure import (
    FLOAT_WEIGHTS,
    QUANT_PARAMS,
    family,
    head_built_unquantized,
    stored_unquantized,
)


def check(ctx: Context) -> Iterator[Finding]:
    """Report draft-layer modules whose stored precision disagrees with the config."""
    fam = family(ctx)
    if fam is None:
        return  # the runner skips the rule without a plan; no family: no draft prefixes
    text = ctx.checkpoint.config.text
    for name, mq in ctx.quant.modules.items():
        if not fam.draft(name, text):  # `is_draft`, with the family and config looked up once
            continue
        first = next(iter(mq.module.tensors.values())).name
        if head_built_unquantized(ctx, mq):  # DeepSeek MTP `shared_head.head`
            w = mq.module.tensors.get("weight")
            stored = sorted(QUANT_PARAMS & mq.module.tensors.keys())
            if stored or (w is not None and w.dtype not in FLOAT_WEIGHTS):
                yield RULE.finding(
                    f"`{name}` is stored quantized ({', '.join(stored) or (w.dtype if w else '')})"
                    " but the engine builds this head (a ParallelLMHead) unquantized; the MTP"
                    " draft model would read the quantized codes as BF16",
                    ctx.at(first),
                    fix=FIX,
                )
        elif stored_unquantized(mq):
            assert mq.scheme is not None
            w = mq.module.tensors["weight"]
            yield RULE.finding(
                f"`{name}` is stored as {w.dtype} but resolves to {mq.scheme.label}"
                f" ({mq.resolution.reason}); the MTP draft model would build it quantized",
                ctx.at(first),
                fix=FIX,
            )
        elif mq.scheme is None and (quant := sorted(QUANT_PARAMS & mq.module.tensors.keys())):
            yield RULE.finding(
                f"`{name}` is stored quantized ({', '.join(quant)})"
                f" but the config leaves it unquantized ({mq.resolution.reason}); the MTP draft"
                " model would build it in BF16",
                ctx.at(first),
                fix=FIX,
            )


FIX = Fix(
    "add the MTP layers to the ignore list (qscale fix), or quantize them like the main model",
    Applicability.SAFE,
)

RULE = Rule(
    code="QS207",
    name="draft-layer-quantization-mismatch",
    severity=Severity.WARNING,
    doc=__doc__ or "",
    check=check,
    expert_symmetric=True,
    needs_family=True,
)
