"""Engine-bug advisories and shared-expert fusion rules, as data (QS601, QS801).

The checkpoint files are legal in every case here; what goes wrong is one engine version's
handling of a shared expert under a given deployment. Each row says which engine versions,
which model families, which layout, what goes wrong numerically, what was fixed where, and
the workaround. Sources: docs/engine-loader-facts §1 (fixed-in versions verified against the
release wheels; merge commits unverified), §7.2–7.4.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

from qscale.layout import Platform

Version = tuple[int, ...]
INF: Version = (10**6,)
#: Families whose shared expert SGLang builds in ``qwen2_moe.py``'s sparse-MoE block
SGLANG_QWEN = frozenset({"qwen2_moe", "qwen3_next", "qwen3_5", "qwen3_5_vl"})
QWEN_NEXT_35 = frozenset({"qwen3_next", "qwen3_5", "qwen3_5_vl"})
SHARED_EXPERT_FAMILIES = frozenset({*SGLANG_QWEN, "deepseek_v2", "glm4_moe"})


def label(v: Version) -> str:
    """``(0, 5, 11)`` -> ``0.5.11``."""
    return ".".join(map(str, v))


def in_range(version: Version | None, low: Version, high: Version) -> bool:
    """Whether a version (None: the newest) lies in [low, high)."""
    v = version or INF
    return low <= v and (v < high or high == INF)


# --------------------------------------------------------------------------- fusion rules


class Gate(str, Enum):
    """What an engine checks before fusing the shared expert into the routed experts."""

    NONE = "none"  #: nothing: an excluded BF16 shared expert is fused anyway
    #: refuses when Quark's ``exclude`` names a shared expert (substring ``shared_expert``,
    #: not ``shared_expert_gate``, not ``mtp.``); other formats' ignore lists are not read
    QUARK_EXCLUDE = "quark-exclude"
    #: as QUARK_EXCLUDE, but ``--enforce-shared-experts-fusion`` on ROCm AITER converts a BF16
    #: shared expert of a Qwen3.5-MoE MXFP4 checkpoint to MXFP4 online and fuses it (gfx95x)
    QUARK_EXCLUDE_ONLINE = "quark-exclude-online"
    #: vLLM ``is_shared_expert_quant_fse_compatible``: refuses any format mismatch
    FORMAT_MATCH = "format-match"


@dataclass(frozen=True, slots=True)
class FusionRule:
    """When one engine version range fuses the shared expert as an extra routed expert."""

    engine: str
    low: Version
    high: Version
    platforms: frozenset[Platform]  #: where fusion is on by default
    cuda_flag: bool  #: SGLang ``enable_cuda_shared_expert_fusion`` turns it on on CUDA
    gate: Gate
    families: frozenset[str]
    reference: str
    #: a2a backends that turn fusion off (SGLang ``can_fuse_shared_expert``)
    refusing_backends: frozenset[str] = frozenset({"deepep", "mori"})


FUSION_RULES: tuple[FusionRule, ...] = (
    # PR #20736 (2026-03-17) added fusion for Qwen3.5 on AMD AITER; releases before 0.5.10
    # were not read. 0.5.10 and 0.5.10.post1 have no exclude gate.
    FusionRule("sglang", (0,), (0, 5, 11), frozenset({Platform.ROCM_AITER}), False, Gate.NONE,
               SGLANG_QWEN, "SGLang PR #20736, before PR #22948"),
    FusionRule("sglang", (0, 5, 11), (0, 5, 23), frozenset({Platform.ROCM_AITER}), False,
               Gate.QUARK_EXCLUDE, SGLANG_QWEN, "SGLang PR #22948, `can_fuse_shared_expert`"),
    FusionRule("sglang", (0, 5, 23), INF, frozenset({Platform.ROCM_AITER}), True,
               Gate.QUARK_EXCLUDE_ONLINE, SGLANG_QWEN,
               "SGLang 0.5.23 `QuarkConfig.can_fuse_shared_expert`"),
    # vLLM fuses shared experts (FSE) only on ROCm with AITER (`maybe_fuse_shared_experts`)
    FusionRule("vllm", (0,), INF, frozenset({Platform.ROCM_AITER}), False, Gate.FORMAT_MATCH,
               SHARED_EXPERT_FAMILIES, "vLLM `is_shared_expert_quant_fse_compatible`",
               refusing_backends=frozenset()),
)


def fusion_rule(engine: str, version: Version | None, family: str) -> FusionRule | None:
    """The fusion rule of an engine version for a family, if the engine fuses it at all."""
    return next(
        (r for r in FUSION_RULES
         if r.engine == engine and family in r.families and in_range(version, r.low, r.high)),
        None,
    )


# --------------------------------------------------------------------------- advisories


class Trigger(str, Enum):
    """The deployment and checkpoint condition under which an advisory applies."""

    #: vLLM sequence-parallel MoE (EP + TP > 1 + DP > 1) with a TP-sharded shared expert
    SEQUENCE_PARALLEL_SHARED_EXPERT = "sequence-parallel-shared-expert"
    #: SGLang fuses the shared expert, MoE EP > 1, all-to-all backend not DeepEP-class
    FUSED_SHARED_EXPERT_ALLREDUCE_EP = "fused-shared-expert-allreduce-ep"
    #: vLLM's MoE runner reduces the shared-expert output (TP > 1 or EP > 1)
    REDUCED_SHARED_EXPERT = "reduced-shared-expert"
    #: the load plan leaves a tuple-shard per-tensor scale slot unwritten
    UNFILLED_TUPLE_SCALE = "unfilled-tuple-scale"
    #: SGLang fuses a shared expert stored in another format than the routed experts
    MISMATCHED_SHARED_EXPERT_FUSED = "mismatched-shared-expert-fused"


@dataclass(frozen=True, slots=True)
class Advisory:
    """A known engine bug: where it bites, what it does to the numbers, and the way out."""

    id: str
    engine: str
    low: Version
    high: Version  #: first version without the bug (INF: not fixed in any release read)
    fixed_in: str | None
    families: frozenset[str]
    trigger: Trigger
    reference: str
    effect: str  #: what goes wrong numerically; ``{tp}``, ``{ep}`` are filled in
    workaround: str
    seed: str | None = None
    architectures: frozenset[str] = frozenset()  #: empty: every architecture of the families
    #: another rule reports the defect itself; QS801 then adds one info note, not an error
    reported_by: str | None = None
    note: str = ""

    @property
    def range_label(self) -> str:
        """The affected versions: ``>=0.18,<0.20``, ``<0.20``, ``>=0.18`` or ``all``."""
        parts = ([f">={label(self.low)}"] if self.low != (0,) else []) + (
            [f"<{label(self.high)}"] if self.high != INF else []
        )
        return ",".join(parts) or "all"


ADVISORIES: tuple[Advisory, ...] = (
    Advisory(
        "vllm-39181", "vllm", (0,), (0, 20), "0.20.0", QWEN_NEXT_35,
        Trigger.SEQUENCE_PARALLEL_SHARED_EXPERT, "vLLM PR #39181",
        "under sequence-parallel MoE each TP rank runs the shared expert on its own tokens but"
        " with only its 1/{tp} slice of the intermediate neurons, and nothing sums the slices:"
        " the shared-expert output is a partial sum over 1/{tp} of its neurons",
        "Upgrade to vLLM ≥ 0.20.0, or serve without sequence-parallel MoE (DP=1, TP=1 or no"
        " expert parallel)",
        seed="000", note="checked absent in 0.19.0 and 0.19.1; first release with the fix 0.20.0",
    ),
    Advisory(
        "vllm-41763", "vllm", (0,), INF, None, frozenset({"qwen2_moe"}),
        Trigger.SEQUENCE_PARALLEL_SHARED_EXPERT, "vLLM issue #37856 / PR #41763 (closed)",
        "`Qwen3MoeSparseMoeBlock` builds its shared expert without `is_sequence_parallel`, so"
        " under sequence-parallel MoE its output is a partial sum over 1/{tp} of its neurons",
        "Serve without sequence-parallel MoE (DP=1, TP=1 or no expert parallel)",
        architectures=frozenset({"Qwen3MoeForCausalLM"}),
        note="still unfixed in 0.33.0; only when `shared_expert_intermediate_size` > 0",
    ),
    Advisory(
        "sglang-26845", "sglang", (0,), (0, 5, 13), "0.5.13", SGLANG_QWEN,
        Trigger.FUSED_SHARED_EXPERT_ALLREDUCE_EP, "SGLang PR #26845",
        "shared expert output counted {ep}× at EP={ep}: the fused shared expert's weight"
        " sigmoid(gate) is not divided by the EP size, and the all-reduce sums every EP rank's"
        " copy",
        "Upgrade to SGLang ≥ 0.5.13, pass --disable-shared-experts-fusion, or use a"
        " DeepEP-class all-to-all backend (deepep, mooncake, mori)",
        seed="001", note="checked present in 0.5.12 and 0.5.12.post1",
    ),
    Advisory(
        "vllm-38517", "vllm", (0, 18), (0, 20), "0.20.0", frozenset({"qwen3_5", "qwen3_5_vl"}),
        Trigger.UNFILLED_TUPLE_SCALE, "vLLM PR #38517 (issue #38197)",
        "the per-tensor scale of `in_proj_qkv` (tuple shard id (0, 1, 2)) fills slot 0 only;"
        " the k and v partitions are dequantized with the −3.4e38 sentinel and come out as"
        " garbage",
        "Upgrade to vLLM ≥ 0.20.0, or rewrite the per-tensor scales as per-channel",
        seed="002", reported_by="QS401",
    ),
    Advisory(
        "sglang-22948", "sglang", (0,), (0, 5, 11), "0.5.11", SGLANG_QWEN,
        Trigger.MISMATCHED_SHARED_EXPERT_FUSED, "SGLang PR #22948",
        "the BF16 shared expert is fused into the quantized routed-expert tensor: its weights"
        " are loaded where packed FP4 codes are expected, so the shared-expert contribution is"
        " garbage for every token (or the load fails on the shape)",
        "Upgrade to SGLang ≥ 0.5.11, or pass --disable-shared-experts-fusion",
        seed="003", reported_by="QS601",
    ),
    Advisory(
        "vllm-40673", "vllm", (0, 19, 2), (0, 20), "0.20.0 (no release shipped the bug)",
        SHARED_EXPERT_FAMILIES, Trigger.REDUCED_SHARED_EXPERT, "vLLM PR #40673",
        "the shared-expert output is all-reduced twice — once on its own and once with the"
        " routed output — so it comes out summed over the ranks again (about {tp}× at TP={tp})",
        "Use a vLLM release ≥ 0.20.0 instead of a development build from between"
        " PR #40560 and PR #40673",
        seed="004",
        note="the regression came with PR #40560, merged as"
        " 809d83c2dc2f74d52fe852b09d0e38c91c7d8334 (per PR #40668's text); both PRs are in"
        " 0.20.0 and 0.19.x has its own guard, so only"
        " development builds between them are affected: qscale matches versions after 0.19.1 and"
        " before 0.20.0 (e.g. 0.19.2.devN); 0.20.0 pre-releases cannot be told apart from 0.20.0;"
        " the exact layouts are inferred from the fix's guard",
    ),
)


def advisories_for(
    engine: str, version: Version | None, family: str, architecture: str | None
) -> tuple[Advisory, ...]:
    """The advisories whose engine, version range and family match."""
    return tuple(
        a for a in ADVISORIES
        if a.engine == engine
        and in_range(version, a.low, a.high)
        and family in a.families
        and (not a.architectures or architecture in a.architectures)
    )
