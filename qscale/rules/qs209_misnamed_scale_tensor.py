"""A scale tensor is stored under another producer's spelling.

## What it checks
For every quantized module, a tensor its scheme needs that is absent while the same tensor is
stored under a spelling another producer uses: `weight_scale_inv` (DeepSeek-style block FP8,
`quant_method: fp8`) where compressed-tensors reads `weight_scale`, or the reverse; Quark
`hf_format` quantizer state (`weight_quantizer.scale`, `input_quantizer.scale`); ComfyUI-style
`scale_weight`.

## Why it matters
Engines register one spelling per scheme. The other fails the load with "There is no module or
parameter named '….weight_scale_inv'", or — where a loader skips unknown names — leaves the
registered scale at its initial value (1.0 for fused-MoE scales, −3.4e38 for linear FP8 scales)
and dequantizes the raw FP8 values with it.

## Example
`model.layers.0.mlp.down_proj.weight_scale` is stored as `…down_proj.weight_scale_inv`;
compressed-tensors reads `weight_scale`

## Fix
Rename the tensors (a header-only rewrite plus the index; `qscale fix`). Check the value
convention too: `_inv` names are not always reciprocals.
"""

from collections.abc import Iterator

from qscale.rules._api import Applicability, Context, Finding, Fix, Rule, Severity
from qscale.rules._structure import structure


def check(ctx: Context) -> Iterator[Finding]:
    """Report scheme tensors stored under another spelling."""
    for module, renamed in structure(ctx).misnamed.items():
        mq = ctx.quant.modules[module]
        for expected, stored in renamed.items():
            assert mq.scheme is not None
            yield RULE.finding(
                f"`{expected}` is stored as `{stored}`; {mq.scheme.label}"
                f" ({ctx.quant.format.method if ctx.quant.format else 'the format'}) reads"
                f" `{expected.rpartition('.')[2]}`",
                ctx.at(stored),
                fix=FIX,
            )


FIX = Fix("rename the tensor to the spelling the format reads (qscale fix)", Applicability.SAFE)

RULE = Rule(
    code="QS209",
    name="misnamed-scale-tensor",
    severity=Severity.ERROR,
    doc=__doc__ or "",
    check=check,
    expert_symmetric=True,
    fixable=Applicability.SAFE,
)
