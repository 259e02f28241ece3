"""The engine profile table. Every row cites what it was read from (docs/engine-loader-facts).

vLLM ``MergedColumnParallelLinear.weight_loader_v2`` and friends, per release:
- < 0.18: no tuple shard ids (PR #35289 added them in 0.18.0);
- 0.18.0–0.19.1: a tuple shard id on a ``PerTensorScaleParameter`` loads ``shard_id=0`` only
  (PR #38517 fixed it in 0.20.0);
- ≥ 0.20.0: every index of the tuple is filled; ``shard_id=None`` fills every slot.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from enum import Enum

INF_VERSION = (10**6,)
FP8_SENTINEL = -3.4028234663852886e38  #: torch.finfo(torch.float32).min
FP8_E4M3_MIN = -448.0  #: torch.finfo(torch.float8_e4m3fn).min
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


class PostLoad(str, Enum):
    """How ``process_weights_after_loading`` collapses a per-tensor scale's slots."""

    #: FP8 weights: each partition dequantized with its slot, requantized with the max
    #: (skipped, "fused on disk", when the last slot is still the sentinel)
    REQUANTIZE_MAX = "requantize-max"
    ACT_MAX = "activation-max"  #: activations quantized with the max: coarser, still correct
    ACT_MAX_DIVISOR = "activation-max-divisor"  #: the same for a divisor (1 / max)
    WEIGHT_MAX = "weight-max"  #: weights used with the max multiplier, no requantization
    WEIGHT_MAX_DIVISOR = "weight-max-divisor"  #: weights used with 1 / max, no requantization
    WEIGHT_FIRST_COLUMN = "weight-first-column"  #: fused MoE w13: w1's column serves w3 too
    #: loading already kept one scale for all shards: the loader concatenates the shards and,
    #: for 0-d scales, loads the first shard's alone (SGLang DeepSeek
    #: ``fused_qkv_a_proj_with_mqa``); weights are used with it, not requantized
    WEIGHT_FIRST_SHARD = "weight-first-shard"
    ACT_FIRST_SHARD = "activation-first-shard"  #: the same for static input scales
    #: loading kept one value for all shards: the parameter has no ``output_dim``, so the
    #: merged layer's loader copies each shard's ``[1]`` tensor over the whole parameter and
    #: the shard loaded last stays (vLLM FP-Quant ``weight_global_scale``); weights are used
    #: with 1 / it, not requantized
    WEIGHT_LAST_LOADED_DIVISOR = "weight-last-loaded-divisor"
    #: the same for a divisor the activations are quantized and dequantized with (FP-Quant
    #: NVFP4 ``act_global_scale``: one input, one scale, still correct)
    ACT_LAST_LOADED_DIVISOR = "activation-last-loaded-divisor"

    @property
    def requantizes(self) -> bool:
        """Whether partitions that differ from the common scale stay correct (lossy)."""
        return self in (
            PostLoad.REQUANTIZE_MAX,
            PostLoad.ACT_MAX,
            PostLoad.ACT_MAX_DIVISOR,
            PostLoad.ACT_FIRST_SHARD,  # one input, quantized and dequantized with one scale
            PostLoad.ACT_LAST_LOADED_DIVISOR,
        )

    @property
    def divisor(self) -> bool:
        """Whether the stored scale divides (compressed-tensors NVFP4 global scales)."""
        return self in (PostLoad.ACT_MAX_DIVISOR, PostLoad.WEIGHT_MAX_DIVISOR,
                        PostLoad.WEIGHT_LAST_LOADED_DIVISOR, PostLoad.ACT_LAST_LOADED_DIVISOR)


#: Parameters vLLM creates and fills itself, never from a checkpoint tensor of that name:
#: attention KV-cache quantization parameters (``Attention.k_scale`` …; checkpoint spellings are
#: remapped onto them, see QS701) and GPTQ/Marlin act-order indices. Regexes on the full name.
VLLM_ENGINE_OWNED = (
    r"\.attn\.(q|k|v)_(scale|zero_point)$",
    r"\.attn\.prob_scale$",
    r"g_idx(_sort_indices)?$",
    # GPTQ MoE: vLLM 0.32.0/0.33.0 AutoGPTQMoEMethod.create_weights registers zero expert
    # biases for checkpoints that store none (seen in the real-vLLM AutoRound goldens)
    r"\.experts\.(routed_experts\.)?w(13|2)_bias$",
)

#: The text-only Qwen3.5-MoE class: real vLLM 0.19.1 and 0.20.0 fail before loading any weight
#: (seen on every real text-only checkpoint of the oracle set; 0.32.0 loads them).
QWEN3_5_TEXT_BROKEN = {
    "Qwen3_5MoeForCausalLM": "AttributeError: 'Qwen3_5MoeTextConfig' object has no attribute"
    " 'vision_config' (the text-only class reads the multimodal config)"
}

#: vLLM 0.18–0.33 ``process_weights_after_loading``, by engine parameter leaf (facts §4):
#: w8a8_utils.requantize_with_max_scale (CT W8A8-FP8, Fp8Config, Quark FP8, ModelOpt FP8 when
#: the slots differ); ``input_scale.max()``; CT NVFP4 ``1 / weight_global_scale.max()``;
#: ModelOpt NVFP4 ``weight_scale_2.max()``; fused-MoE ``w13_*[:, 0]`` with a warning
#: ("w1_weight_scale_2 must match w3_weight_scale_2").
VLLM_POST_LOAD: dict[str, PostLoad] = {
    "weight_scale": PostLoad.REQUANTIZE_MAX,
    "input_scale": PostLoad.ACT_MAX,
    "weight_global_scale": PostLoad.WEIGHT_MAX_DIVISOR,
    "input_global_scale": PostLoad.ACT_MAX_DIVISOR,
    "weight_scale_2": PostLoad.WEIGHT_MAX,
    "w13_weight_scale": PostLoad.REQUANTIZE_MAX,  # per expert: max(w1, w3)
    "w13_input_scale": PostLoad.ACT_MAX,  # per layer: max over experts
    "w2_input_scale": PostLoad.ACT_MAX,
    "w13_weight_global_scale": PostLoad.WEIGHT_FIRST_COLUMN,
    "w13_weight_scale_2": PostLoad.WEIGHT_FIRST_COLUMN,
}


@dataclass(frozen=True, slots=True)
class ExpertLoader:
    """A model class's own ``load_weights`` for MoE experts it expects fused per layer, as it
    treats per-expert checkpoint tensors (``….experts.<i>.<proj>.<leaf>``, the layout
    llm-compressor writes after linearizing the experts)."""

    function: str  #: the engine function that loads them, for messages
    #: suffix renames the class applies to every tensor name, in order, every one that matches
    renames: tuple[tuple[str, str], ...]
    #: branches for tensors fused over experts, first match wins: a renamed name containing
    #: the fragment goes there, and what the branch then does to a per-expert tensor
    lookups: tuple[tuple[str, str], ...]
    #: renamed leaves (``w2_bias``) first loaded expert by expert into the fused parameter of
    #: that leaf (``experts.routed_experts.w2_bias``), when the experts' MoE method built one
    streamed: frozenset[str] = frozenset()
    #: MoE methods (vLLM class names) that build the fused ``w13_bias``/``w2_bias`` parameters
    bias_methods: frozenset[str] = frozenset()
    #: ``quant_method`` values the class loads through other functions (not modelled here)
    other_methods: frozenset[str] = frozenset()


#: vLLM ``GptOssForCausalLM.hf_to_vllm_mapper.orig_to_new_suffix`` entries that can end a
#: per-expert name (the same in 0.19.1, 0.20.0 and 0.32.0)
GPT_OSS_EXPERT_RENAMES = (
    (".gate_up_proj.weight", ".w13_weight"),
    (".gate_up_proj.weight_scale", ".w13_weight_scale"),
    (".gate_up_proj.bias", ".w13_bias"),
    (".gate_up_proj.input_scale", ".w13_input_scale"),
    (".down_proj.weight", ".w2_weight"),
    (".down_proj.weight_scale", ".w2_weight_scale"),
    (".down_proj.bias", ".w2_bias"),
    (".down_proj.input_scale", ".w2_input_scale"),
)
_STACKED = "slices it as a tensor stacked over experts, which it is not (IndexError)"
_NO_PARAM = "looks that name up as a parameter, which does not exist (KeyError)"
#: ``GptOssModel._load_weights_other``'s branches for fused expert tensors (0.19.1, 0.20.0,
#: 0.32.0): the weight, scale and ``w13_bias`` branches slice ``weight[:, …]`` as [experts, …]
#: before anything else, the ``w2_bias`` branch goes straight to ``params_dict[name]`` (without
#: expert parallelism; with it the slicing passes and a later step fails). Seen: ``KeyError:
#: 'layers.0.mlp.experts.0.w2_bias'`` (0.19.1, 0.20.0, 0.32.0) and, for an export without
#: biases, ``IndexError: too many indices for tensor of dimension 2`` (0.19.1).
#: ``load_weights`` sends ``mxfp4`` and ``quark`` checkpoints elsewhere.
_GPT_OSS_OTHER = ExpertLoader(
    function="GptOssModel._load_weights_other",
    renames=GPT_OSS_EXPERT_RENAMES,
    lookups=(
        (".w13_weight", _STACKED),
        (".w2_weight", _STACKED),
        (".w13_bias", _STACKED),
        (".w2_bias", _NO_PARAM),
    ),
    other_methods=frozenset({"mxfp4", "gpt_oss_mxfp4", "quark"}),
)
#: seen in real vLLM 0.19.1 and 0.20.0: every llm-compressor per-expert gpt-oss export fails
#: with ``KeyError: 'layers.0.mlp.experts.0.w2_bias'`` (W4A16 included)
GPT_OSS_FUSED_ONLY = {"GptOssForCausalLM": _GPT_OSS_OTHER}
#: vLLM 0.32.0 first tries ``_try_load_streamed_expert`` (vLLM PR #52209) for the leaves of
#: ``_GPT_OSS_STREAMED_EXPERT_SUFFIX_TO_SHARD``; expert biases exist only under the MoE methods
#: that register them when ``has_bias`` (0.32.0 source). Seen in 0.32.0: W4A16 loads;
#: FP8/FP8_DYNAMIC/FP8_BLOCK/MXFP4 fail with ``KeyError: 'layers.0.mlp.experts.0.w2_bias'``;
#: NVFP4 fails the same way once the MoE backend check that this CPU fails is bypassed.
GPT_OSS_STREAMED = {
    "GptOssForCausalLM": replace(
        _GPT_OSS_OTHER,
        streamed=frozenset(
            f"{w}_{leaf}"
            for w in ("w13", "w2")
            for leaf in ("weight", "bias", "weight_scale", "weight_packed")
        ),
        bias_methods=frozenset(
            {
                "UnquantizedFusedMoEMethod",
                "CompressedTensorsWNA16MoEMethod",
                "CompressedTensorsW8A8Int8MoEMethod",
                "CompressedTensorsW4A8Int8MoEMethod",
                "Fp8MoEMethod",
            }
        ),
    )
}


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
    #: quant methods whose config the engine applies to ``lm_head`` (``ParallelLMHead``) and to
    #: embeddings (``VocabParallelEmbedding``); any other method builds them unquantized.
    #: None: not modelled. Read from each release's ``get_quant_method``.
    quantized_lm_head: frozenset[str] | None = frozenset()
    quantized_embedding: frozenset[str] | None = frozenset()
    #: parameters the engine owns (regexes): not expected from the checkpoint
    engine_owned: tuple[str, ...] = VLLM_ENGINE_OWNED
    #: architectures the release cannot build, with the engine's own error
    unsupported_architectures: Mapping[str, str] = field(default_factory=dict)
    #: architectures whose own expert loader refuses per-expert tensors it cannot place
    #: (keyed like ``unsupported_architectures``; absent: not modelled)
    expert_loaders: Mapping[str, ExpertLoader] = field(default_factory=dict)
    #: ``process_weights_after_loading`` per scale leaf (None: not modelled)
    post_load: Mapping[str, PostLoad] | None = field(default_factory=lambda: VLLM_POST_LOAD)
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
        unsupported_architectures=QWEN3_5_TEXT_BROKEN,
        expert_loaders=GPT_OSS_FUSED_ONLY,  # seen in 0.19.1
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
        quantized_lm_head=frozenset({"compressed-tensors"}),  # seen in 0.20.0
        unsupported_architectures=QWEN3_5_TEXT_BROKEN,  # seen in 0.20.0; 0.21 not run
        expert_loaders=GPT_OSS_FUSED_ONLY,  # seen in 0.20.0; 0.21 not run
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
        # seen in 0.32.0: ModelOpt lm_head; CT embeddings (weight-only INT group/channel only)
        quantized_lm_head=frozenset({"compressed-tensors", "modelopt"}),
        quantized_embedding=frozenset({"compressed-tensors"}),
        # seen in 0.32.0; the release that added the streamed path (PR #52209) is not pinned
        expert_loaders=GPT_OSS_STREAMED,
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
        quantized_lm_head=None,
        quantized_embedding=None,
        post_load=None,
    ),
)
