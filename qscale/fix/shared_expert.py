"""BF16 shared experts quantized to the routed experts' MXFP4 (unsafe; seed 003, class 13).

MXFP4 exports from AMD Quark and llm-compressor keep each layer's shared expert in BF16 and
list it in ``exclude``/``ignore``. Engines that fuse the shared expert into the routed-expert
kernel need one format. This fix quantizes every BF16 shared-expert projection of a layer whose
routed experts are MXFP4 with the producer's own rounding (:mod:`qscale.fix.numerics`: OCP
group 32, E8M0 scales, packed E2M1), writes the tensors the routed experts' scheme stores
(llm-compressor ``weight_packed`` + ``weight_scale``; Quark a packed ``weight`` +
``weight_scale``), and removes the shared expert from the list, so that it resolves to the
routed experts' scheme. The quantization error of every tensor is reported; it is lossy, hence
unsafe.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Iterator
from functools import partial

from qscale.findings import Applicability, Finding, Severity
from qscale.fix.context import FixContext, edited, ignore_key
from qscale.fix.model import (
    Change,
    Computed,
    ConfigAction,
    ConfigEdit,
    DropTensor,
    Edit,
    Refusal,
    WriteTensor,
    error_fields,
)
from qscale.fix.tensors import TensorSource, from_torch
from qscale.formats import ModuleQuant, QuantConfigRef, resolve_quantization
from qscale.formats._api import equal_or_regex
from qscale.rules._structure import QUANT_PARAMS
from qscale.schemes import QuantScheme

NAME = "shared-expert-mxfp4"
PROJS = ("gate_proj", "up_proj", "down_proj")


def _is_mxfp4(scheme: QuantScheme | None) -> bool:
    if scheme is None:
        return False
    w = scheme.weights
    return (
        w.type == "float"
        and w.num_bits == 4
        and w.group_size == 32
        and "weight_scale" in {s.param for s in scheme.tensors}
    )


def _bf16(mq: ModuleQuant | None) -> bool:
    if mq is None or mq.scheme is not None:
        return False
    w = mq.module.tensors.get("weight")
    return (
        w is not None
        and w.dtype in ("BF16", "F16", "F32")
        and len(w.shape) == 2
        and not (QUANT_PARAMS & mq.module.tensors.keys())
    )


def _layers(ctx: FixContext, marker: str) -> dict[str, tuple[list[ModuleQuant], QuantScheme]]:
    """Layer prefix -> its BF16 shared-expert projections and its routed experts' scheme."""
    routed: dict[str, QuantScheme] = {}
    for mq in ctx.quant.quantized():
        head, sep, _ = mq.module.name.partition(".experts.")
        if sep and head not in routed and _is_mxfp4(mq.scheme):
            assert mq.scheme is not None
            routed[head] = mq.scheme
    out: dict[str, tuple[list[ModuleQuant], QuantScheme]] = {}
    for head, scheme in routed.items():
        shared = [ctx.quant.modules.get(f"{head}{marker}{p}") for p in PROJS]
        if all(_bf16(m) for m in shared):
            out[head] = ([m for m in shared if m is not None], scheme)
    return out


def _list_edits(
    ref: QuantConfigRef, key: str, names: set[str], modules: Iterable[str]
) -> list[ConfigEdit] | str:
    """Remove the list entries that cover these modules; an entry that also covers another
    module cannot be removed (its other modules would become quantized)."""
    edits = []
    for entry in ref.raw.get(key) or []:
        hits = {n for n in modules if equal_or_regex(n, entry)}
        if not hits & names:
            continue
        if not hits <= names:
            return f"`{entry}` in `{key}` also covers modules that stay unquantized"
        edits.append(ConfigEdit(ref.file, ref.at(key), ConfigAction.REMOVE, entry))
    return edits


def plan(ctx: FixContext) -> Iterator[Change | Refusal]:
    """One unsafe change per layer with BF16 shared experts next to MXFP4 routed experts, where
    a QS6xx finding at warning or above (the engine fuses, or may fuse, the shared expert in
    the layout checked) asks for one; an engine that keeps the shared expert a separate MLP
    needs nothing, and nothing is offered."""
    fam, ref, key = ctx.plan.family if ctx.plan else None, ctx.quant_config(), ignore_key(ctx)
    if fam is None or fam.shared_expert is None or ref is None or key is None:
        return
    asked = [f for f in ctx.findings("QS6") if f.severity >= Severity.WARNING]
    if not asked:
        return  # check says the engine serves the shared experts as they are
    for head, (mods, routed) in _layers(ctx, fam.shared_expert).items():
        related = [f for f in ctx.report.findings if _about(f, head + fam.shared_expert)]
        edits = _list_edits(ref, key, {m.module.name for m in mods}, ctx.quant.modules)
        if isinstance(edits, str):
            yield from (Refusal(f, edits) for f in related)
            continue
        after = resolve_quantization(edited(ctx, edits))
        got = {_kind(after.modules[m.module.name].scheme) for m in mods}
        if got != {_kind(routed)}:
            reason = (
                f"without the {key} entries the shared expert would not resolve to {routed.label}"
            )
            yield from (Refusal(f, reason) for f in related)
            continue
        yield _change(ctx, head, mods, routed, edits, related)


def _kind(scheme: QuantScheme | None) -> tuple[str, str] | None:
    return (scheme.format, scheme.label) if scheme else None


def _about(f: Finding, prefix: str) -> bool:
    where = f.location.tensor or f.location.param or ""
    return f.code.startswith("QS6") and prefix in where


def _change(
    ctx: FixContext,
    head: str,
    mods: list[ModuleQuant],
    routed: QuantScheme,
    list_edits: list[ConfigEdit],
    related: list[Finding],
) -> Change:
    weight_param = routed.weight_spec.param
    scale_dtype = _scale_dtype(ctx, head, routed)
    edits: list[Edit] = []
    for mq in mods:
        w = mq.module.tensors["weight"]
        n, k = w.shape
        packed = mq.module.tensor_name(weight_param)
        if weight_param != "weight":
            edits.append(DropTensor(w.name, w.file))
        edits.append(WriteTensor(packed, w.file, "U8", (n, k // 2), after=w.name))
        edits.append(
            WriteTensor(
                mq.module.tensor_name("weight_scale"),
                w.file,
                scale_dtype,
                (n, k // 32),
                after=packed if weight_param == "weight" else w.name,
            )
        )
    edits.extend(list_edits)
    return Change(
        fixer=NAME,
        title=f"Quantize the BF16 shared expert of `{head}` to {routed.label} like its routed"
        " experts, and drop it from the exclude/ignore list",
        applicability=Applicability.UNSAFE,
        edits=tuple(edits),
        resolves=tuple(related),
        compute=partial(
            _quantize,
            mods=tuple(m.module.name for m in mods),
            scheme=routed,
            weight_param=weight_param,
            scale_dtype=scale_dtype,
        ),
        detail="round-to-nearest OCP MXFP4 with the producer's exponent rule; lossy: the error"
        " of each tensor is reported",
    )


def _scale_dtype(ctx: FixContext, head: str, routed: QuantScheme) -> str:
    for n, t in ctx.checkpoint.tensors.items():
        if n.startswith(head + ".experts.") and n.endswith(".weight_scale"):
            return t.dtype
    return "U8"


def _quantize(
    src: TensorSource,
    *,
    mods: tuple[str, ...],
    scheme: QuantScheme,
    weight_param: str,
    scale_dtype: str,
) -> Computed:
    from qscale.fix.numerics import producer_of, quantize_mxfp4

    tensors, errors = {}, {}
    for m in mods:
        packed, scales, err = quantize_mxfp4(src.torch(f"{m}.weight"), producer=producer_of(scheme))
        tensors[f"{m}.{weight_param}"] = from_torch(packed, "U8")
        tensors[f"{m}.weight_scale"] = dataclasses.replace(
            from_torch(scales, "U8"), dtype=scale_dtype
        )
        errors[f"{m}.{weight_param}"] = error_fields(err)
    return Computed(tensors, errors)
