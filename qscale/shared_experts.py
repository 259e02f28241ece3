"""What a checkpoint's shared experts are, and whether the engine fuses them (QS601, QS801).

A shared expert is identified twice: from the quantization config (the modules its
exclude/ignore list leaves unquantized) and from the files (the modules stored as a plain float
weight). The two usually agree; when they do not, the engine builds one thing and loads the
other. The fusion decision follows the rows of :data:`qscale.advisories.FUSION_RULES`.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum
from typing import TYPE_CHECKING, cast

from qscale.advisories import Gate, fusion_rule
from qscale.checkpoint import ModelConfig
from qscale.engines import EngineSpec
from qscale.engines.families import Family
from qscale.engines.templates import index_blind_literals
from qscale.formats import ModuleQuant, QuantMap
from qscale.formats._api import loaded_instance
from qscale.layout import Layout, Platform
from qscale.modules import ModuleKind
from qscale.sharding import is_expert

if TYPE_CHECKING:
    from qscale.formats.quark import QuarkConfig

FLOAT = frozenset({"BF16", "F16", "F32"})
#: model types for which SGLang 0.5.23 converts a BF16 shared expert to MXFP4 online
ONLINE_MXFP4_MODEL_TYPES = frozenset({"qwen3_5_moe", "qwen3_5_moe_text"})


@dataclass(frozen=True, slots=True)
class SharedExperts:
    """The shared experts of a checkpoint, against its routed experts."""

    layers: tuple[str, ...]  #: layer prefixes that carry a shared expert
    first: str  #: a shared-expert weight tensor, for locations
    routed: str  #: the routed experts' scheme label, or "unquantized"
    shared: str  #: the shared expert's scheme label, or its float dtype
    excluded: tuple[str, ...]  #: shared-expert modules the config leaves unquantized
    reasons: tuple[str, ...]  #: why (e.g. "excluded by `…`"), deduplicated
    stored_float: tuple[str, ...]  #: shared-expert modules stored as a plain float weight
    quark_gate_sees: bool  #: Quark's exclude list names a shared expert (SGLang's gate)
    method: str | None  #: the checkpoint's quant_method

    @property
    def mismatch(self) -> bool:
        """Shared and routed experts are stored in different formats."""
        if self.shared in FLOAT:
            return self.routed != "unquantized"
        return self.shared != self.routed

    @property
    def disagreements(self) -> tuple[str, ...]:
        """Modules where the config and the files disagree, with how."""
        ex, fl = set(self.excluded), set(self.stored_float)
        return tuple(
            [f"`{m}` stored {self.shared} but quantized by the config" for m in sorted(fl - ex)]
            + [f"`{m}` excluded by the config but stored quantized" for m in sorted(ex - fl)]
        )


def _float_only(mq: ModuleQuant) -> str | None:
    w = mq.module.tensors.get("weight")
    if w is None or w.dtype not in FLOAT or set(mq.module.tensors) - {"weight", "bias"}:
        return None
    return w.dtype


def _shared_and_routed(
    quant: QuantMap, marker: str, skip: tuple[str, ...], blind: bool
) -> tuple[list[ModuleQuant], ModuleQuant | None] | None:
    """The shared-expert modules and the first routed expert, in name order; None when
    ``blind`` met a block of routed experts under ``marker`` (each member is shared then)."""
    shared: list[ModuleQuant] = []
    routed: ModuleQuant | None = None
    for name, mq, n in quant.walk(blind):
        if name.startswith(skip):
            continue
        if marker in name + "." and mq.module.kind == ModuleKind.LINEAR:
            if n > 1:
                return None
            shared.append(mq)
        elif routed is None and is_expert(mq):
            routed = mq
    return shared, routed


def read_shared_experts(quant: QuantMap, family: Family) -> SharedExperts | None:
    """The shared experts, or None when the checkpoint has none (or no routed experts)."""
    marker = family.shared_expert
    if marker is None:
        return None
    skip = family.skip_prefixes
    found = _shared_and_routed(quant, marker, skip, index_blind_literals(skip))
    if found is None:  # a block of routed experts under the marker: every module read
        found = _shared_and_routed(quant, marker, skip, False)
    assert found is not None
    shared, routed = found
    if not shared or routed is None:
        return None
    floats = [(mq.module.name, d) for mq in shared if (d := _float_only(mq))]
    quantized = next((mq.scheme.label for mq in shared if mq.scheme and not _float_only(mq)), None)
    unq = [mq for mq in shared if mq.scheme is None]
    fmt = quant.format
    return SharedExperts(
        layers=tuple(sorted({mq.module.name.partition(marker)[0] for mq in shared})),
        first=next(iter(shared[0].module.tensors.values())).name,
        routed=routed.scheme.label if routed.scheme else "unquantized",
        shared=floats[0][1] if floats and len(floats) == len(shared) else quantized or "BF16",
        excluded=tuple(mq.module.name for mq in unq),
        reasons=tuple(dict.fromkeys(mq.resolution.reason for mq in unq)),
        stored_float=tuple(n for n, _ in floats),
        quark_gate_sees=(quark := _quark(fmt)) is not None and any(
            "shared_expert" in e and "shared_expert_gate" not in e and not e.startswith("mtp.")
            for e in quark.exclude
        ),
        method=fmt.method if fmt else None,
    )


class Fusion(str, Enum):
    """What the engine does with the shared expert."""

    FUSES = "fuses"  #: loads it as an extra routed expert, in the routed experts' format
    MAY_FUSE = "may-fuse"  #: the engine's gate cannot see the exclusion (inferred from code)
    CONVERTS = "converts"  #: quantizes the BF16 shared expert online, then fuses it
    REFUSES = "refuses"  #: the gate keeps it a separate MLP
    OFF = "off"  #: fusion is not on for this platform, flags or backend
    #: off on the platform assumed (CUDA), on where fusion runs; the user named no platform
    PLATFORM = "depends-on-platform"


@dataclass(frozen=True, slots=True)
class Decision:
    """The engine's shared-expert fusion decision, and why."""

    fusion: Fusion
    why: str
    fix: str = "Nothing to do: the engine keeps the shared expert separate"


#: what turns AITER on, by engine (read where each engine decides): SGLang 0.5.x
#: ``_use_aiter = get_bool_env_var("SGLANG_USE_AITER") and _is_hip`` (``python/sglang/srt/
#: layers/quantization/quark/schemes/quark_w8a8_fp8.py`` and the MoE layers alike); vLLM 0.33
#: ``rocm_aiter_ops`` reads ``VLLM_ROCM_USE_AITER`` (``vllm/_aiter_ops.py``)
AITER_SWITCH = {"sglang": "SGLANG_USE_AITER=1", "vllm": "VLLM_ROCM_USE_AITER=1"}


def fusion_decision(
    se: SharedExperts, layout: Layout, spec: EngineSpec, family: str, config: ModelConfig
) -> Decision:
    """Whether the engine fuses the shared expert into the routed-expert tensor.

    When the user named no platform, CUDA is assumed; if the engine would fuse (or may fuse)
    on ROCm with AITER, the decision is :attr:`Fusion.PLATFORM`: the platform decides, and the
    decision names the flag that does.
    """
    d = layout.deployment
    here = _decide(se, layout, spec, family, config, d.platform_or_cuda)
    if d.platform is not None or here.fusion != Fusion.OFF:
        return here
    there = _decide(se, layout, spec, family, config, Platform.ROCM_AITER)
    if there.fusion not in (Fusion.FUSES, Fusion.MAY_FUSE, Fusion.CONVERTS):
        return here
    switch = AITER_SWITCH.get(spec.engine, "AITER")
    return Decision(
        Fusion.PLATFORM,
        f"no --platform was given and the platform decides: on CUDA (assumed) {here.why};"
        f" on ROCm with AITER (`--platform rocm-aiter`, {switch} when serving) {spec.engine}"
        f" {there.fusion.value.replace('-', ' ')}: {there.why}",
        f"Pass --platform (cuda, rocm, rocm-aiter) for the platform you serve on; on ROCm with"
        f" AITER: {there.fix}",
    )


def _decide(
    se: SharedExperts,
    layout: Layout,
    spec: EngineSpec,
    family: str,
    config: ModelConfig,
    platform: Platform,
) -> Decision:
    rule = fusion_rule(spec.engine, spec.version, family)
    d = layout.deployment
    if rule is None:
        return Decision(Fusion.OFF, f"{spec.label} does not fuse {family} shared experts")
    if spec.engine == "sglang" and d.disable_shared_experts_fusion:
        return Decision(Fusion.OFF, "--disable-shared-experts-fusion is set")
    cuda = rule.cuda_flag and d.cuda_shared_expert_fusion and platform == Platform.CUDA
    if platform not in rule.platforms and not cuda:
        where = " (or on CUDA with enable_cuda_shared_expert_fusion)" if rule.cuda_flag else ""
        return Decision(Fusion.OFF, f"{spec.engine} fuses shared experts only on ROCm with"
                        f" AITER{where}, not on {platform.value}")
    inter, moe = config.get("shared_expert_intermediate_size"), config.get("moe_intermediate_size")
    if spec.engine == "sglang" and (not inter or inter != moe):
        return Decision(Fusion.OFF, f"shared_expert_intermediate_size {inter} differs from"
                        f" moe_intermediate_size {moe}")
    if layout.backend.name in rule.refusing_backends:
        return Decision(Fusion.OFF, f"the {layout.backend.name} all-to-all backend")
    if not se.mismatch:
        return Decision(
            Fusion.FUSES, f"shared and routed experts are both {se.routed} ({rule.reference})"
        )
    return _gate(se, rule.gate, rule.reference, layout, config, platform)


def _gate(
    se: SharedExperts,
    gate: Gate,
    ref: str,
    layout: Layout,
    config: ModelConfig,
    platform: Platform,
) -> Decision:
    d = layout.deployment
    if gate == Gate.NONE:
        return Decision(Fusion.FUSES, f"nothing checks the exclude list ({ref})",
                        "Upgrade to SGLang ≥ 0.5.11, or pass --disable-shared-experts-fusion")
    if gate == Gate.FORMAT_MATCH:
        return Decision(Fusion.REFUSES, f"{ref} refuses a shared expert in another format")
    if se.quark_gate_sees:
        online = (
            gate == Gate.QUARK_EXCLUDE_ONLINE
            and d.enforce_shared_experts_fusion
            and platform == Platform.ROCM_AITER
            and config.text.get("model_type") in ONLINE_MXFP4_MODEL_TYPES
            and se.routed == "MXFP4"
        )
        if online:
            return Decision(Fusion.CONVERTS, "--enforce-shared-experts-fusion converts the"
                            " BF16 shared expert to MXFP4 online (gfx95x GPUs only; refused"
                            f" elsewhere) ({ref})")
        return Decision(Fusion.REFUSES, f"Quark's exclude list names the shared expert ({ref})")
    if se.method == "quark":
        return Decision(Fusion.FUSES, f"the exclude list does not name the shared expert, so"
                        f" the gate passes ({ref})", "List the shared expert in Quark's exclude,"
                        " or pass --disable-shared-experts-fusion")
    return Decision(Fusion.MAY_FUSE, f"the gate reads Quark's exclude list only; this"
                    f" {se.method} checkpoint's ignore list is not consulted (inferred from"
                    f" code, not run) ({ref})", "Pass --disable-shared-experts-fusion, or run a"
                    " canary eval first")



def _quark(fmt: object) -> QuarkConfig | None:
    """An AMD Quark config (its parser is loaded only for such a checkpoint)."""
    return cast("QuarkConfig | None", loaded_instance(fmt, "quark", "QuarkConfig"))
