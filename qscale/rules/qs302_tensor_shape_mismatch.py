"""A weight or scale whose shape does not fit the module's scheme and weight shape.

## What it checks
From each quantized module's logical weight shape (out, in) — read from `weight_shape` when
stored, else unpacked from the weight — computes the shape each tensor of the scheme must have:
`()` or `(1,)` per tensor, `(out, 1)` per channel, `(out, ceil(in/g))` per group,
`(ceil(out/bn), ceil(in/bk))` per block, `(out, in/2)` for packed FP4, and compares.

## Why it matters
A per-tensor slot that receives a vector trips vLLM's `assert loaded_weight.shape[0] == 1`; a
group or block scale grid of the wrong size fails the kernel's shape asserts or, where it is
copied into a larger parameter, leaves rows of scales unset. Group/block metadata that
disagrees with the tensors (a stale config) shows up here too.

## Example
`model.layers.0.linear_attn.in_proj_qkv.weight_scale` has shape (3,), expected () or (1,) for
FP8 per-tensor

## Fix
Reshape where the values are right (`[]` ↔ `[1]`, `[N]` ↔ `[N, 1]`); otherwise re-export.
"""

from collections.abc import Iterator

from qscale.rules._api import Applicability, Context, Finding, Fix, Rule, Severity, fmt_shape
from qscale.rules._structure import AcceptedShapes, present


def check(ctx: Context) -> Iterator[Finding]:
    """Report tensors whose shape is not among the accepted ones."""
    accepted_shapes = AcceptedShapes()
    #: inputs judged fine, as (spec, scheme, kind, logical shape, dtype, shape): all that the
    #: verdict reads when the module's logical shape sizes the spec (`sized_by_module`); the
    #: 10^5 experts of a large MoE share a handful
    fine: set[tuple[int, int, object, object, str, tuple[int, ...]]] = set()
    for mq, spec, t in present(ctx):  # each a Present
        key = (id(spec), id(mq.scheme), mq.module.kind, mq.logical_shape, t[1], t[2])
        if key in fine:  # (t[1], t[2]: the tensor's dtype and shape)
            continue
        if t.dtype not in spec.dtypes:
            fine.add(key)
            continue  # QS301 already reports it; its shape is meaningless
        shapes = accepted_shapes(mq, spec)
        if shapes is None or t.shape in shapes:
            if accepted_shapes.sized_by_module(mq, spec):
                fine.add(key)
            continue
        assert mq.scheme is not None
        expected = " or ".join(fmt_shape(s) for s in shapes)
        yield RULE.finding(
            f"`{t.name}` has shape {fmt_shape(t.shape)}, expected {expected}"
            f" for {mq.scheme.label} with weight {fmt_shape(mq.logical_shape or ())}",
            ctx.at(t.name),
            fix=RESHAPE if _unit_dims_only(t.shape, shapes) else None,
        )


def _unit_dims_only(shape: tuple[int, ...], accepted: tuple[tuple[int, ...], ...]) -> bool:
    """Whether an accepted shape holds the same values, differing only by size-1 dimensions."""
    core = [d for d in shape if d != 1]
    return any([d for d in s if d != 1] == core for s in accepted)


RESHAPE = Fix("re-declare the shape; the values stay as stored (qscale fix)", Applicability.SAFE)

RULE = Rule(
    code="QS302",
    name="tensor-shape-mismatch",
    severity=Severity.ERROR,
    doc=__doc__ or "",
    check=check,
    expert_symmetric=True,
    fixable=Applicability.SAFE,
)
