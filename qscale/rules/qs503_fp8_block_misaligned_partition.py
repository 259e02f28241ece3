"""A block-FP8 layer whose per-rank partition cuts through a quantization block.

## What it checks
For block-quantized FP8 (`quant_method: fp8` with `weight_block_size`, or compressed-tensors
`strategy: block`), repeats vLLM's `validate_fp8_block_shape` for every layer at the requested
TP: a row-parallel layer's input per rank must be a multiple of `block_k`; a column-parallel
layer split by TP, or a merged layer (more than one partition, even at TP=1), must keep every
per-rank partition a multiple of `block_n` (merged layers without TP split: all but the last).
For the routed experts it repeats `validate_fp8_block_shape_moe` on the expert intermediate
size per MoE-TP rank. Merged layers of `quant_method: fp8` are exempt in vLLM
(`_maybe_allow_fp8_block_shape_mismatch`): those are reported as a warning, since nothing
fails at start-up but the rank's rows start inside a block.

## Why it matters
vLLM refuses to start: "Weight output_partition_size = 64 is not divisible by weight
quantization block_n = 128." or "Weight input_size_per_partition = 64 is not divisible by
weight quantization block_k = 128.". Small shared experts and MoE intermediates (64 per rank at
TP=16 for an intermediate of 1024) are the usual victims (failure catalogue, class 3), and
merged layers with an odd partition fail even at TP=1 (class 24).

## Example
`vllm>=0.22,<0.34: `language_model.model.layers.0.mlp.shared_expert.down_proj` (and 59 more
alike): input per rank 64 at TP=16 is not a multiple of block_k=128; the engine refuses: ...;
TP that works: 1, 2, 4, 8`

## Fix
Manual: deploy with a TP the message lists; for the experts, enable expert parallel (each rank
then holds whole experts). `qscale layouts PATH` lists every TP × EP that loads.
"""

from qscale.rules._api import Rule, Severity
from qscale.rules._layout import check_for

RULE = Rule(
    code="QS503",
    name="fp8-block-misaligned-partition",
    severity=Severity.ERROR,
    doc=__doc__ or "",
    check=check_for("QS503"),
    needs_plan=True,
)
