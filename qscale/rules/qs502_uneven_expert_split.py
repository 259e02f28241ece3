"""Routed experts that the requested expert-parallel size does not split evenly.

## What it checks
For the layout given with `--ep` / `--enable-expert-parallel` (vLLM: EP = TP × DP; SGLang:
`--ep`), checks the number of routed experts (`num_experts`, `n_routed_experts`,
`num_local_experts`) against the EP size: SGLang needs an even split; vLLM spreads a remainder
over the first ranks, but an EP larger than the number of experts leaves ranks without any.

## Why it matters
SGLang's fused-MoE layer asserts `num_experts % moe_ep_size == 0` at start-up; vLLM's
`determine_expert_map` gives ranks beyond the expert count zero experts. Either way the
deployment does not come up as planned.

## Example
`sglang==0.5.12: model.layers.0.mlp.experts (and 47 more alike): 60 experts do not split
evenly over EP=8; SGLang asserts num_experts % moe_ep_size == 0; EP that works: 1, 2, 3, 4, ...`

## Fix
Manual: deploy with an EP size the message lists.
"""

from qscale.rules._api import Rule, Severity
from qscale.rules._layout import check_for

RULE = Rule(
    code="QS502",
    name="uneven-expert-split",
    severity=Severity.ERROR,
    doc=__doc__ or "",
    check=check_for("QS502"),
    needs_plan=True,
)
