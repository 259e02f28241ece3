"""Simulate the engine's ``process_weights_after_loading`` over the loaded scale slots.

Loading fills one slot per partition; processing then collapses the slots into the one scale
the kernel uses. What each partition ends up dequantized with decides whether a slot the loader
left unfilled is harmless or ruins the layer. The step per scale name is profile data
(:data:`qscale.engines.profiles.VLLM_POST_LOAD`):

- FP8 per-tensor ``weight_scale`` (vLLM ``requantize_with_max_scale``): when the last slot
  holds a real scale (``> finfo(float8_e4m3fn).min``), every partition is dequantized with its
  own slot and requantized with the maximum — a slot still at −3.4e38 turns its partition into
  ±inf (NaN where the weight is 0); otherwise the module counts as fused on disk and every
  partition is used with the maximum as is;
- static input scales: the maximum (coarser activations, still correct);
- NVFP4 global scales (compressed-tensors divisors, ModelOpt multipliers): the maximum, with no
  requantization of the block scales — a partition whose global scale differs is dequantized
  wrongly by the ratio;
- fused-MoE ``w13`` global scales ``[E, 2]``: w1's column serves w3 too;
- SGLang DeepSeek ``fused_qkv_a_proj_with_mqa``: the loader already kept ``q_a_proj``'s 0-d
  scale for both shards (``MergedParam.shard_values`` holds each shard's own);
- vLLM FP-Quant global scales (``[1]`` parameters without ``output_dim``): the loader already
  kept the value of the shard it loaded last (``MergedParam.overwritten``).
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass
from enum import Enum

from qscale.engines.loader import LoadPlan, MergedParam, Slot, is_sentinel
from qscale.engines.profiles import FP8_E4M3_MIN, PostLoad


class Effect(str, Enum):
    """What processing does to one partition."""

    EXACT = "exact"  #: used with its own scale
    REQUANTIZED = "requantized"  #: rescaled to a larger common scale (lossy, correct)
    WRONG_SCALE = "wrong-scale"  #: dequantized with another partition's scale, no requantization
    CORRUPT = "corrupt"  #: dequantized with the FP8 sentinel: ±inf, NaN for zero weights
    UNINITIALISED = "uninitialised"  #: the scale comes from memory no loader wrote
    #: the slot was never written, and it does not matter: activations (one input shared by
    #: every partition) are quantized with the maximum of the written slots
    IGNORED = "ignored"


@dataclass(frozen=True, slots=True)
class PartitionOutcome:
    """One partition (or expert column) after processing."""

    index: int
    loaded: Slot  #: the slot value after loading
    used: Slot  #: the scale the partition is dequantized with after processing
    effect: Effect

    @property
    def ratio(self) -> float | None:
        """How processing scales this partition's weights: 1.0 when exact.

        ``used / loaded``, in multiplier space (divisors are inverted when the outcome is
        built), so a ratio below 1 always means "values come out smaller than stored".
        """
        if self.loaded is None or self.used is None or self.loaded == 0:
            return None
        if is_sentinel(self.loaded) or is_sentinel(self.used):
            return None
        if not (math.isfinite(self.loaded) and math.isfinite(self.used)):
            return None
        return self.used / self.loaded


@dataclass(frozen=True, slots=True)
class Processed:
    """A per-tensor scale parameter after processing."""

    param: MergedParam
    step: PostLoad
    result: Slot  #: the scale the kernel gets (per layer; per expert for requantize-max)
    partitions: tuple[PartitionOutcome, ...]

    def harmful(self) -> tuple[PartitionOutcome, ...]:
        """Partitions that come out wrong (not merely requantized)."""
        bad = (Effect.WRONG_SCALE, Effect.CORRUPT, Effect.UNINITIALISED)
        return tuple(p for p in self.partitions if p.effect in bad)


def _max(slots: tuple[Slot, ...]) -> Slot:
    if any(v is None for v in slots):
        return None  # torch.empty memory takes part in the max
    return max(v for v in slots if v is not None)


def _outcome(i: int, loaded: Slot, used: Slot, step: PostLoad) -> PartitionOutcome:
    if used is None or (loaded is None and step == PostLoad.REQUANTIZE_MAX):
        return PartitionOutcome(i, loaded, used, Effect.UNINITIALISED)
    if is_sentinel(used) or (step == PostLoad.REQUANTIZE_MAX and is_sentinel(loaded)):
        return PartitionOutcome(i, loaded, used, Effect.CORRUPT)  # dequantized with −3.4e38
    if loaded is None or is_sentinel(loaded):
        # the partition's own scale never arrived: activations (one input shared by every
        # partition) lose nothing; weights are used with another partition's scale
        effect = Effect.IGNORED if step.requantizes else Effect.WRONG_SCALE
        return PartitionOutcome(i, loaded, used, effect)
    if loaded == used:
        return PartitionOutcome(i, loaded, used, Effect.EXACT)
    if step.divisor and loaded > 0 and used > 0:
        loaded, used = 1.0 / loaded, 1.0 / used  # dequantization multiplies by 1 / global
    effect = Effect.REQUANTIZED if step.requantizes else Effect.WRONG_SCALE
    return PartitionOutcome(i, loaded, used, effect)


def _collapse(slots: tuple[Slot, ...], step: PostLoad) -> tuple[Slot, list[PartitionOutcome]]:
    top = _max(slots)
    if step == PostLoad.REQUANTIZE_MAX:
        last = slots[-1]
        if last is None or last <= FP8_E4M3_MIN:
            step = PostLoad.WEIGHT_MAX  # "fused on disk": used with the max, not requantized
    return top, [_outcome(i, v, top, step) for i, v in enumerate(slots)]


def process_param(param: MergedParam, step: PostLoad) -> Processed | None:
    """Simulate one parameter's processing; None when it has no slots to collapse."""
    slots = param.slots
    if slots is None or len(slots) < 2:
        return None
    if param.sources[0].expert is not None and step in (
        PostLoad.REQUANTIZE_MAX,
        PostLoad.WEIGHT_FIRST_COLUMN,
    ):
        if len(slots) % 2:
            return None  # one column per expert: nothing collapses
        outs: list[PartitionOutcome] = []
        for e in range(len(slots) // 2):
            w1, w3 = slots[2 * e], slots[2 * e + 1]
            if step == PostLoad.WEIGHT_FIRST_COLUMN:
                row = [_outcome(0, w1, w1, step), _outcome(1, w3, w1, step)]
            else:
                row = _collapse((w1, w3), step)[1]
            outs += [PartitionOutcome(2 * e + p.index, p.loaded, p.used, p.effect) for p in row]
        return Processed(param, step, None, tuple(outs))
    if step == PostLoad.WEIGHT_FIRST_COLUMN:
        return None
    top, outs = _collapse(slots, step)
    return Processed(param, step, top, tuple(outs))


def _first_shard(param: MergedParam) -> Processed | None:
    """A parameter whose loader kept one shard's scale for every shard (``shard_values``:
    the first shard's, concatenated; or, ``overwritten``, the shard loaded last)."""
    own, slots = param.shard_values, param.slots
    if own is None or not slots or len(own) < 2:
        return None
    step = step_for_kept(param)
    kept = slots[0]
    return Processed(
        param, step, kept, tuple(_outcome(i, v, kept, step) for i, v in enumerate(own))
    )


def step_for_kept(param: MergedParam) -> PostLoad:
    """The step of a parameter whose loader kept one shard's scale (``shard_values``)."""
    if param.overwritten is not None:
        return (PostLoad.ACT_LAST_LOADED_DIVISOR if param.overwritten == "act"
                else PostLoad.WEIGHT_LAST_LOADED_DIVISOR)
    return (PostLoad.ACT_FIRST_SHARD if param.leaf.endswith("input_scale")
            else PostLoad.WEIGHT_FIRST_SHARD)


def step_for(plan: LoadPlan, param: MergedParam) -> PostLoad | None:
    """The profile's processing step for this parameter's scale leaf, if modelled."""
    if param.shard_values is not None:
        return step_for_kept(param)
    table = plan.engine.profile.post_load
    return None if table is None else table.get(param.leaf)


def process(plan: LoadPlan) -> Iterator[Processed]:
    """Every per-tensor scale parameter of the plan, after processing (layers the engine
    refuses to load are left out: they never get that far)."""
    refused = {p.name.rpartition(".")[0] for p in plan.params.values() if p.errors}
    for p in plan.params.values():
        step = step_for(plan, p)
        if step is None or p.name.rpartition(".")[0] in refused:
            continue
        done = _first_shard(p) if p.shard_values is not None else process_param(p, step)
        if done is not None:
            yield done
