"""NVFP4 global scales of fused shards unified by rescaling block scales (unsafe; QS403).

vLLM keeps one global scale per fused layer (the maximum multiplier) and does not touch the
FP8 block scales, so a shard whose own global scale differs is dequantized off by the ratio.
This fix gives every shard of the layer (or both halves, w1 and w3, of each fused-MoE expert)
the same global scale and rescales its FP8 E4M3 block scales so that block × global is what it
was, up to FP8 rounding (:func:`qscale.fix.numerics.unify_nvfp4_global_scales`; the common
scale is chosen so that no block scale grows past 448). The packed FP4 weights are untouched;
the error of each shard's dequantized weights is reported.
"""

from __future__ import annotations

from collections.abc import Iterator
from functools import partial
from typing import TYPE_CHECKING, Literal

from qscale.engines.loader import MergedParam
from qscale.findings import Applicability, Finding
from qscale.fix.context import FixContext
from qscale.fix.model import Change, Computed, Refusal, TensorData, WriteTensor, error_fields
from qscale.fix.tensors import TensorSource, from_torch, torch_dtype

if TYPE_CHECKING:
    import torch

NAME = "nvfp4-global-scale"
#: global-scale leaf -> (convention, name of the same scale on a module)
LEAVES = {"weight_global_scale": "divisor", "weight_scale_2": "multiplier"}


def _groups(p: MergedParam) -> list[list[str]]:
    """Modules whose global scales must agree: every shard, or each expert's w1 and w3."""
    if p.sources[0].expert is None:
        return [[s.source.rpartition(".")[0] for s in p.sources]]
    by_expert: dict[int, list[str]] = {}
    for s in p.sources:
        by_expert.setdefault(s.expert or 0, []).append(s.source.rpartition(".")[0])
    return [g for _e, g in sorted(by_expert.items()) if len(g) > 1]


def plan(ctx: FixContext) -> Iterator[Change | Refusal]:
    """One unsafe change per QS403 finding on an NVFP4 weight global scale."""
    if ctx.plan is None:
        return
    for f in ctx.findings("QS403"):
        p = ctx.plan.params.get(f.location.param or "")
        leaf = p.leaf.removeprefix("w13_").removeprefix("w2_") if p else ""
        if p is not None and p.leaf == "_weight_act_pre_scale":
            yield Refusal(
                f,
                "torchao AWQ pre-scales are folded into the int4 weights (scaled by their"
                " inverse before quantizing): one per fused layer needs a re-quantization,"
                " which is not modelled",
            )
            continue
        if p is not None and p.overwritten is not None:
            yield Refusal(
                f,
                "FP-Quant global scales have no block scales to move the ratio into: the FP4"
                " codes would have to be requantized with one scale, which is not modelled",
            )
            continue
        if p is None or leaf not in LEAVES:
            yield Refusal(
                f,
                "only NVFP4 weight global scales are unified (activation scales"
                " cannot be moved into the weights)",
            )
            continue
        groups = _groups(p)
        missing = [
            f"{m}.{n}"
            for g in groups
            for m in g
            for n in ("weight_scale", leaf)
            if f"{m}.{n}" not in ctx.checkpoint.tensors
        ]
        if missing or not groups:
            yield Refusal(f, f"`{missing[0] if missing else p.name}` is not stored")
            continue
        yield _change(ctx, f, p, groups, leaf)


def _change(
    ctx: FixContext, f: Finding, p: MergedParam, groups: list[list[str]], leaf: str
) -> Change:
    tensors = ctx.checkpoint.tensors
    writes = tuple(
        WriteTensor(t.name, t.file, t.dtype, t.shape)
        for g in groups
        for m in g
        for t in (tensors[f"{m}.weight_scale"], tensors[f"{m}.{leaf}"])
    )
    return Change(
        fixer=NAME,
        title=f"Unify the NVFP4 global scales of `{p.name.rpartition('.')[0]}`"
        f" ({len(groups)} group(s) of shards) and rescale their block scales",
        applicability=Applicability.UNSAFE,
        edits=writes,
        resolves=(f,),
        compute=partial(_unify, groups=tuple(map(tuple, groups)), leaf=leaf),
        detail="block × global is kept up to FP8 rounding of the rescaled block scales;"
        " the error of each shard's dequantized weights is reported",
    )


def _packed(src: TensorSource, module: str) -> torch.Tensor:
    name = f"{module}.weight_packed"
    return src.torch(name if name in src.ckpt.tensors else f"{module}.weight")


def _scalar(value: float, dtype: str, shape: tuple[int, ...], name: str) -> TensorData:
    """``value`` stored as ``dtype`` (it must be exact: it is one of the stored scales)."""
    import torch

    t = torch.tensor(value, dtype=torch.float64).to(torch_dtype(dtype))
    if float(t) != value:
        raise ValueError(f"`{name}`: {value} is not exact in {dtype}")
    return from_torch(t.reshape(shape), dtype)


def _unify(src: TensorSource, *, groups: tuple[tuple[str, ...], ...], leaf: str) -> Computed:
    from qscale.fix.numerics import unify_nvfp4_global_scales

    convention: Literal["divisor", "multiplier"] = (
        "divisor" if LEAVES[leaf] == "divisor" else "multiplier"
    )
    out: dict[str, TensorData] = {}
    errors: dict[str, dict[str, float]] = {}
    for g in groups:
        blocks = [src.torch(f"{m}.weight_scale") for m in g]
        gscales = [float(src.array(f"{m}.{leaf}").reshape(-1)[0]) for m in g]
        _, common, _ = unify_nvfp4_global_scales(blocks, gscales, convention=convention)
        for m, bs, gs in zip(g, blocks, gscales, strict=True):
            new, _, err = unify_nvfp4_global_scales(
                [bs], [gs], convention=convention, common=common, packed=[_packed(src, m)]
            )
            out[f"{m}.weight_scale"] = from_torch(new[0], "F8_E4M3")
            info = src.info(f"{m}.{leaf}")
            out[info.name] = _scalar(common, info.dtype, info.shape, info.name)
            errors[f"{m}.weight_scale"] = error_fields(err)
    return Computed(out, errors)
