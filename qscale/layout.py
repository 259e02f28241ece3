"""Deployment: the layout and MoE options a checkpoint is served with; resolve() per engine.

A :class:`Deployment` is what the user types (``--tp 2 --dp 2 --enable-expert-parallel``), in
both engines' vocabulary. :func:`resolve` turns it into what one engine builds from it: the
tensor-parallel size of the dense layers, the expert-parallel and MoE tensor-parallel sizes,
whether vLLM's sequence-parallel MoE is on, and the all-to-all backend. Sources (paraphrased;
docs/engine-loader-facts §7 and the engines' parallel configs):

- vLLM (``FusedMoEParallelConfig.make``): the MoE layers see TP × DP ranks. Without expert
  parallel every expert is split over all of them (MoE TP = TP × DP); with it each rank holds
  whole experts (EP = TP × DP, MoE TP = 1). ``use_sequence_parallel_moe`` = expert parallel,
  TP > 1, DP > 1 and an all-to-all backend that takes sequence-parallel input.
- SGLang (``initialize_model_parallel``): experts are split inside the TP group:
  MoE EP = ``--ep-size``, MoE TP = TP / EP; DeepEP forces EP = TP.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

from qscale.engines import EngineSpec
from qscale.errors import UsageError


class Platform(str, Enum):
    """The accelerator family; AITER is AMD's kernel library (SGLANG_USE_AITER=1 /
    VLLM_ROCM_USE_AITER=1), which the shared-expert fusion paths need."""

    CUDA = "cuda"
    ROCM = "rocm"
    ROCM_AITER = "rocm-aiter"


@dataclass(frozen=True, slots=True)
class A2ABackend:
    """One MoE all-to-all backend, in its engine's spelling."""

    engine: str
    name: str
    aliases: tuple[str, ...] = ()
    #: SGLang ``is_deepep_class_backend()`` (DeepEP, Mooncake, MoRI): the fused shared expert
    #: is not rescaled by 1/EP (PR #26845)
    deepep_class: bool = False
    #: SGLang builds the shared expert replicated instead of TP-sharded (facts §7.3)
    replicates_shared_expert: bool = False
    #: SGLang ``can_fuse_shared_expert`` refuses fusion with this backend (facts §7.4)
    refuses_fusion: bool = False
    #: vLLM ``use_sequence_parallel_moe`` accepts this backend
    sequence_parallel: bool = False
    default: bool = False


#: Backends per engine: vLLM ``--all2all-backend``, SGLang ``--moe-a2a-backend``.
#: "allreduce" names the engine's plain (non-DeepEP) path in either engine.
A2A_BACKENDS: tuple[A2ABackend, ...] = (
    A2ABackend("vllm", "allgather_reducescatter", ("allreduce",), sequence_parallel=True,
               default=True),
    A2ABackend("vllm", "naive", (), sequence_parallel=True),  # in the set of older releases
    A2ABackend("vllm", "pplx"),
    A2ABackend("vllm", "deepep_high_throughput", ("deepep",), deepep_class=True,
               sequence_parallel=True),
    A2ABackend("vllm", "deepep_low_latency", (), deepep_class=True, sequence_parallel=True),
    A2ABackend("vllm", "mori", ("mori_high_throughput", "mori_low_latency"), deepep_class=True,
               sequence_parallel=True),
    A2ABackend("vllm", "nixl_ep", (), sequence_parallel=True),
    A2ABackend("vllm", "flashinfer_all2allv", ("flashinfer",)),
    A2ABackend("sglang", "none", ("allreduce", "naive"), default=True),
    A2ABackend("sglang", "deepep", (), deepep_class=True, replicates_shared_expert=True,
               refuses_fusion=True),
    A2ABackend("sglang", "mooncake", (), deepep_class=True),
    A2ABackend("sglang", "mori", (), deepep_class=True, replicates_shared_expert=True,
               refuses_fusion=True),
    A2ABackend("sglang", "nixl"),
    A2ABackend("sglang", "flashinfer", (), replicates_shared_expert=True),
    A2ABackend("sglang", "megamoe", (), replicates_shared_expert=True),
    A2ABackend("sglang", "ascend_fuseep", (), replicates_shared_expert=True),
)


def find_backend(engine: str, name: str | None) -> A2ABackend:
    """The engine's backend of that name or alias (``-`` and ``_`` alike); None: its default."""
    rows = [b for b in A2A_BACKENDS if b.engine == engine]
    if name is None:
        return next(b for b in rows if b.default)
    key = name.strip().lower().replace("-", "_")
    for b in rows:
        if key == b.name or key in b.aliases:
            return b
    raise UsageError(
        f"--a2a-backend {name!r} is not a {engine} all-to-all backend",
        hint=f"{engine} backends: {', '.join(b.name for b in rows)}",
    )


@dataclass(frozen=True, slots=True)
class Deployment:
    """The layout and MoE options of one deployment, as the user gives them."""

    tp: int = 1
    dp: int = 1
    ep: int | None = None  #: expert-parallel size; giving it turns expert parallel on
    enable_expert_parallel: bool = False  #: vLLM ``--enable-expert-parallel`` (EP = TP × DP)
    sequence_parallel_moe: bool | None = None  #: None: what the engine derives
    a2a_backend: str | None = None  #: None: the engine's default
    disable_shared_experts_fusion: bool = False  #: SGLang ``--disable-shared-experts-fusion``
    enforce_shared_experts_fusion: bool = False  #: SGLang ``--enforce-shared-experts-fusion``
    cuda_shared_expert_fusion: bool = False  #: SGLang ``enable_cuda_shared_expert_fusion``
    #: None: not named (``--platform`` not given); CUDA is assumed, and a verdict that the
    #: platform would change says so (:attr:`platform_or_cuda`)
    platform: Platform | None = None
    #: vLLM ``--allow-deprecated-quantization``: load a method its release lists as deprecated
    allow_deprecated_quantization: bool = False

    def __post_init__(self) -> None:
        for flag, value in (("--tp", self.tp), ("--dp", self.dp), ("--ep", self.ep or 1)):
            if value < 1:
                raise UsageError(f"{flag} {value}: parallel sizes start at 1")
        if self.disable_shared_experts_fusion and self.enforce_shared_experts_fusion:
            raise UsageError(
                "--disable-shared-experts-fusion and --enforce-shared-experts-fusion contradict"
                " each other",
                hint="give one of them",
            )
        if self.sequence_parallel_moe and not (
            self.expert_parallel and self.tp > 1 and self.dp > 1
        ):
            raise UsageError(
                "--sequence-parallel-moe needs expert parallel, --tp > 1 and --dp > 1"
                f" (got --tp {self.tp} --dp {self.dp}"
                f"{' with' if self.expert_parallel else ' without'} expert parallel)",
                hint="vLLM splits MoE input by sequence only for EP + TP > 1 + DP > 1",
            )

    @property
    def platform_or_cuda(self) -> Platform:
        """The platform checked: the one named, else CUDA."""
        return self.platform or Platform.CUDA

    @property
    def expert_parallel(self) -> bool:
        """Expert parallel is on (``--enable-expert-parallel``, or ``--ep`` above 1)."""
        return self.enable_expert_parallel or (self.ep is not None and self.ep > 1)

    @property
    def label(self) -> str:
        """``TP=2 DP=2 EP`` style summary of what was asked."""
        parts = [f"TP={self.tp}"]
        if self.dp > 1:
            parts.append(f"DP={self.dp}")
        if self.ep is not None:
            parts.append(f"EP={self.ep}")
        elif self.enable_expert_parallel:
            parts.append("EP")
        return " ".join(parts)


@dataclass(frozen=True, slots=True)
class Layout:
    """What one engine builds from a Deployment."""

    engine: str
    deployment: Deployment
    tp: int  #: tensor-parallel size of attention, dense MLPs and shared experts
    ep: int  #: expert-parallel size of the routed experts (1: off)
    moe_tp: int  #: tensor-parallel size inside each routed expert
    sequence_parallel: bool  #: vLLM use_sequence_parallel_moe
    backend: A2ABackend

    @property
    def label(self) -> str:
        """``TP=2 EP=4 (MoE TP=1, sequence-parallel MoE)`` style summary."""
        extra = [f"MoE TP={self.moe_tp}"]
        if self.deployment.dp > 1:
            extra.insert(0, f"DP={self.deployment.dp}")
        if self.sequence_parallel:
            extra.append("sequence-parallel MoE")
        return f"TP={self.tp} EP={self.ep} ({', '.join(extra)})"


def resolve(d: Deployment, spec: EngineSpec) -> Layout:
    """The layout the engine builds from ``d``; contradictory options raise UsageError."""
    backend = find_backend(spec.engine, d.a2a_backend)
    if spec.engine == "vllm":
        return _resolve_vllm(d, backend)
    return _resolve_sglang(d, backend)


def _resolve_vllm(d: Deployment, backend: A2ABackend) -> Layout:
    ranks = d.tp * d.dp  # FusedMoEParallelConfig flattens TP across DP
    ep_on = d.expert_parallel and ranks > 1
    if d.ep is not None and ep_on and d.ep != ranks:
        raise UsageError(
            f"--ep {d.ep} contradicts --tp {d.tp} --dp {d.dp}: vLLM's expert-parallel size is"
            f" TP × DP = {ranks}",
            hint=f"for EP={d.ep} use --tp {d.tp} --dp {d.ep // d.tp} --enable-expert-parallel"
            if d.ep % d.tp == 0
            else "give --ep equal to --tp × --dp, or --enable-expert-parallel alone",
        )
    sp = ep_on and d.tp > 1 and d.dp > 1 and backend.sequence_parallel
    if d.sequence_parallel_moe and not sp:
        raise UsageError(
            f"--sequence-parallel-moe: vLLM does not run sequence-parallel MoE with the"
            f" {backend.name} all-to-all backend",
            hint="vLLM's sequence-parallel backends: "
            + ", ".join(b.name for b in A2A_BACKENDS if b.sequence_parallel),
        )
    if d.sequence_parallel_moe is False:
        sp = False
    return Layout(
        "vllm", d, d.tp, ranks if ep_on else 1, 1 if ep_on else ranks, sp, backend
    )


def _resolve_sglang(d: Deployment, backend: A2ABackend) -> Layout:
    if d.sequence_parallel_moe:
        raise UsageError(
            "--sequence-parallel-moe is a vLLM option; SGLang has no sequence-parallel MoE",
            hint="drop it, or check with --engine vllm==VERSION",
        )
    ep = d.ep if d.ep is not None else (d.tp if d.enable_expert_parallel else 1)
    if backend.name == "deepep":
        ep = d.tp  # server_args: DeepEP sets ep_size = tp_size
    if d.tp % ep:
        raise UsageError(
            f"--ep {ep} does not divide --tp {d.tp}: SGLang splits the experts inside the TP"
            " group (MoE TP = TP / EP)",
            hint="choose an --ep that divides --tp",
        )
    return Layout("sglang", d, d.tp, ep, d.tp // ep, False, backend)
