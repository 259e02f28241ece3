"""Shared walk for the structural rules: each quantized module against its scheme's specs."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass

from qscale.families import FAMILIES
from qscale.formats import ModuleQuant
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
    }
)
FLOAT_WEIGHTS = frozenset({"BF16", "F16", "F32"})


@dataclass(frozen=True, slots=True)
class Present:
    """A spec and the tensor stored for it."""

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


def draft_prefixes(ctx: Context) -> tuple[str, ...]:
    """Name prefixes of draft (MTP) layers: the main model skips them, the draft model loads
    them with the same quantization config (QS207 judges them)."""
    if ctx.plan is not None:
        return ctx.plan.family.skip_prefixes
    fam = FAMILIES.get(ctx.checkpoint.config.architecture or "")
    return fam.skip_prefixes if fam else ()


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


def checked_modules(ctx: Context) -> Iterator[ModuleQuant]:
    """Quantized modules whose scheme lists its tensors and which are not stored unquantized."""
    for mq in ctx.quant.modules.values():
        if mq.scheme is not None and mq.scheme.tensors and not stored_unquantized(mq):
            yield mq


def present(ctx: Context) -> Iterator[Present]:
    """Every (spec, stored tensor) pair of the checked modules."""
    for mq in checked_modules(ctx):
        assert mq.scheme is not None
        for spec in mq.scheme.tensors:
            t = mq.module.tensors.get(spec.param)
            if t is not None:
                yield Present(mq, spec, t)


def accepted_shapes(mq: ModuleQuant, spec: TensorSpec) -> Shapes | None:
    """Accepted shapes of a spec's tensor (None when the module's logical shape is unknown).

    For fused experts the shapes are per expert; the leading expert dimension is added here.
    """
    assert mq.scheme is not None
    logical = mq.logical_shape
    own = spec.logical is not None and spec is not mq.scheme.weight_spec
    ref = spec.ref or (spec.param if own else None)
    if ref is not None:
        ref_spec, stored = mq.scheme.spec(ref), mq.module.tensors.get(ref)
        if ref_spec is None or ref_spec.logical is None or stored is None:
            return None
        lead = 1 if mq.module.kind == ModuleKind.FUSED_EXPERTS else 0
        logical = ref_spec.logical(stored.shape[lead:])
    if logical is None:
        return None
    shapes = spec.accepted(*logical)
    if mq.module.kind == ModuleKind.FUSED_EXPERTS:
        n_exp = next(iter(mq.module.tensors.values())).shape[0]
        shapes = tuple((n_exp, *s) for s in shapes)
    return shapes
