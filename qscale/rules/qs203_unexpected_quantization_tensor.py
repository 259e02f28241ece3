"""A quantization tensor on a module whose resolved scheme does not produce it.

## What it checks
Reports scale, packed-weight and zero-point tensors stored on a module that the config leaves
unquantized (ignored, excluded, or not a Linear layer such as `linear_attn.conv1d`), and
tensors a quantized module carries that its scheme does not write (e.g. `weight_scale_inv`
under a per-tensor scheme).

Whether the config leaves a module unquantized depends on the engine: vLLM matches
compressed-tensors targets against its own module names (fused `qkv_proj`, DeepSeek-V4's
`fused_wqa_wkv`, the expert probe `experts.0.gate_proj`), and builds some modules without the
quantization config. Where qscale has no family for the architecture on the engine version
(QS103), the tensors of such modules are not judged — the report lists that part as not
checked — and only tensors a quantized module's scheme does not write are reported.

## Why it matters
The engine registers parameters from the config, not from the files. vLLM ≥ 0.20-era loaders
raise `There is no module or parameter named …`; older ones skip the tensor silently, so
the module runs with whatever the other tensors mean on their own (FP8 codes read as BF16).
A Quark export that quantizes `linear_attn.conv1d` is refused this way.

## Example
`model.layers.0.linear_attn.conv1d.weight_scale` on a conv module (not quantized by vLLM)

## Fix
Exclude the module from quantization and re-export, or dequantize it (`qscale fix`, later).
Tensors the scheme names as written by the exporter but never read by the engine (FP-Quant's
`backward_hadamard_matrix`, which vLLM ≥ 0.23 has no parameter for) are dropped by
`qscale fix` (safe).
"""

from collections.abc import Iterator

from qscale.formats import ENGINE_NAMES
from qscale.rules._api import Applicability, Context, Finding, Fix, Rule, Severity
from qscale.rules._structure import BENIGN, QUANT_PARAMS, structure


def check(ctx: Context) -> Iterator[Finding]:
    """Report quantization tensors the resolved scheme does not account for."""
    facts = structure(ctx)
    skip = {mq.module.name for mq in facts.stored_unquantized}
    modelled = ctx.plan is not None  # the engine's names and builds are known
    for mq in ctx.quant.modules.values():
        if mq.module.name in skip:
            continue
        scheme = mq.scheme
        if scheme is None and not modelled:
            continue  # FAMILY_PART: the engine may match it on names qscale does not know
        if scheme is not None and not scheme.tensors:
            continue  # scheme not modelled tensor by tensor
        stored = mq.module.tensors.keys()
        if (stored <= scheme.accepts) if scheme else stored.isdisjoint(QUANT_PARAMS):
            continue  # nothing to report (most modules): spares the walk below
        wanted = scheme.accepts if scheme else frozenset()
        renamed = facts.misnamed.get(mq.module.name, {}).values()  # QS209's
        for param, t in mq.module.tensors.items():
            if param in wanted or param in BENIGN or t.name in renamed:
                continue
            if scheme is None and param not in QUANT_PARAMS:
                continue
            if scheme is not None and param == "weight":
                what = f"{scheme.label} stores its weight as `{scheme.weight_spec.param}`"
            elif scheme is not None:
                what = dict(scheme.unregistered).get(param) \
                    or f"{scheme.label} does not write `{param}`"
            else:
                what = f"the module is not quantized ({mq.resolution.reason})"
            fix = ENGINE_NAME_FIX if scheme is None and ENGINE_NAMES in mq.resolution.reason \
                else None
            if scheme is not None and param in dict(scheme.unregistered):
                fix = UNREAD_FIX
            yield RULE.finding(f"`{t.name}` is unexpected: {what}", ctx.at(t.name), fix=fix)


#: the fix of a tensor the exporter writes and the engine never reads (qscale/fix/unregistered.py)
UNREAD_FIX = Fix("drop the tensor: the engine never reads it (qscale fix)", Applicability.SAFE)
#: the fix where the targets miss both the checkpoint's and the engine's names for a module
ENGINE_NAME_FIX = Fix(
    "the engine matches the config's targets against its own module names (those named):"
    " add a target that matches them, or list the module in `ignore` and store it"
    " unquantized",
    Applicability.MANUAL,
)


#: what this rule cannot judge without the engine's family (the report lists it as not checked)
FAMILY_PART = "quantization tensors on modules the config leaves unquantized"

RULE = Rule(
    default_fix=Fix(
        "make the quantization config describe how the module is stored (scheme, ignore "
        "list), or drop the stray tensor",
        Applicability.MANUAL,
    ),
    code="QS203",
    name="unexpected-quantization-tensor",
    severity=Severity.ERROR,
    doc=__doc__ or "",
    check=check,
    expert_symmetric=True,
    family_part=FAMILY_PART,
)
