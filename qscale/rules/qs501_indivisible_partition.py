"""A layer, head count or expert intermediate size that the requested TP does not split evenly.

## What it checks
For the layout given with `--tp`, `--dp`, `--ep` / `--enable-expert-parallel` (default: one
GPU), splits every engine layer the way the engine does and checks each rank gets whole parts:
attention heads and KV heads (KV heads may instead be replicated when TP is a multiple of
them), Gated DeltaNet key and value heads, every output partition of a merged column-parallel
layer (`qkv_proj`, `gate_up_proj`, Qwen3.5 `in_proj_qkvz` / `in_proj_ba`), the input of every
row-parallel layer (`o_proj`, `down_proj`, `out_proj`), the shared expert's intermediate size
(unless the engine replicates the shared expert for this layout), and the routed experts'
`moe_intermediate_size` over the MoE tensor-parallel size (vLLM: TP × DP without expert
parallel, 1 with it; SGLang: TP / EP).

## Why it matters
`MergedColumnParallelLinear` asserts that every output size divides by the TP size, the
fused-MoE layer asserts `intermediate_size % tp_size == 0`, and attention takes whole heads
per rank: the engine stops at start-up, on the GPU host, after the download. The message names
the TP (or MoE TP) values that split the part evenly.

## Example
`vllm>=0.22,<0.34: 16 Gated DeltaNet key heads do not split over TP=32: each rank takes whole
heads; TP that works: 1, 2, 4, 8, 16`

## Fix
Manual: deploy with one of the TP values the message lists, or (for the experts) enable expert
parallel so each rank holds whole experts. `qscale layouts PATH` lists every TP × EP that loads.
"""

from qscale.rules._api import Rule, Severity
from qscale.rules._layout import check_for

RULE = Rule(
    code="QS501",
    name="indivisible-partition",
    severity=Severity.ERROR,
    doc=__doc__ or "",
    check=check_for("QS501"),
    needs_plan=True,
)
