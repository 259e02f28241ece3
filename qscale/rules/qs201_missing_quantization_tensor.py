"""A tensor that the module's quantization scheme needs is not in the checkpoint.

## What it checks
For every module the quantization config quantizes, lists the tensors its scheme writes
(e.g. `weight`, `weight_scale` and, for static activations, `input_scale`; `weight_packed`,
`weight_scale` and `weight_shape` for pack-quantized) and reports each one that is absent.

## Why it matters
Engines allocate one parameter per tensor the scheme needs and fill it from the checkpoint.
A missing one keeps its initial value: vLLM's FP8 scales start at −3.4e38, MoE per-tensor
scales at 1.0, NVFP4 global scales as uninitialised memory. vLLM does not notice, because its
"weights not initialized" check counts parameters, not values. A Quark FP8 export that declares
static activations but writes no `input_scale` loads without an error and serves garbage.

## Example
`model.layers.0.self_attn.q_proj.input_scale` is missing (config: static FP8 activations)

## Fix
Re-export with calibration, or declare dynamic activations in the config when the kernel allows.
"""

from collections.abc import Iterator

from qscale.rules._api import Applicability, Context, Finding, Fix, Location, Rule, Severity
from qscale.rules._structure import structure


def check(ctx: Context) -> Iterator[Finding]:
    """Report each absent tensor of every checked module."""
    facts = structure(ctx)
    for mq, spec in facts.absent:
        assert mq.scheme is not None
        name = mq.module.tensor_name(spec.param)
        if name in facts.misnamed.get(mq.module.name, {}):
            continue  # QS209's
        some = next(iter(mq.module.tensors.values()))
        yield RULE.finding(
            f"`{name}` is missing; `{mq.module.name}` is {mq.scheme.label}"
            f" ({mq.resolution.reason})",
            Location(file=some.file, tensor=name),
        )


RULE = Rule(
    default_fix=Fix(
        "re-export the module with every tensor its scheme needs (recalibrate for missing"
        " static input scales), or switch the scheme to dynamic activations",
        Applicability.MANUAL,
    ),
    code="QS201",
    name="missing-quantization-tensor",
    severity=Severity.ERROR,
    doc=__doc__ or "",
    check=check,
    expert_symmetric=True,
)
