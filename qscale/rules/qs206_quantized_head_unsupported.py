"""`lm_head` or an embedding is stored quantized, but the engine builds it unquantized.

## What it checks
Whether `lm_head` and the token embeddings hold quantized tensors (an 8-bit or packed weight, or
scale tensors), and whether the selected engine version applies the checkpoint's quantization
method to them. vLLM builds `ParallelLMHead` and `VocabParallelEmbedding` from the quant config
only for some methods, and only in later releases (read from each release's `get_quant_method`):

| vLLM | quantized `lm_head` | quantized embeddings |
|---|---|---|
| < 0.20 | none | none |
| 0.20–0.21 | compressed-tensors (named by a target, not by the `Linear` class) | none |
| ≥ 0.22 (seen in 0.32) | compressed-tensors, ModelOpt | compressed-tensors weight-only INT |

Everything else gets an unquantized BF16 head or embedding. `quant_method: fp8`, `quark`,
`mxfp4` and `fbgemm_fp8` never quantize a head, in SGLang either (its `Fp8Config` handles the
same layer types).

## Why it matters
The unquantized layer has no `weight_scale`: the load fails with "There is no module or
parameter named 'lm_head.weight_scale'", or, where the loader skips unknown names, the raw FP8
or packed integer codes are read as BF16 — endless repetition from the first token, or every
generated token id 0 for an embedding. ModelOpt has shipped quantized `lm_head` tensors while
listing `lm_head` in `exclude_modules`.

## Example
`lm_head` is stored quantized (weight F8_E4M3, weight_scale) but vllm==0.19.1 builds it
unquantized for compressed-tensors checkpoints

## Fix
Dequantize the head (or embedding) to BF16 and add it to the ignore list (`qscale fix
--unsafe-fixes`), or target a version that quantizes it.
"""

from collections.abc import Iterator

from qscale.engines import EngineSpec, parse_engine
from qscale.formats import ModuleQuant
from qscale.modules import ModuleKind
from qscale.rules._api import Applicability, Context, Finding, Fix, Rule, Severity
from qscale.rules._structure import FLOAT_WEIGHTS, QUANT_PARAMS, head_built_unquantized


def _stored_quantized(mq: ModuleQuant) -> str | None:
    """What makes the module's stored tensors quantized, or None."""
    t = mq.module.tensors
    quant = sorted(QUANT_PARAMS & t.keys())
    w = t.get("weight") or t.get("weight_packed")
    if w is not None and w.dtype not in FLOAT_WEIGHTS:
        return ", ".join([f"weight {w.dtype}", *quant])
    return ", ".join(quant) or None


def _is_head(mq: ModuleQuant) -> bool:
    return mq.module.leaf == "lm_head" and mq.module.kind == ModuleKind.LINEAR


def _engine_quantizes(ctx: Context, spec: EngineSpec, mq: ModuleQuant) -> bool | None:
    if _is_head(mq) and head_built_unquantized(ctx, mq):
        return False  # also where the profile does not model heads: fp8, quark, mxfp4
    prof, fmt = spec.profile, ctx.quant.format
    allowed = prof.quantized_lm_head if _is_head(mq) else prof.quantized_embedding
    if allowed is None or fmt is None:
        return None
    if fmt.method not in allowed or mq.scheme is None:
        return False
    # compressed-tensors matches ParallelLMHead by name or regex only: its class is not Linear
    return not (_is_head(mq) and "(target `Linear`)" in mq.resolution.reason)


def check(ctx: Context) -> Iterator[Finding]:
    """Report quantized heads/embeddings the engine builds unquantized."""
    spec = ctx.plan.engine if ctx.plan else ctx.engine or parse_engine(None)
    for mq in ctx.quant.modules.values():
        head = mq.module.name.endswith("lm_head") and _is_head(mq)  # endswith: a cheap sieve
        if not (head or mq.module.kind == ModuleKind.EMBEDDING):
            continue
        what = _stored_quantized(mq)
        if what is None or _engine_quantizes(ctx, spec, mq) is not False:
            continue
        method = ctx.quant.format.method if ctx.quant.format else "unquantized"
        why = (
            f"{spec.label} builds it unquantized for {method} checkpoints"
            if mq.scheme is not None
            else f"the quantization config leaves it unquantized ({mq.resolution.reason})"
        )
        first = next(iter(mq.module.tensors.values())).name
        yield RULE.finding(
            f"`{mq.module.name}` is stored quantized ({what}) but {why}: the load fails on"
            " its scale tensors, or the raw quantized codes are read as BF16",
            ctx.at(first),
            fix=FIX,
        )


FIX = Fix(
    "dequantize it to BF16 and add it to the ignore list (qscale fix --unsafe-fixes)",
    Applicability.UNSAFE,
)

RULE = Rule(
    code="QS206",
    name="quantized-head-unsupported",
    severity=Severity.ERROR,
    doc=__doc__ or "",
    check=check,
    expert_symmetric=True,
    fixable=Applicability.UNSAFE,
)
