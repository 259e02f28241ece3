"""Static input scales of a concatenated fused layer stored as 0-d scalars (QS402, SGLang).

SGLang loads DeepSeek's ``q_a_proj`` and ``kv_a_proj_with_mqa`` into one ``ReplicatedLinear``
(``fused_qkv_a_proj_with_mqa``) from their concatenated tensors. Two ``[1]`` input scales become
a ``[2]`` tensor that its loader refuses; two 0-d ones load, and the first is kept. Both shards
read the same hidden state, so calibrators give them the same input scale: stored as 0-d with
the same bytes, nothing changes for any engine (vLLM reshapes 0-d scales itself), and the fix is
safe. When the two differ, both get the larger one — activations are quantized more coarsely,
never clipped — and the fix is unsafe.
"""

from __future__ import annotations

from collections.abc import Iterator
from functools import partial

from qscale.findings import Applicability
from qscale.fix.channel_scale import concatenated
from qscale.fix.context import FixContext
from qscale.fix.model import Change, Computed, Refusal, TensorData, WriteTensor
from qscale.fix.tensors import TensorSource

NAME = "scalar-input-scale"


def plan(ctx: FixContext) -> Iterator[Change | Refusal]:
    """One change per refused input-scale parameter of a concatenated layer."""
    if ctx.plan is None:
        return
    for f in ctx.findings("QS402"):
        p = ctx.plan.params.get(f.location.param or "")
        if p is None or p.leaf != "input_scale" or not concatenated(ctx, p):
            continue
        infos = [ctx.checkpoint.tensors[s.source] for s in p.sources]
        if any(t.numel != 1 for t in infos) or len({t.dtype for t in infos}) != 1:
            yield Refusal(f, "the input scales are not single values of one dtype")
            continue
        values = [ctx.checkpoint.value(t.name) for t in infos]
        if any(v is None for v in values):
            yield Refusal(f, "an input scale could not be read")
            continue
        floats = [float(v.reshape(-1)[0]) for v in values if v is not None]
        keep = infos[max(range(len(infos)), key=floats.__getitem__)]
        same = len(set(floats)) == 1
        yield Change(
            fixer=NAME,
            title=f"Store the input scales of `{p.name.rpartition('.')[0]}` as 0-d scalars"
            + ("" if same else f" equal to the larger one ({max(floats):.6g})"),
            applicability=Applicability.SAFE if same else Applicability.UNSAFE,
            edits=tuple(WriteTensor(t.name, t.file, t.dtype, ()) for t in infos),
            resolves=(f,),
            compute=partial(_scalars, names=tuple(t.name for t in infos), keep=keep.name),
            detail="same bytes, one element each: every engine reads the same scale"
            if same
            else "the smaller shard's activations are quantized with a coarser step",
        )


def _scalars(src: TensorSource, *, names: tuple[str, ...], keep: str) -> Computed:
    dtype, raw = src.info(keep).dtype, src.raw(keep)
    return Computed({n: TensorData(dtype, (), raw) for n in names})
