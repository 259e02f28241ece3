"""The engine profile table. Every row cites what it was read from (docs/engine-loader-facts).

vLLM ``MergedColumnParallelLinear.weight_loader_v2`` and friends, per release:
- < 0.18: no tuple shard ids (PR #35289 added them in 0.18.0);
- 0.18.0–0.19.1: a tuple shard id on a ``PerTensorScaleParameter`` loads ``shard_id=0`` only
  (PR #38517 fixed it in 0.20.0);
- ≥ 0.20.0: every index of the tuple is filled; ``shard_id=None`` fills every slot.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

INF_VERSION = (10**6,)
FP8_SENTINEL = -3.4028234663852886e38  #: torch.finfo(torch.float32).min
#: vLLM's ModelOpt loader: "ModelOpt currently only supports: ..." (seen refusing MXFP4 in real
#: vLLM 0.19.1, 0.20.0 and 0.32.0)
VLLM_MODELOPT_ALGOS = frozenset(
    {
        "FP8",
        "FP8_PER_CHANNEL_PER_TOKEN",
        "FP8_PB_WO",
        "NVFP4",
        "W4A16_NVFP4",
        "MXFP8",
        "MIXED_PRECISION",
    }
)


class TupleScale(str, Enum):
    """What a tuple shard id does to a per-tensor scale."""

    UNSUPPORTED = "unsupported"  #: the loader rejects tuple shard ids
    FIRST_SLOT = "first-slot"  #: only slot 0 is written (vLLM 0.18.0–0.19.1)
    ALL_SLOTS = "all-slots"  #: every index of the tuple is written
    SPLIT = "split"  #: SGLang: a 1-element scale is broadcast, an N-element one split


@dataclass(frozen=True, slots=True)
class EngineProfile:
    """Loader behaviour of one engine over a version range [low, high)."""

    engine: str
    low: tuple[int, ...]
    high: tuple[int, ...]
    tuple_scale: TupleScale
    #: vLLM matches stacked names as plain substrings; SGLang appends "." to both sides
    dotted_stacked: bool
    #: a per-tensor scale with more than one element on an int/q/k/v shard: "assert" or "split"
    vector_scale: str
    #: initial value of FP8 per-tensor weight scales (None: uninitialised memory)
    fp8_weight_scale_init: float | None
    #: initial value of FP8 static input scales
    fp8_input_scale_init: float | None
    #: prefix of fused-MoE parameters under ``mlp.experts``
    expert_prefix: str = "experts."
    #: ModelOpt ``quant_algo`` values the engine loads (None: not modelled)
    modelopt_algos: frozenset[str] | None = VLLM_MODELOPT_ALGOS
    references: tuple[str, ...] = ()

    @property
    def range_label(self) -> str:
        """``0.18.0–0.19.x`` style."""
        lo = ".".join(map(str, self.low))
        if self.high == INF_VERSION:
            return f">={lo}"
        return f">={lo},<{'.'.join(map(str, self.high))}"


PROFILES: tuple[EngineProfile, ...] = (
    EngineProfile(
        "vllm",
        (0,),
        (0, 18),
        TupleScale.UNSUPPORTED,
        False,
        "assert",
        FP8_SENTINEL,
        FP8_SENTINEL,
        references=("vLLM PR #35289",),
    ),
    EngineProfile(
        "vllm",
        (0, 18),
        (0, 20),
        TupleScale.FIRST_SLOT,
        False,
        "assert",
        FP8_SENTINEL,
        FP8_SENTINEL,
        references=("vLLM PR #38517", "vLLM issue #38197"),
    ),
    EngineProfile(
        "vllm",
        (0, 20),
        (0, 22),
        TupleScale.ALL_SLOTS,
        False,
        "assert",
        FP8_SENTINEL,
        FP8_SENTINEL,
        references=("vLLM PR #38517",),
    ),
    # Fused-MoE parameters moved under `experts.routed_experts.` (RoutedExperts) somewhere
    # between 0.21.0 (seen: `experts.w13_*`) and 0.32.0 (seen in real loads); the exact release
    # is not pinned. Newest release read: 0.33.0; later versions map here with an info note.
    EngineProfile(
        "vllm",
        (0, 22),
        (0, 34),
        TupleScale.ALL_SLOTS,
        False,
        "assert",
        FP8_SENTINEL,
        FP8_SENTINEL,
        expert_prefix="experts.routed_experts.",
        references=("vLLM PR #38517",),
    ),
    EngineProfile(
        "sglang",
        (0,),
        (0, 5, 24),
        TupleScale.SPLIT,
        True,
        "split",
        FP8_SENTINEL,
        FP8_SENTINEL,
        modelopt_algos=None,
    ),
)
