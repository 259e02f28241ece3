"""A quantized ``lm_head`` or embedding the engine builds unquantized, dequantized (unsafe; QS206).

The engine builds the layer in BF16 and would fail on its scale tensors or read the quantized
codes as BF16. This fix dequantizes the stored tensors with the decompressor's own arithmetic
(:func:`qscale.fix.numerics.dequantize`), writes a BF16 ``weight``, drops the quantization
tensors, and, when the config quantizes the layer, adds it to the ignore/exclude list. The
BF16 rounding of the dequantized values is reported as the error; the model then computes
that layer in BF16 (more memory, same values up to that rounding).
"""

from __future__ import annotations

from collections.abc import Iterator
from functools import partial

from qscale.findings import Applicability, Finding
from qscale.fix.context import FixContext, ignore_key
from qscale.fix.model import (
    Change,
    Computed,
    ConfigAction,
    ConfigEdit,
    DropTensor,
    Edit,
    Refusal,
    WriteTensor,
)
from qscale.fix.tensors import TensorSource, from_torch
from qscale.formats import ModuleQuant
from qscale.rules._structure import QUANT_PARAMS
from qscale.schemes import QuantScheme

NAME = "dequantize-head"


def _scheme(ctx: FixContext, mq: ModuleQuant) -> QuantScheme | None:
    """The module's scheme; when the config leaves it unquantized, the scheme of a quantized
    module that stores the same parameters with the same dtypes."""
    if mq.scheme is not None:
        return mq.scheme
    mine = {p: t.dtype for p, t in mq.module.tensors.items() if p != "bias"}
    for other in ctx.quant.quantized():
        theirs = {p: t.dtype for p, t in other.module.tensors.items() if p != "bias"}
        if theirs == mine:
            return other.scheme
    return None


def plan(ctx: FixContext) -> Iterator[Change | Refusal]:
    """One unsafe change per QS206 finding."""
    for f in ctx.findings("QS206"):
        module = (f.location.tensor or "").rpartition(".")[0]
        mq = ctx.quant.modules.get(module)
        scheme = _scheme(ctx, mq) if mq else None
        if mq is None or scheme is None or not scheme.tensors:
            yield Refusal(f, "the stored tensors match no scheme qscale can dequantize")
            continue
        yield _change(ctx, f, mq, scheme)


def _change(ctx: FixContext, f: Finding, mq: ModuleQuant, scheme: QuantScheme) -> Change:
    tensors = mq.module.tensors
    weight = tensors[scheme.weight_spec.param]
    out, inp = mq.logical_shape or (weight.shape[0], weight.shape[1])
    edits: list[Edit] = [
        DropTensor(t.name, t.file)
        for p, t in tensors.items()
        if p in QUANT_PARAMS or (p == scheme.weight_spec.param and p != "weight")
    ]
    edits.append(WriteTensor(mq.module.tensor_name("weight"), weight.file, "BF16", (out, inp)))
    ref, key = ctx.quant_config(), ignore_key(ctx)
    if mq.scheme is not None and ref is not None and key is not None:
        edits.append(ConfigEdit(ref.file, ref.at(key), ConfigAction.APPEND, mq.module.name))
    return Change(
        fixer=NAME,
        title=f"Dequantize `{mq.module.name}` ({scheme.label}) to BF16"
        + (f" and add it to `{key}`" if any(isinstance(e, ConfigEdit) for e in edits) else ""),
        applicability=Applicability.UNSAFE,
        edits=tuple(edits),
        resolves=(f,),
        compute=partial(_dequantize, module=mq.module.name, params=tuple(tensors), scheme=scheme),
        detail="values as the decompressor returns them (BF16); no activation quantization",
    )


def _dequantize(
    src: TensorSource, *, module: str, params: tuple[str, ...], scheme: QuantScheme
) -> Computed:
    from qscale.fix.numerics import dequantize

    stored = {p: src.torch(f"{module}.{p}") for p in params if p != "bias"}
    return Computed({f"{module}.weight": from_torch(dequantize(stored, scheme), "BF16")})
