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

## Example
`in_proj_qkvz.weight_scale` slots after loading on vllm==0.19.1:
[0.000204, -3.4e+38, -3.4e+38, 0.00017] (partitions 1, 2 never written)

## Fix
Upgrade to vLLM ≥ 0.20.0, or rewrite the scale as per-channel with identical values so every
version loads it into every row (`qscale fix`, safe; coming).
"""

from collections.abc import Iterator

from qscale.loader import is_sentinel
from qscale.rules._api import Context, Finding, Rule, Severity


def _fmt(v: float | None) -> str:
    return "uninitialized" if v is None else f"{v:.3g}"


def check(ctx: Context) -> Iterator[Finding]:
    """Report merged per-tensor scale parameters with unwritten slots."""
    assert ctx.plan is not None
    refused = {p.name.rpartition(".")[0] for p in ctx.plan.params.values() if p.errors}
    for p in ctx.plan.params.values():
        if p.slots is None or len(p.slots) < 2 or p.name.rpartition(".")[0] in refused:
            continue  # a layer the engine refuses is QS402's
        empty = [i for i, v in enumerate(p.slots) if v is None or is_sentinel(v)]
        if not empty or len(empty) == len(p.slots):
            continue  # all empty: the tensors are missing, which QS201 reports
        table = ", ".join(_fmt(v) for v in p.slots)
        yield RULE.finding(
            f"`{p.name}` slots after loading on {ctx.plan.engine.label}: [{table}];"
            f" partition(s) {', '.join(map(str, empty))} never written",
            ctx.at_param(p),
        )


RULE = Rule(
    code="QS401",
    name="unfilled-scale-slot",
    severity=Severity.ERROR,
    doc=__doc__ or "",
    check=check,
    needs_plan=True,
    reads_values=True,
)
