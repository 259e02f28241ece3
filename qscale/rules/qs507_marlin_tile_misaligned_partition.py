"""A GPTQ or AWQ layer whose per-rank partition is not whole Marlin thread tiles.

## What it checks
For the requested TP, every dense GPTQ / AWQ layer that vLLM builds with its Marlin linear
method: the output per rank must be a multiple of 64 (`min_thread_n`) and the input per rank
a multiple of 128 (`min_thread_k`), as `check_marlin_supports_shape` (`utils/marlin_utils.py`)
asks. vLLM checks this up to 0.23, and from 0.24 to 0.29 only under GPTQ act order
(`desc_act`); from 0.24 (0.30 with act order) the kernel zero-pads the tiles. Which releases
check what is data (`qscale/engines/wna16.py`, read from the wheels). A group that straddles
ranks is QS505's.

## Why it matters
When Marlin does not take a layer, GPTQ looks for another mixed-precision kernel: Machete
(Hopper only, input % 64 and output % 128), Exllama (float16 activations only); neither takes
act order over an input split across ranks. With none left the engine stops: "Failed to find
a kernel that can implement the WNA16 linear layer". AWQ falls back to its slower GEMM kernel
and loads. Severity: error when no kernel can take the layer on any GPU with the checkpoint's
dtype, warning when one might (GPU- or dtype-dependent), info for the AWQ fallback.

## Example
`vllm==0.20.0: `model.layers.0.mlp.down_proj`: at TP=8 input per rank 2368 is not a multiple
of 128, so vLLM's Marlin kernel does not take it (...); no other WNA16 kernel takes it
(...): the engine stops with 'Failed to find a kernel that can implement the WNA16 linear
layer'. TP that keeps Marlin: 1, 2, 4`

## Fix
Manual: deploy with a TP the message lists, serve with `--dtype float16` where Exllama can
take the layer, or use vLLM ≥ 0.24 (≥ 0.30 with act order is refused: re-export without it).
"""

from qscale.rules._api import Rule, Severity
from qscale.rules._layout import check_for

RULE = Rule(
    code="QS507",
    name="marlin-tile-misaligned-partition",
    severity=Severity.ERROR,
    doc=__doc__ or "",
    check=check_for("QS507"),
    needs_plan=True,
)
