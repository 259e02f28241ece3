"""A weight or scale stored in a dtype the module's scheme does not use.

## What it checks
Compares the dtype of every tensor of a quantized module with the dtypes its scheme accepts:
`F8_E4M3` for FP8 weights and NVFP4 block scales, `U8` for packed FP4 and E8M0 scales, `I32`
for pack-quantized int4/int8, a float (F32/BF16/F16) for per-tensor, channel and global scales.

## Why it matters
Engines copy checkpoint bytes into parameters of the scheme's dtype. A float scale where E8M0
bytes are expected, or BF16 weights where FP8 codes are expected, is either refused with a
dtype error or reinterpreted silently.

## Example
`model.layers.0.mlp.experts.0.up_proj.weight_scale` is BF16, expected U8 (E8M0) for MXFP4

## Fix
Safe where only the container differs (e.g. a BF16 scale for an F32 slot); otherwise re-export.
"""

from collections.abc import Iterator

from qscale.rules._api import Applicability, Context, Finding, Fix, Rule, Severity
from qscale.rules._structure import present


def check(ctx: Context) -> Iterator[Finding]:
    """Report tensors whose dtype the scheme does not accept."""
    for p in present(ctx):
        if p[2][1] not in p[1].dtypes:  # p.tensor.dtype not in p.spec.dtypes
            assert p.mq.scheme is not None
            yield RULE.finding(
                f"`{p.tensor.name}` is {p.tensor.dtype}, expected"
                f" {' or '.join(sorted(p.spec.dtypes))} for {p.mq.scheme.label}",
                ctx.at(p.tensor.name),
                fix=WIDEN if "F32" in p.spec.dtypes and p.tensor.dtype in WIDENED else None,
            )


#: float dtypes that F32 holds exactly (F64 only when its values fit; `qscale fix` checks)
WIDENED = ("BF16", "F16", "F64")
WIDEN = Fix("store the scale as F32 with the same values (qscale fix)", Applicability.SAFE)

RULE = Rule(
    code="QS301",
    name="tensor-dtype-mismatch",
    severity=Severity.ERROR,
    doc=__doc__ or "",
    check=check,
    expert_symmetric=True,
    fixable=Applicability.SAFE,
)
