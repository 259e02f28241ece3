"""A merged parameter's per-tensor scale slot that the engine's loader never fills.

## What it checks
Simulates the selected engine version's weight loader over every merged parameter (qkv_proj,
gate_up_proj, Qwen3.5 `in_proj_qkvz`, ...) and reports per-tensor scale slots (`weight_scale`,
`input_scale`, NVFP4 global scales) still holding their initial value after loading: vLLM's
FP8 sentinel (−3.4e38, `torch.finfo(float32).min`) or uninitialised memory.

## Why it matters
vLLM 0.18.0–0.19.1 load a per-tensor scale with the tuple shard id (0, 1, 2) of Qwen3.5's
`in_proj_qkv` into slot 0 only (vLLM PR #38517, fixed in 0.20.0). Slots 1–2 keep −3.4e38;
after loading, `requantize_with_max_scale` dequantizes the k and v partitions with it, and the
model serves garbage (GSM8K 94% → 11% in one report). vLLM raises nothing: its
"not initialized" check counts parameters, not slots.

Only slots that reach the weights are reported: the static `input_scale` slots of the same
layer are also left at −3.4e38, but processing takes their maximum, which ignores them.

## Example
`in_proj_qkvz.weight_scale` slots after loading on vllm==0.19.1:
[0.000204, -3.4e+38, -3.4e+38, 0.00017]; partitions 1, 2 never written; after
`requantize_with_max_scale` they are dequantized with −3.4e38 and become ±inf/NaN.

## Fix
Upgrade to vLLM ≥ 0.20.0, or rewrite the scale as per-channel with identical values so every
version loads it into every row (`qscale fix`, a safe fix).
"""

from collections.abc import Iterator

from qscale.engines.loader import is_sentinel
from qscale.engines.processing import Effect, Processed, process
from qscale.rules._api import Applicability, Context, Finding, Fix, Rule, Severity


def _fmt(v: float | None) -> str:
    return "uninitialized" if v is None else f"{v:.3g}"


def _impact(done: Processed) -> str:
    corrupt = [p.index for p in done.partitions if p.effect == Effect.CORRUPT]
    uninit = [p.index for p in done.partitions if p.effect == Effect.UNINITIALISED]
    parts = []
    if corrupt:
        parts.append(
            f"after `requantize_with_max_scale` partition(s) {', '.join(map(str, corrupt))}"
            " are dequantized with −3.4e38: every weight becomes ±inf (NaN where it is 0)"
            " before requantization, so those output rows are garbage"
        )
    if uninit:
        parts.append(
            "processing takes the maximum over memory no loader wrote (`torch.empty`), so the"
            " layer's scale is arbitrary"
        )
    return "; ".join(parts)


def check(ctx: Context) -> Iterator[Finding]:
    """Report merged per-tensor scale parameters whose unwritten slots reach the weights."""
    assert ctx.plan is not None
    refused = {p.name.rpartition(".")[0] for p in ctx.plan.params.values() if p.errors}
    for done in process(ctx.plan):
        p = done.param
        if p.slots is None or p.name.rpartition(".")[0] in refused:
            continue  # a layer the engine refuses is QS402's
        empty = [i for i, v in enumerate(p.slots) if v is None or is_sentinel(v)]
        if not empty or len(empty) == len(p.slots):
            continue  # all empty: the tensors are missing, which QS201 reports
        bad = [o for o in done.partitions if o.effect in (Effect.CORRUPT, Effect.UNINITIALISED)]
        if not bad:
            continue  # e.g. input scales: the max over the slots ignores −3.4e38
        table = ", ".join(_fmt(v) for v in p.slots)
        yield RULE.finding(
            f"`{p.name}` slots after loading on {ctx.plan.engine.label}: [{table}];"
            f" partition(s) {', '.join(map(str, empty))} never written; {_impact(done)}",
            ctx.at_param(p),
            fix=FIX if p.leaf == "weight_scale" else UPGRADE,
        )


FIX = Fix(
    "rewrite the per-tensor scales of this fused layer as per-channel scales with identical"
    " values (qscale fix), or use vLLM >= 0.20.0",
    Applicability.SAFE,
)

UPGRADE = Fix("use vLLM >= 0.20.0, which fills every slot of a tuple shard", Applicability.MANUAL)

RULE = Rule(
    code="QS401",
    name="unfilled-scale-slot",
    severity=Severity.ERROR,
    doc=__doc__ or "",
    check=check,
    needs_plan=True,
    reads_values=True,
    fixable=Applicability.SAFE,
)
