"""A packed weight or zero point whose per-rank slice starts inside a packed element.

## What it checks
Packed formats store several values per element: int4 `weight_packed` 8 per int32 and FP4 2
per byte along the input dimension; asymmetric pack-quantized zero points 32 / bits per int32
along the output dimension. For the requested TP (and MoE TP for the experts), the input per
rank of row-parallel layers must be a multiple of the input pack factor, and every per-rank
output partition of a column-parallel layer must be a multiple of the zero-point pack factor.
torchao's tile-packed Int4 (`Int4TilePackedTo4dTensor`, the pytorch/*-INT4 checkpoints) pads
every weight to 1024 input columns and 8 rows: at TP > 1 a row-parallel rank's input must be
a multiple of 1024, and the shards of a merged layer (per rank) multiples of 8. torchao AWQ
(`AWQConfig`, the pytorch/*-AWQ-INT4 checkpoints) packs one `act_pre_scale` per input column
into the Int4Tensor, which torchao's slice never cuts: no row-parallel layer loads at TP > 1
(real vLLM 0.33.0 at TP=2: "Not supported args for copy_ due to metadata mismatch").

## Why it matters
The loader narrows packed parameters by `shard_size // packed_factor`: a slice that does not
start on an element boundary takes the neighbouring rank's values (docs/engine-loader-facts
§3.4, item 6), silently for zero points, or fails the kernel's shape checks. torchao's slice of a
tile-packed weight maps columns to tiles by ratio: the rank's parameter and its slice differ
in shape ("Not supported args for copy_ due to metadata mismatch") or, at some sizes (input
1536 at TP=2), the load takes the wrong tiles without an error.

## Example
`vllm>=0.22,<0.34: `language_model.model.layers.1.self_attn.o_proj`: input per rank 4 at TP=32
is not a multiple of the 8 values packed per int32: ...; TP that works: 1, 2, 4, 8, 16`

## Fix
Manual: deploy with a TP the message lists.
"""

from qscale.rules._api import Rule, Severity
from qscale.rules._layout import check_for

RULE = Rule(
    code="QS506",
    name="packed-misaligned-partition",
    severity=Severity.ERROR,
    doc=__doc__ or "",
    check=check_for("QS506"),
    needs_plan=True,
)
