"""Per-tensor FP8 weight scales of a fused layer, rewritten per channel (seed 002; SGLang DeepSeek).

vLLM 0.18.0–0.19.1 load the per-tensor scale of Qwen3.5's ``in_proj_qkv`` (tuple shard id
``(0, 1, 2)``) into slot 0 of ``in_proj_qkvz.weight_scale`` only (QS401). A per-channel scale
is a ``ChannelQuantScaleParameter``, loaded row by row through the tuple path, which every
version with tuple shard ids handles. So every shard of the fused layer (``in_proj_qkv`` *and*
``in_proj_z``: vLLM builds one scheme per fused layer) gets its scalar repeated into an
``[out, 1]`` tensor of the same dtype — the same bytes, so each row dequantizes exactly as the
partition did — and a compressed-tensors config group with the channel weight strategy (the
original input activations kept) is added for those modules.

The same rewrite serves SGLang's DeepSeek ``fused_qkv_a_proj_with_mqa``, which concatenates the
``q_a_proj`` and ``kv_a_proj_with_mqa`` tensors: 1-element per-tensor scales cannot be loaded
that way (QS402), and 0-d ones keep ``q_a_proj``'s alone (QS403); ``[out, 1]`` scales
concatenate row by row into the parameter's ``[q_lora_rank + kv_lora_rank + rope, 1]``.

The group's targets are anchored ``re:`` patterns naming the engine's fused module and the
checkpoint's shard modules. vLLM (0.19: name, class, fused name; 0.20+: name, fused name,
class) tries layer names before the class name ``Linear``, and does not rewrite regexes
through its name mapper; compressed-tensors ranks name matches above class matches too.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from functools import partial
from typing import Any

from qscale.engines.loader import MergedParam
from qscale.findings import Applicability, Finding
from qscale.fix.context import FixContext
from qscale.fix.model import (
    Change,
    Computed,
    ConfigAction,
    ConfigEdit,
    Edit,
    Refusal,
    TensorData,
    WriteTensor,
)
from qscale.fix.tensors import TensorSource
from qscale.formats import ModuleQuant
from qscale.formats.compressed_tensors import CompressedTensorsConfig
from qscale.formats.fp8 import Fp8Config
from qscale.formats.modelopt import ModelOptConfig
from qscale.schemes import Strategy

NAME = "per-channel-scale"
GROUP_SUFFIX = "_qscale_channel"

_REFUSE = {
    Fp8Config: "`quant_method: fp8` has no per-channel weight scale in vLLM's Fp8Config",
    ModelOptConfig: "ModelOpt has no static per-channel FP8 weight scheme"
    " (FP8_PER_CHANNEL_PER_TOKEN quantizes activations per token, which changes the model)",
}


def concatenated(ctx: FixContext, p: MergedParam) -> bool:
    """Whether the engine loads ``p`` from its shards concatenated (SGLang DeepSeek
    ``fused_qkv_a_proj_with_mqa``), where per-channel scales join row by row."""
    assert ctx.plan is not None
    return p.name.rpartition(".")[0].rpartition(".")[2] in ctx.plan.family.concatenated


def _anchored(name: str) -> str:
    return "re:" + re.escape(name) + "$"


def _modules(ctx: FixContext, p: MergedParam) -> list[ModuleQuant] | str:
    """The shard modules of a fused layer, or why their scales cannot be rewritten."""
    out = []
    for s in p.sources:
        mq = ctx.quant.modules.get(s.source.rpartition(".")[0])
        scheme = mq.scheme if mq else None
        if mq is None or scheme is None:
            return f"`{s.source}` belongs to no quantized module"
        w = scheme.weights
        if (w.type, w.num_bits, w.strategy) != ("float", 8, Strategy.TENSOR):
            return f"`{mq.module.name}` is {scheme.label}, not FP8 with per-tensor weight scales"
        ws, wt = mq.module.tensors.get("weight_scale"), mq.module.tensors.get("weight")
        if ws is None or ws.numel != 1 or wt is None or len(wt.shape) != 2:
            return f"`{mq.module.name}` has no scalar `weight_scale` beside a 2-D `weight`"
        out.append(mq)
    return out


def _group_of(fmt: CompressedTensorsConfig, mq: ModuleQuant) -> str | None:
    return next((g.name for g in fmt.groups if g.scheme is mq.scheme), None)


def plan(ctx: FixContext) -> Iterator[Change | Refusal]:
    """One change per original config group: the scales of every affected fused layer, and one
    new per-channel group naming them."""
    if ctx.plan is None:
        return
    fmt = ctx.quant.format
    by_group: dict[str, list[tuple[Finding, MergedParam, list[ModuleQuant]]]] = {}
    for f in ctx.findings("QS401", "QS402", "QS403"):
        p = ctx.plan.params.get(f.location.param or "")
        if p is None or p.leaf != "weight_scale":
            continue
        if f.code != "QS401" and not concatenated(ctx, p):
            continue  # other refusals and NVFP4 global scales are not per-tensor FP8 scales
        if not isinstance(fmt, CompressedTensorsConfig):
            why = next((v for k, v in _REFUSE.items() if isinstance(fmt, k)), None)
            method = fmt.method if fmt else "no quantization config"
            yield Refusal(
                f,
                f"{why or method + ': per-channel rewrite not modelled'};"
                " use vLLM >= 0.20.0, or re-export with per-channel weight scales",
            )
            continue
        mods = _modules(ctx, p)
        group = _group_of(fmt, mods[0]) if isinstance(mods, list) else None
        if isinstance(mods, str) or group is None:
            yield Refusal(f, mods if isinstance(mods, str) else "its config group is not found")
            continue
        by_group.setdefault(group, []).append((f, p, mods))
    ref = ctx.quant_config()
    assert ref is not None or not by_group
    for group, items in by_group.items():
        assert ref is not None
        yield _change(ctx, ref.raw, ref.file, ref.at("config_groups"), group, items)


def _change(
    ctx: FixContext,
    qc: Any,
    file: str,
    groups_ptr: str,
    group: str,
    items: list[tuple[Finding, MergedParam, list[ModuleQuant]]],
) -> Change:
    raw = qc["config_groups"][group]
    targets: list[str] = []
    edits: list[Edit] = []
    for _f, p, mods in items:
        targets.append(_anchored(p.name.rpartition(".")[0]))
        for mq in mods:
            targets.append(_anchored(mq.module.name))
            ws, w = mq.module.tensors["weight_scale"], mq.module.tensors["weight"]
            edits.append(WriteTensor(ws.name, ws.file, ws.dtype, (w.shape[0], 1)))
    new_name = group + GROUP_SUFFIX
    while new_name in qc["config_groups"]:
        new_name += "_"
    new_group = {
        "targets": targets,
        "weights": {**raw["weights"], "strategy": "channel", "group_size": None},
        "input_activations": raw.get("input_activations"),
        "output_activations": raw.get("output_activations"),
        "format": raw.get("format") or qc.get("format") or "float-quantized",
    }
    edits.append(ConfigEdit(file, f"{groups_ptr}/{new_name}", ConfigAction.SET, new_group))
    layers = [p.name.rpartition(".")[0] for _f, p, _m in items]
    return Change(
        fixer=NAME,
        title=f"Rewrite the per-tensor FP8 weight scales of {len(layers)} fused layer(s)"
        f" ({_short(layers)}) as per-channel scales with identical values, in config group"
        f" `{new_name}`",
        applicability=Applicability.SAFE,
        edits=tuple(edits),
        resolves=tuple(f for f, _p, _m in items),
        compute=partial(
            repeat_scalar, writes=tuple(e for e in edits if isinstance(e, WriteTensor))
        ),
        detail="each row's scale is the shard's scalar, byte for byte: fp8 × row scale equals"
        " fp8 × per-tensor scale exactly",
    )


def _short(names: list[str]) -> str:
    head = ", ".join(f"`{n}`" for n in names[:2])
    return head + (f" and {len(names) - 2} more" if len(names) > 2 else "")


def repeat_scalar(src: TensorSource, writes: tuple[WriteTensor, ...]) -> Computed:
    """Each scalar scale repeated into its ``[out, 1]`` tensor, bytes unchanged."""
    out = {}
    for w in writes:
        raw = src.raw(w.name)
        out[w.name] = TensorData(w.dtype, w.shape, raw * w.shape[0])
    return Computed(out)
