"""A block-FP8 weight whose dimensions are not multiples of the block at all.

## What it checks
For every block-quantized FP8 layer, whether its output partitions or its input size are
multiples of `block_n` / `block_k` (for example DeepSeek's `kv_a_proj_with_mqa` with 576 rows,
or a 4544-wide layer with block 128). Such a layer has a last, partial block; its scale grid
must then be `ceil(N / block_n) x ceil(K / block_k)` (QS302 reports a grid of another size).

## Why it matters
At TP=1 the engines load a partial last block (the kernel asserts `cdiv(N, block_n)` scale rows,
which a ceil grid satisfies), but some producers refuse or pad such layers, and any TP that cuts
inside a block is refused or misaligned (QS503). This note says which layers limit the layouts
(failure catalogue, class 24).

## Example
`vllm==0.20.0: `language_model.model.layers.0.linear_attn.in_proj_ba`: output partition(s)
[4, 4] of block_n=128 are not whole blocks; the scale grid covers a partial last block (ceil),
but a partial block before the last partition of a merged layer, ... is refused or misaligned`

## Fix
None needed at TP=1; pick TPs that keep whole blocks per rank (`qscale layouts PATH`).
"""

from qscale.rules._api import Rule, Severity
from qscale.rules._layout import check_for

RULE = Rule(
    code="QS504",
    name="fp8-block-partial-tile",
    severity=Severity.INFO,
    doc=__doc__ or "",
    check=check_for("QS504"),
    needs_plan=True,
)
