"""A GPTQ `g_idx` is out of range, or not the plain grouping where the engine ignores it.

## What it checks
Every GPTQ `g_idx` tensor (int32, one entry per input feature: the quantization group of that
input), read in full: 4 bytes per input feature, a few kilobytes per module, read also under
`--header-only` (a checkpoint without GPTQ modules reads nothing):

- every value lies in `[0, in_features / group_size)`;
- where the engine builds the module without act order, `g_idx[i] == i // group_size` for every
  `i`. That is every module unless the config says `desc_act: true` with a group size and the
  release still builds act order (vLLM ≤ 0.29; 0.30 refuses it, QS101);
- where the engine builds act order, each group index appears exactly `group_size` times.

## Why it matters
vLLM reads `g_idx` only for act order. Otherwise it empties the tensor after loading (0.18–0.29,
`gptq.py` / `gptq_marlin.py`) or drops it on load (0.30 on), and dequantizes input `i` with
group `i // group_size`. A checkpoint quantized with act order but exported with
`desc_act: false` (or whose `g_idx` was rewritten) loads without a message and computes wrong
outputs: every input feature is scaled by another group's scale. An out-of-range index under
act order reads past the scales.

## Example
`model.layers.0.self_attn.q_proj.g_idx`: 192 of 256 inputs are not in group `i // 64`
(first: g_idx[1] = 2, expected 0), and the config has `desc_act: false`: the engine ignores
g_idx and uses groups `i // 64`, so this module's outputs are silently wrong

## Fix
If the weights were quantized with act order, say so (`desc_act: true`) and deploy on a
release that builds act order (vLLM ≤ 0.29), or re-quantize with static act order
(GPTQModel `act_group_aware`, or `desc_act: false`). An out-of-range `g_idx` is a corrupt
export: re-export the module.
"""

from collections.abc import Iterator
from typing import TYPE_CHECKING, cast

import numpy as np

from qscale.formats._api import loaded_instance
from qscale.rules._api import Applicability, Context, Finding, Fix, ModuleQuant, Rule, Severity

if TYPE_CHECKING:
    from qscale.formats.gptq import WNA16Config

#: the scheme format of GPTQ checkpoints (qscale.formats.gptq.GPTQ; tests hold the two together)
GPTQ = "gptq"


def _expected(n: int, group: int | None) -> np.ndarray:
    return np.arange(n, dtype=np.int64) // (group or n)


def _judge(mq: ModuleQuant, arr: np.ndarray, act_order: bool, desc: str) -> str | None:
    """What is wrong with one module's ``g_idx`` (None: nothing)."""
    scheme, shape = mq.scheme, mq.logical_shape
    assert scheme is not None and shape is not None
    name = mq.module.tensor_name("g_idx")
    inp = shape[1]
    group = scheme.weights.group_size
    groups = 1 if not group else inp // group
    if arr.dtype.kind not in "iu":
        return f"`{name}` is {arr.dtype}; the engine loads it as int32 group indices"
    if arr.shape != (inp,):
        return (f"`{name}` has shape {tuple(arr.shape)}; expected ({inp},), one group index"
                f" per input feature")
    v = arr.astype(np.int64)
    out = np.flatnonzero((v < 0) | (v >= groups))
    if out.size:
        i = int(out[0])
        return (f"`{name}`: {out.size} of {inp} group indices outside [0, {groups})"
                f" (first: g_idx[{i}] = {int(v[i])}); {inp} inputs in groups of"
                f" {group or inp} make {groups} groups")
    if act_order:
        counts = np.bincount(v, minlength=groups)
        bad = np.flatnonzero(counts != (group or inp))
        if bad.size:
            k = int(bad[0])
            return (f"`{name}`: group {k} holds {int(counts[k])} inputs, expected"
                    f" {group or inp}; act order needs every group index exactly"
                    f" {group or inp} times")
        return None
    wrong = np.flatnonzero(v != _expected(inp, group))
    if not wrong.size:
        return None
    i = int(wrong[0])
    return (f"`{name}`: {wrong.size} of {inp} inputs are not in group `i // {group or inp}`"
            f" (first: g_idx[{i}] = {int(v[i])}, expected {i // (group or inp)}), and {desc}:"
            f" the engine ignores g_idx and uses groups `i // {group or inp}`, so this"
            " module's outputs are silently wrong")


def _with_g_idx(mq: ModuleQuant) -> bool:
    s = mq.scheme
    return (s is not None and s.format == GPTQ and "g_idx" in mq.module.tensors
            and mq.logical_shape is not None)


def check(ctx: Context) -> Iterator[Finding]:
    """Report GPTQ ``g_idx`` tensors the engine would misread or ignore."""
    ckpt = ctx.checkpoint
    fmt = cast("WNA16Config | None", loaded_instance(ctx.quant.format, "gptq", "WNA16Config"))
    todo: list[tuple[ModuleQuant, bool]] = []
    # no weight to size it by (no logical shape): QS201/QS302 report the module
    for mq in ctx.quant.where(_with_g_idx):
        act = fmt is not None and fmt.act_order(mq.module.name, ctx.engine)
        todo.append((mq, act))
    if not todo:
        return
    names = [mq.module.tensor_name("g_idx") for mq, _ in todo]
    values = {n: v for n in names if (v := ckpt.value(n)) is not None}
    missing = [n for n in names if n not in values]
    if missing:
        values.update(ckpt.read_values(missing))
    if fmt is None:
        other = ctx.quant.format
        desc = f"{other.method if other else 'the'} config has no act order"
    elif fmt.desc_act:
        desc = "this module is built without act order (desc_act with group_size -1, or a"
        desc += " `dynamic` override)"
    else:
        desc = "the config has `desc_act: false`"
    for mq, act in todo:
        name = mq.module.tensor_name("g_idx")
        why = _judge(mq, values[name], act, desc)
        if why is not None:
            yield RULE.finding(why, ctx.at(name), fix=FIX)


FIX = Fix(
    "if the weights were quantized with act order, set `desc_act: true` and deploy on vLLM"
    " <= 0.29, or re-quantize with static act order; an out-of-range g_idx is a corrupt"
    " export: re-export the module",
    Applicability.MANUAL,
)

RULE = Rule(
    code="QS304",
    name="group-index-mismatch",
    severity=Severity.ERROR,
    doc=__doc__ or "",
    check=check,
    reads_values=True,
)
