"""Shared walk for the structural rules: each quantized module against its scheme's specs."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, NamedTuple

from qscale.engines import parse_engine
from qscale.engines.catalogue import family_or_none
from qscale.engines.families import Family
from qscale.formats import ModuleQuant
from qscale.formats._layers import is_lm_head
from qscale.modules import ModuleKind
from qscale.rules._api import Context
from qscale.safetensors_io import TensorInfo
from qscale.schemes import Shapes, TensorSpec

#: Parameters any module may carry besides its scheme's (biases, KV-cache and output scales).
BENIGN = frozenset(
    {
        "bias",
        "k_scale",
        "v_scale",
        "q_scale",
        "kv_scale",
        "prob_scale",
        "output_scale",
        "output_zero_point",
        "gate_up_proj_bias",
        "down_proj_bias",
    }
)
#: Parameters that only a quantized module carries.
QUANT_PARAMS = frozenset(
    {
        "weight_scale",
        "weight_scale_inv",
        "weight_scale_2",
        "weight_packed",
        "weight_shape",
        "weight_zero_point",
        "weight_g_idx",
        "weight_global_scale",
        "input_scale",
        "input_global_scale",
        "input_zero_point",
        "gate_up_proj_blocks",
        "gate_up_proj_scales",
        "down_proj_blocks",
        "down_proj_scales",
        # GPTQ / AWQ (qscale.formats.gptq)
        "qweight",
        "qzeros",
        "scales",
        "g_idx",
    }
)
FLOAT_WEIGHTS = frozenset({"BF16", "F16", "F32"})


class Present(NamedTuple):
    """A spec and the tensor stored for it (a NamedTuple: a check makes one per tensor)."""

    mq: ModuleQuant
    spec: TensorSpec
    tensor: TensorInfo


#: Scale spellings producers use for the same tensor (failure class 8): stored -> expected.
ALIASES: dict[str, tuple[str, ...]] = {
    "weight_scale_inv": ("weight_scale",),  # DeepSeek-style block FP8 vs compressed-tensors
    "weight_scale": ("weight_scale_inv",),
    "scale_weight": ("weight_scale", "weight_scale_inv"),  # ComfyUI-style exports
    "weight_quantizer.scale": ("weight_scale",),  # Quark hf_format quantizer state
    "input_quantizer.scale": ("input_scale",),
}


def misnamed(mq: ModuleQuant, tensors: Mapping[str, TensorInfo]) -> dict[str, str]:
    """Expected tensor name -> stored tensor name, for scheme tensors stored under another
    producer's spelling (``weight_scale_inv`` where the format reads ``weight_scale``)."""
    if mq.scheme is None:
        return {}
    out: dict[str, str] = {}
    for spec in mq.scheme.tensors:
        if spec.param in mq.module.tensors:
            continue
        for stored, expected in ALIASES.items():
            name = mq.module.tensor_name(stored)
            if spec.param in expected and name in tensors:
                out[mq.module.tensor_name(spec.param)] = name
    return out


def family(ctx: Context) -> Family | None:
    """The family the plan used, or the one the checkpoint resolves to for the checked
    engine without a plan (resolved once per check: rules ask per module)."""
    return ctx.plan.family if ctx.plan is not None else ctx.shared(_family_without_plan)


def _family_without_plan(ctx: Context) -> Family | None:
    return family_or_none(ctx.checkpoint, ctx.engine)


def is_draft(ctx: Context, name: str) -> bool:
    """Whether the module belongs to a draft (MTP) layer: the main model skips it, the draft
    model loads it with the same quantization config (QS207 judges them)."""
    fam = family(ctx)
    return fam is not None and fam.draft(name, ctx.checkpoint.config.text)


def loaded_by_main_model(ctx: Context, name: str) -> bool:
    """False for modules the main model's loader skips (draft layers, dropped prefixes)."""
    fam = family(ctx)
    return fam is None or fam.loaded_by_main_model(name, ctx.checkpoint.config.text)


#: methods whose ``get_quant_method`` never quantizes a ``ParallelLMHead``, in every engine:
#: vLLM ``Fp8Config`` / ``QuarkConfig`` / ``Mxfp4Config`` (``quantization/fp8.py``,
#: ``quark/quark.py``, ``mxfp4.py``) handle ``LinearBase``, ``FusedMoE`` and ``Attention``
#: only, and SGLang's ``Fp8Config`` likewise; ``FBGEMMFp8Config`` (``fbgemm_fp8.py``) handles
#: ``LinearBase`` only, and so does ``FPQuantConfig`` (``fp_quant.py``)
HEAD_NEVER_QUANTIZED = frozenset({"fp8", "quark", "mxfp4", "fbgemm_fp8", "fp_quant"})


def head_built_unquantized(ctx: Context, mq: ModuleQuant) -> bool | None:
    """Whether the selected engine builds this LM head (a ``ParallelLMHead``) unquantized
    although the config's scheme covers it; None when that is not modelled for the engine.

    Per release, from the profile's ``quantized_lm_head`` (QS206's table); compressed-tensors
    reaches the head only through a target that names it, never through the ``Linear`` class
    (vLLM matches the engine layer's class name, ``ParallelLMHead``)."""
    fmt = ctx.quant.format
    if fmt is None or mq.scheme is None or not is_lm_head(mq.module.name):
        return None
    if fmt.method in HEAD_NEVER_QUANTIZED:
        return True
    spec = ctx.plan.engine if ctx.plan else ctx.engine or parse_engine(None)
    allowed = spec.profile.quantized_lm_head
    if allowed is None:
        return None
    if fmt.method not in allowed:
        return True
    return "(target `Linear`)" in mq.resolution.reason


def stored_unquantized(mq: ModuleQuant) -> bool:
    """The config quantizes the module, but it holds a plain float weight and no quant tensor."""
    scheme = mq.scheme
    if scheme is None or not scheme.tensors:
        return False
    w = mq.module.tensors.get("weight")
    if w is None or w.dtype not in FLOAT_WEIGHTS:
        return False
    wanted = scheme.weight_spec
    if wanted.param == "weight" and w.dtype in wanted.dtypes:
        return False
    return not (QUANT_PARAMS & mq.module.tensors.keys())


@dataclass(frozen=True, slots=True)
class Structure:
    """The structural facts of one check, in module order: computed once and read by QS201,
    QS202, QS203, QS209, QS301 and QS302, which used to walk every module and tensor each."""

    #: modules the config quantizes that hold a plain float weight and no quant tensor
    stored_unquantized: tuple[ModuleQuant, ...]
    #: quantized modules whose scheme lists its tensors and which are not stored unquantized
    checked: tuple[ModuleQuant, ...]
    #: every (spec, stored tensor) pair of the checked modules
    present: tuple[Present, ...]
    #: every (module, spec) of the checked modules with no tensor stored under the spec's name
    absent: tuple[tuple[ModuleQuant, TensorSpec], ...]
    #: module name -> its `misnamed` tensors (expected -> stored), for modules that have any
    misnamed: Mapping[str, Mapping[str, str]]


_present = tuple.__new__  # Present(mq, spec, t) without the NamedTuple's Python __new__


def structure(ctx: Context) -> Structure:
    """The structural facts of this check (computed by the first rule that asks)."""
    return ctx.shared(_structure)


def _structure(ctx: Context) -> Structure:
    tensors = ctx.checkpoint.tensors
    unquantized: list[ModuleQuant] = []
    checked: list[ModuleQuant] = []
    pairs: list[Present] = []
    absent: list[tuple[ModuleQuant, TensorSpec]] = []
    renamed: dict[str, Mapping[str, str]] = {}
    for mq in ctx.quant.modules.values():
        scheme = mq.scheme
        if scheme is None or not scheme.tensors:
            continue  # none of the facts applies to it
        stored = mq.module.tensors
        w = stored.get("weight")  # stored_unquantized needs a float weight: a cheap sieve
        if w is not None and w[1] in FLOAT_WEIGHTS and stored_unquantized(mq):  # w.dtype
            unquantized.append(mq)
        else:
            checked.append(mq)
            for spec in scheme.tensors:
                t = stored.get(spec.param)
                if t is not None:
                    pairs.append(_present(Present, (mq, spec, t)))  # Present(mq, spec, t)
                else:
                    absent.append((mq, spec))
        if not (stored.keys() >= scheme.params):  # misnamed needs an absent one
            found = misnamed(mq, tensors)
            if found:
                renamed[mq.module.name] = found
    return Structure(tuple(unquantized), tuple(checked), tuple(pairs), tuple(absent), renamed)


def checked_modules(ctx: Context) -> tuple[ModuleQuant, ...]:
    """Quantized modules whose scheme lists its tensors and which are not stored unquantized."""
    return structure(ctx).checked


def present(ctx: Context) -> tuple[Present, ...]:
    """Every (spec, stored tensor) pair of the checked modules."""
    return structure(ctx).present


def accepted_shapes(mq: ModuleQuant, spec: TensorSpec) -> Shapes | None:
    """Accepted shapes of a spec's tensor (None when the module's logical shape is unknown).

    For fused experts the shapes are per expert; the leading expert dimension is added here.
    """
    scheme = mq.scheme
    assert scheme is not None
    fused = mq.module.kind == ModuleKind.FUSED_EXPERTS
    logical = mq.logical_shape
    own = spec.logical is not None and spec is not scheme.weight_spec
    ref = spec.ref or (spec.param if own else None)
    if ref is not None:
        ref_spec, stored = scheme.spec(ref), mq.module.tensors.get(ref)
        if ref_spec is None or ref_spec.logical is None or stored is None:
            return None
        lead = 1 if fused else 0
        logical = ref_spec.logical(stored.shape[lead:])
    if logical is None:
        return None
    shapes = spec.accepted(*logical)
    if fused:
        n_exp = next(iter(mq.module.tensors.values())).shape[0]
        shapes = tuple((n_exp, *s) for s in shapes)
    return shapes


class AcceptedShapes:
    """`accepted_shapes` for every tensor of a check, computed once per distinct input: the
    spec, the scheme it is looked up in, whether the module holds fused experts (and how
    many), and the shape it is sized from (the module's logical shape, or the stored tensor
    the spec refers to). The 10^5 experts of a large MoE share a handful."""

    def __init__(self) -> None:
        #: (id of the spec, id of the scheme, expert count or None, basis shape) -> shapes;
        #: the specs and schemes outlive the check
        self._known: dict[tuple[int, int, int | None, Any], Shapes | None] = {}
        #: (id of the spec, id of the scheme) -> the parameter whose stored shape sizes the
        #: spec's tensor, or None when the module's logical shape does
        self._refs: dict[tuple[int, int], str | None] = {}

    def __call__(self, mq: ModuleQuant, spec: TensorSpec) -> Shapes | None:
        """``accepted_shapes(mq, spec)``."""
        scheme = mq.scheme
        assert scheme is not None
        module = mq.module
        # what `accepted_shapes` reads, and nothing else
        pair = (id(spec), id(scheme))
        try:
            ref = self._refs[pair]
        except KeyError:
            own = spec.logical is not None and spec is not scheme.weight_spec
            ref = self._refs[pair] = spec.ref or (spec.param if own else None)
        if ref is not None:
            stored = module.tensors.get(ref)
            basis: Any = None if stored is None else stored.shape
        else:
            basis = mq.logical_shape
        n_exp = (next(iter(module.tensors.values())).shape[0]
                 if module.kind == ModuleKind.FUSED_EXPERTS else None)
        key = (*pair, n_exp, basis)
        try:
            return self._known[key]
        except KeyError:
            found = self._known[key] = accepted_shapes(mq, spec)
            return found

    def sized_by_module(self, mq: ModuleQuant, spec: TensorSpec) -> bool:
        """Whether the shapes accepted for ``spec`` depend on the module's kind and logical
        shape alone (no other stored tensor sizes them, no expert count), for a pair this
        object has been called with."""
        return (self._refs[id(spec), id(mq.scheme)] is None
                and mq.module.kind != ModuleKind.FUSED_EXPERTS)
