"""AMD Quark (``quant_method: quark``): global, per-layer and per-type configs, ``exclude``;
FP8 per-tensor / per-channel / per-block 128x128, OCP MX (MXFP4, MXFP6, MXFP8), W8A8 INT8,
NVFP4 and W4A16 INT4 tensor by tensor, their routed experts included (vLLM
``quark/quark_moe.py``, per release: ``MOE_FACTS``, its thresholds engine-catalogue data);
other schemes (W4A8 two-level, FP8 per-block with E8M0 scales, INT8 experts with asymmetric
activations) stop at QS102.

Follows vLLM's ``QuarkConfig``: ``exclude`` entries match exactly or as ``re:`` regexes
(``quark/utils.py::should_ignore_layer``); a layer's config is looked up in
``layer_quant_config`` (``*`` patterns by fnmatch, others when the layer name is a substring of
the pattern), then ``layer_type_quant_config``, then ``global_quant_config``.

W8A8 INT8 (``QuarkW8A8Int8``, ``quark/schemes/quark_w8a8_int8.py``; read in the wheels of
vLLM 0.18.0 and 0.20.0-0.33.0) is what ``quark/quark.py`` builds for int8 weights and
activations with symmetric per-tensor or per-channel weights and either static per-tensor
activations (``_is_static_tensor_w8a8``, ``_is_w8a8_int8`` from 0.30) or dynamic per-token
ones (``qscheme: per_channel``, ``is_dynamic: true``; ``_is_dynamic_per_token_w8a8`` from
0.20.0, 0.18.0 raises "No quark compatible scheme was found"). Each module stores an I8
``weight`` [out, in], a float ``weight_scale`` (per-channel: [out]; from 0.22.0 the parameter
is [out, 1] and its loader unsqueezes a 1-D scale, so both load; 0.18-0.21 take [out] only;
per-tensor: a scalar), and for static activations ``input_scale`` and, when they are
asymmetric, ``input_zero_point`` (scalars). ``weight_zero_point`` (and a symmetric
``input_zero_point``) is registered and dropped after loading: tolerated, not required. Its
routed experts: ``MOE_FACTS["int8"]``.

NVFP4 (``QuarkNVFP4``, ``quark/schemes/quark_nvfp4.py``, from 0.22.0; the same in every
release read up to 0.33.0) is a two-entry ``weight`` and ``input_tensors``: FP4 per-group 16
(inputs dynamic) and a static per-tensor FP8 entry (``_is_nvfp4``). A module stores ``weight``
(U8, two values a byte, [out, in/2]), ``weight_scale`` (FP8 E4M3, [out, in/16]) and the
scalars ``weight_scale_2`` and ``input_scale_2``. Earlier releases have no such scheme
(refused); its MoE experts: ``MOE_FACTS["nvfp4"]``. Other two-entry configs (W4A8 FP8 +
INT4: ``MOE_FACTS["w4a8"]``) stay QS102.

W4A16 INT4 (``QuarkW4A16Int4``, ``quark/schemes/quark_w4a16_int4.py``, from 0.31.0; the same
in 0.32.0 and 0.33.0): int4 / uint4 weights without activation quantization, packed by
``export.pack_method`` order or reorder, with an int ``group_size`` and a bool ``symmetric``.
A module stores ``weight`` (I32 [in, out/8], transposed as AWQ packs it), ``weight_scale``
([in/group, out], or ``out`` rounded up to a multiple of 8, which the loader pads to) and,
when asymmetric, ``weight_zero_point`` (I32 [in/group, out/8]); symmetric ones may store it
(registered, unused). Earlier releases refuse it; its MoE experts: ``MOE_FACTS["int4"]``.

FP8 per-block (``QuarkW8A8Fp8PerBlock``, ``quark/schemes/quark_w8a8_fp8.py``, from 0.28.0):
``fp8_e4m3`` static symmetric weights with ``block_size`` [128, 128] and dynamic symmetric
``per_group`` 128 FP8 activations (``_is_fp8_w8a8``). A module stores ``weight`` (FP8 [out,
in]) and a float ``weight_scale`` of one multiplier per 128x128 tile ([ceil(out/128),
ceil(in/128)]; named ``weight_scale_inv`` in 0.28.0-0.29.0, ``weight_scale`` from 0.30.0:
``FP8_BLOCK_SCALE_NAMES``, from the catalogue's ``quark.fp8_block_scale``). Its experts:
``MOE_FACTS["fp8_block"]``. A ``scale_type: float8_e8m0fnu`` variant (E8M0 scale parameter)
is not modelled (QS102).

Which Quark schemes each release builds was read in ``quark/quark.py`` of every wheel from
0.18.0 and 0.20.0 to 0.33.0: FP8 (``QuarkW8A8Fp8``), static INT8, OCP MX and W4A8 MXFP4-FP8
from 0.18.0; dynamic INT8 from 0.20.0; NVFP4 from 0.22.0; FP8 per-block
(``QuarkW8A8Fp8PerBlock``) from 0.28.0; W4A16 INT4 (``QuarkW4A16Int4``) from 0.31.0.
"""

from __future__ import annotations

import fnmatch
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from functools import lru_cache
from typing import TYPE_CHECKING, Any

from qscale.engines import catalogue
from qscale.errors import ConfigError, QscaleError, UnknownFormat
from qscale.formats._api import Resolution, SkipList, equal_or_regex, first_match, require_list
from qscale.modules import ModuleInfo, ModuleKind
from qscale.schemes import (
    E8M0,
    FLOAT_SCALE,
    FP8,
    U8,
    QuantArgs,
    QuantScheme,
    ShapeRule,
    Shapes,
    Strategy,
    TensorSpec,
    blocks,
    full,
    groups,
    input_scale_specs,
    packed_in,
    per_channel_1d,
    per_tensor,
    unpacked,
)

if TYPE_CHECKING:
    from qscale.engines import EngineSpec

Version = tuple[int, ...]
METHOD = "quark"
I8 = frozenset({"I8"})
#: zero points: the engine's int8 parameter takes any dtype (``copy_`` converts)
ZERO_POINT = frozenset({"I8", "U8", "I32", "F32", "BF16", "F16"})
#: vLLM builds dynamic per-token INT8 activations from 0.20.0 (``_is_dynamic_per_token_w8a8``
#: in ``quark/quark.py``; 0.18.0 has only ``_is_static_tensor_w8a8``): catalogue data
INT8_DYNAMIC_SINCE = catalogue.since("vllm", "quark.int8_dynamic_input", bool)
#: ``quark_w8a8_int8.py`` registers the per-channel ``weight_scale`` as [out, 1] with a loader
#: that unsqueezes a 1-D scale from 0.22.0 (0.18.0-0.21.0: a 1-D [out] parameter, loaded as is)
INT8_SCALE_2D_SINCE = catalogue.since("vllm", "quark.int8_channel_scale",
                                      lambda v: v == {"rank": 2, "unsqueezes_1d": True})
#: ``QuarkNVFP4`` (``quark/schemes/quark_nvfp4.py``) from 0.22.0 (absent in 0.18.0-0.21.0)
NVFP4_SINCE = catalogue.since("vllm", "quark.schemes", lambda v: "QuarkNVFP4" in v)
NVFP4_GROUP = 16
#: ``QuarkW4A16Int4`` (``quark/schemes/quark_w4a16_int4.py``) from 0.31.0 (unchanged to 0.33.0)
INT4_SINCE = catalogue.since("vllm", "quark.schemes", lambda v: "QuarkW4A16Int4" in v)
INT4_PACK = 8  #: int4 values per stored int32
#: labels of the schemes modelled as vLLM builds them only (SGLang's Quark loader not read)
_DENSE_ONLY = ("INT8 ", "NVFP4", "INT4 ", "FP8 per-block")
_QSCHEMES = {
    "per_tensor": Strategy.TENSOR,
    "per_channel": Strategy.CHANNEL,
    "per_group": Strategy.GROUP,
    "per_block": Strategy.BLOCK,
}
_MX_PACK = {"fp4": 2}  # values per stored byte along the input dimension


# --------------------------------------------------------------------------- per-release facts
# Quark FP8 per-block and routed-expert (FusedMoE) facts. The release each one starts at, and
# the wheel file it was read in, are engine-catalogue data (``formats`` of
# ``qscale/engines/data/vllm.json``, read from ``quark/quark_moe.py``, ``quark/quark.py`` and
# ``quark/schemes/quark_w8a8_fp8.py`` of every catalogued wheel by
# ``qscale.engines.extract.FORMAT_READERS``): ``quark.moe_methods`` (the classes
# ``get_moe_method`` dispatches to), ``quark.moe_fp8_weight_qschemes``,
# ``quark.exclude_children`` and ``quark.fp8_block_scale``. What stays written here is what
# qscale says about them: the class that builds them, what earlier releases do instead and
# what qscale does not model (read in the wheels the texts name). ``MOE_FACTS``,
# ``FP8_BLOCK_FACT`` and ``FP8_BLOCK_SCALE_NAMES`` are built when first asked for (the data
# file is not read at import).


@dataclass(frozen=True, slots=True)
class ReleaseFact:
    """What one range of vLLM releases builds for a Quark config, and what earlier ones say."""

    builds: str  #: the vLLM class that builds it
    #: first release that builds it (a catalogue threshold); None: qscale models no release
    since: catalogue.Since | None
    source: str  #: ``vllm==X path`` where ``since`` (or the refusal) was read
    before: str  #: what releases before ``since`` do instead (their error text)
    note: str = ""  #: what qscale does not model about it


_QUARK = "vllm/model_executor/layers/quantization/quark"


def _has(item: str) -> Any:
    return lambda v: isinstance(v, list) and item in v


#: key -> (builds, catalogue fact and what holds of it from ``since`` on, before, note);
#: a fact of None: qscale models no release (its source: the newest release's dispatch)
_MOE_SPECS: dict[str, tuple[str, tuple[str, Any] | None, str, str]] = {
    # Per expert: I8 `weight` [out, in]; per-channel `weight_scale` [out] (the w13/w2 slot is
    # [E, rows] and the loader copies a row vector into it, so [out, 1] fails copy_) or
    # per-tensor scalar ([E, 2] / [E] slots); static `input_scale` scalar ([E] slot);
    # `weight_zero_point` / `input_zero_point` registered and deleted after loading (not
    # checked: with per-channel weights the w2 `input_zero_point` slot is 0-d and a [1]-shaped
    # one fails copy_). The same create_weights in 0.20.0-0.33.0 (0.28.0 spells 2 as
    # w13_num_shards).
    "int8": (
        "QuarkW8A8Int8MoEMethod", ("quark.moe_methods", _has("QuarkW8A8Int8MoEMethod")),
        'vllm==0.18.0 get_moe_method has no INT8 branch: RuntimeError("Unsupported FusedMoe'
        ' scheme")',
        "asymmetric activations: the method drops the zero points and runs symmetric"
        " (\"kernel uses symmetric\"), so such experts are not modelled"),
    # Per expert, as the dense QuarkNVFP4: U8 `weight` [out, in/2], FP8 `weight_scale`
    # [out, in/16] (GROUP slot), scalars `weight_scale_2` (TENSOR, [E, 2] / [E]) and
    # `input_scale_2` (the loader's input-scale path: one value per expert).
    "nvfp4": (
        "QuarkNvfp4MoEMethod", ("quark.moe_methods", _has("QuarkNvfp4MoEMethod")),
        "vllm==0.21.0: no QuarkNVFP4 at all (the whole config is refused)", ""),
    # Per expert, as the dense QuarkW4A16Int4: I32 `weight` [in, out/8], `weight_scale`
    # [in/group, out] (transposed on load into [E, rows, in/group]: no padded width),
    # I32 `weight_zero_point` [in/group, out/8] (asymmetric; registered either way).
    "int4": (
        "QuarkW4A16Int4MoEMethod", ("quark.moe_methods", _has("QuarkW4A16Int4MoEMethod")),
        "vllm==0.30.0: no QuarkW4A16Int4 at all (the whole config is refused)",
        "create_weights halves the group until it divides the rank's intermediate and hidden"
        " sizes (assert group_size >= 32); that per-layout check is not modelled"),
    # Per expert, as the dense QuarkW8A8Fp8PerBlock: FP8 `weight` [out, in], float
    # `weight_scale` [ceil(out/128), ceil(in/128)] (BLOCK slot [E, rows/128, in/128]).
    "fp8_block": (
        "QuarkW8A8Fp8MoEMethod (weight_qscheme per_block)",
        ("quark.moe_fp8_weight_qschemes", _has("per_block")),
        'vllm==0.28.0-0.29.0 QuarkW8A8Fp8MoEMethod.__init__: ValueError("For FP8 Fused MoE'
        ' layers, only per-tensor and per-channel scales for weights and activations are'
        ' supported. Found per_block, per_group")', ""),
    # `exclude` for a fused-MoE layer: from 0.26.0 `should_ignore_layer(check_children=True)`
    # (quark/utils.py) also excludes the whole `….experts` layer when a plain (non-`re:`)
    # entry names it or anything under it (`….experts.3.down_proj`, `….experts.*.down_proj`).
    "exclude_children": (
        "should_ignore_layer(check_children=True)",
        ("quark.exclude_children", lambda v: v is True),
        "vllm==0.18.0-0.25.0: the exclude list is matched against `….experts` itself only", ""),
    # weight [fp8_e4m3 per_tensor, int4 per_channel ch_axis 0], fp8 inputs (`_is_fp8_w4a8`):
    # U32 `weight` [out, in/8], per-tensor `weight_scale`, per-channel `weight_scale_2`.
    "w4a8": (
        "QuarkW4A8Fp8MoEMethod", None, "",
        "built on ROCm with AITER fused MoE only (assert \"W4A8 FP8 MoE requires ROCm AITER"
        " fused MoE support.\", 0.18.0-0.33.0); registers no input_scale for static"
        " activations; Linear layers under it are refused (\"Multi-entry weight or"
        " activation quantization configs are only supported for NVFP4.\", 0.30.0-0.33.0)"),
}


def _first_cite(since: catalogue.Since) -> str:
    """``vllm==X path`` of the catalogue entry a threshold starts at."""
    at = since.value + (0,) * (3 - len(since.value))  # (0, 20) is 0.20.0, not before it
    fact = catalogue.format_fact("vllm", since.fact, at)
    if fact is None:
        raise LookupError(f"vllm format fact {since.fact!r} has no entry at {since.value}")
    return fact.cite.split(":")[0]


@lru_cache(maxsize=1)
def _moe_facts() -> Mapping[str, ReleaseFact]:
    out: dict[str, ReleaseFact] = {}
    for key, (builds, read, before, note) in _MOE_SPECS.items():
        if read is None:  # the newest catalogue entry whose dispatch names it
            cat = catalogue.load("vllm")
            rows = cat.formats.get("quark.moe_methods", ()) if cat is not None else ()
            last = next((r for r in reversed(rows) if builds in r.value), None)
            source = (f"vllm=={last.last} {last.source.split(':')[0]}" if last is not None
                      else f"{_QUARK}/quark_moe.py (no catalogued release dispatches to it)")
            out[key] = ReleaseFact(builds, None, source, before, note)
            continue
        since = catalogue.since("vllm", *read)
        out[key] = ReleaseFact(builds, since, _first_cite(since), before, note)
    return out


#: the dense Quark FP8 per-block scale: from ``quark.fp8_block_scale``'s first release on
_FP8_BLOCK_SINCE = catalogue.since("vllm", "quark.fp8_block_scale", lambda v: v is not None)


@lru_cache(maxsize=1)
def _fp8_block_fact() -> ReleaseFact:
    """Dense Quark FP8 per-block 128x128 (``QuarkW8A8Fp8PerBlock``); before it ``_is_fp8_w8a8``
    refuses ``per_block`` and the layer gets "No quark compatible scheme was found"."""
    return ReleaseFact(
        "QuarkW8A8Fp8PerBlock", _FP8_BLOCK_SINCE, _first_cite(_FP8_BLOCK_SINCE),
        'vllm==0.27.0 quark.py: NotImplementedError("No quark compatible scheme was found")',
        "scale_type float8_e8m0fnu (an E8M0 scale parameter, 0.28.0-0.33.0) is not modelled")


@lru_cache(maxsize=1)
def _fp8_block_scale_names() -> tuple[tuple[Version, str, str], ...]:
    """``(since, name, vllm==X path)``: the name ``QuarkW8A8Fp8PerBlock.create_weights``
    registers the block scale under from each release on (``weight_scale_inv`` in
    0.28.0-0.29.0, for DeepSeek V4's ``.scale`` mappers; Quark's ``weight_scale`` from
    0.30.0), one row per catalogue entry that has one."""
    cat = catalogue.load("vllm")
    rows = cat.formats.get("quark.fp8_block_scale", ()) if cat is not None else ()
    out: list[tuple[Version, str, str]] = []
    for r in rows:
        if r.value is None or (out and out[-1][1] == r.value):
            continue
        since = [int(x) for x in r.first.split(".")]
        while len(since) > 2 and since[-1] == 0:
            since.pop()
        out.append((tuple(since), str(r.value), f"vllm=={r.first} {r.source.split(':')[0]}"))
    if not out:
        raise LookupError("the vllm catalogue has no quark.fp8_block_scale name")
    return tuple(out)


def __getattr__(name: str) -> Any:
    """``MOE_FACTS``, ``FP8_BLOCK_FACT`` and ``FP8_BLOCK_SCALE_NAMES``: built from the
    catalogue when first asked for."""
    built = {"MOE_FACTS": _moe_facts, "FP8_BLOCK_FACT": _fp8_block_fact,
             "FP8_BLOCK_SCALE_NAMES": _fp8_block_scale_names}.get(name)
    if built is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return built()


FP8_BLOCK = 128
#: a per-expert module ``<moe>.experts.<e>.<proj>``: vLLM resolves its fused-MoE layer
_EXPERT = re.compile(r"^(.*\.experts)\.\d+\.[^.]+$")


def _fp6_packed(o: int, i: int) -> Shapes:
    """MXFP6 ``weight``: four 6-bit values in three bytes along the input, U8 [out, in*3/4]
    (``QuarkOCP_MX.get_packed_dim``, the same from vLLM 0.18.0 to 0.33.0)."""
    return ((o, i * 3 // 4),)


def _fp6_logical(s: tuple[int, ...]) -> tuple[int, int] | None:
    return (s[0], math.ceil(s[1] * 4 / 3)) if len(s) == 2 else None


def _args(spec: Mapping[str, Any], where: str) -> QuantArgs:
    dtype = str(spec.get("dtype", ""))
    qscheme = spec.get("qscheme")
    if qscheme not in _QSCHEMES:
        raise ConfigError(
            f"{where}: unknown qscheme {qscheme!r}", hint=f"Quark qschemes: {sorted(_QSCHEMES)}"
        )
    bits = 4 if dtype in ("fp4", "int4", "uint4") else 6 if dtype.startswith("fp6") else 8
    return QuantArgs(
        type="float" if dtype.startswith("fp") else "int",
        num_bits=bits,
        strategy=_QSCHEMES[qscheme],
        group_size=spec.get("group_size") if qscheme == "per_group" else None,
        symmetric=spec.get("symmetric") is not False,
        dynamic=bool(spec.get("is_dynamic")),
        scale_format=spec.get("scale_format"),
    )


def _int8(wspec: Mapping[str, Any], ispec: Any, version: Version | None,
          where: str) -> QuantScheme | str | None:
    """W8A8 INT8 as ``quark/quark.py`` matches it: the scheme, a refusal (str), or None when
    the config is not int8 weights and activations, or is int8 in a way vLLM does not build."""
    if wspec.get("dtype") != "int8" or not isinstance(ispec, dict) \
            or ispec.get("dtype") != "int8":
        return None
    if wspec.get("qscheme") not in ("per_tensor", "per_channel") \
            or wspec.get("symmetric") is not True:
        return None
    static = ispec.get("qscheme") == "per_tensor" and not ispec.get("is_dynamic") \
        and not wspec.get("is_dynamic")
    dynamic = ispec.get("qscheme") == "per_channel" and ispec.get("is_dynamic") is True
    if not (static or dynamic):
        return None
    if dynamic and version is not None and version < INT8_DYNAMIC_SINCE:
        return (f"{where}: vLLM < 0.20 builds Quark INT8 with static per-tensor activations"
                " only; dynamic per-token ones are refused (\"No quark compatible scheme was"
                " found\", quark/quark.py)")
    w = _args(wspec, f"{where}.weight")
    sym_input = ispec.get("symmetric") is True  # vLLM: anything else is asymmetric
    inputs = replace(_args(ispec, f"{where}.input_tensors"), symmetric=sym_input)
    per_channel = w.strategy == Strategy.CHANNEL
    rule: ShapeRule
    if not per_channel:
        rule = per_tensor
    elif version is not None and version < INT8_SCALE_2D_SINCE:
        rule = per_channel_1d
    else:
        rule = _channel_1d_or_2d
    specs = [TensorSpec("weight", I8, full, unpacked()),
             TensorSpec("weight_scale", FLOAT_SCALE, rule)]
    tolerated = {"weight_zero_point"}
    if static:
        specs.append(TensorSpec("input_scale", FLOAT_SCALE, per_tensor))
        if sym_input:
            tolerated.add("input_zero_point")
        else:
            specs.append(TensorSpec("input_zero_point", ZERO_POINT, per_tensor))
    act = "static act" if static else "dynamic per-token act"
    return QuantScheme(METHOD, f"INT8 per-{w.strategy.value}, {act}", w, inputs, tuple(specs),
                       tolerated=frozenset(tolerated))


def _fp4_group16(x: Mapping[str, Any]) -> bool:
    return x.get("dtype") == "fp4" and x.get("qscheme") == "per_group" \
        and x.get("group_size") == NVFP4_GROUP


def _fp8_static_tensor(x: Mapping[str, Any]) -> bool:
    return x.get("dtype") == "fp8_e4m3" and x.get("qscheme") == "per_tensor" \
        and not x.get("is_dynamic")


def _nvfp4(wspec: list[Mapping[str, Any]], ispec: Any, version: Version | None,
           where: str) -> QuantScheme | str | None:
    """NVFP4 as ``QuarkConfig._is_nvfp4`` matches it (weights and inputs each an FP4 group-16
    entry and a static per-tensor FP8 one, inputs dynamic): the scheme, a refusal (releases
    before :data:`NVFP4_SINCE`), or None."""
    if len(wspec) != 2 or not isinstance(ispec, list) or len(ispec) != 2 \
            or not all(isinstance(x, dict) for x in ispec):
        return None
    if not (_fp4_group16(wspec[0]) and not wspec[0].get("is_dynamic")
            and _fp4_group16(ispec[0]) and ispec[0].get("is_dynamic")
            and _fp8_static_tensor(wspec[1]) and _fp8_static_tensor(ispec[1])):
        return None
    if version is not None and version < NVFP4_SINCE:
        return (f"{where}: vLLM < 0.22 has no Quark NVFP4 scheme (QuarkNVFP4 appears in"
                " 0.22.0, quark/schemes/quark_nvfp4.py); the two-level weight config is not"
                " built")
    w = QuantArgs("float", 4, Strategy.TENSOR_GROUP, group_size=NVFP4_GROUP)
    inputs = QuantArgs("float", 4, Strategy.TENSOR_GROUP, group_size=NVFP4_GROUP, dynamic=True)
    return QuantScheme(METHOD, "NVFP4", w, inputs, (
        TensorSpec("weight", U8, packed_in(2), unpacked(2)),
        TensorSpec("weight_scale", FP8, groups(NVFP4_GROUP)),
        TensorSpec("weight_scale_2", FLOAT_SCALE, per_tensor),
        TensorSpec("input_scale_2", FLOAT_SCALE, per_tensor),
    ))


def _channel_1d_or_2d(o: int, _i: int) -> Shapes:
    """Quark INT8 per-channel ``weight_scale`` from vLLM 0.22: [out] (Quark's export; the
    loader unsqueezes it) or [out, 1] (the parameter's own shape)."""
    return ((o,), (o, 1))


def _int4_weight(o: int, i: int) -> Shapes:
    """W4A16 INT4 ``weight``: int32 [in, out/8], eight output values a word."""
    return ((i, math.ceil(o / INT4_PACK)),)


def _int4_logical(s: tuple[int, ...]) -> tuple[int, int] | None:
    return (s[1] * INT4_PACK, s[0]) if len(s) == 2 else None


def _int4_groups(group: int) -> ShapeRule:
    """``weight_scale`` [in/group, out] (the loader zero-pads it to a whole word of outputs,
    so that padded width loads too); ``group`` -1 is one group."""
    def rule(o: int, i: int) -> Shapes:
        n = 1 if group == -1 else math.ceil(i / group)
        padded = math.ceil(o / INT4_PACK) * INT4_PACK
        return ((n, o),) if padded == o else ((n, o), (n, padded))
    return rule


def _int4_zeros(group: int) -> ShapeRule:
    """``weight_zero_point`` [in/group, out/8], int32-packed like the weight."""
    return lambda o, i: ((1 if group == -1 else math.ceil(i / group), math.ceil(o / INT4_PACK)),)


def _int4(wspec: Mapping[str, Any], ispec: Any, pack_method: Any, version: Version | None,
          where: str) -> QuantScheme | str | None:
    """W4A16 INT4 as ``QuarkConfig._is_w4a16_int4`` matches it (int4 / uint4 weights, no
    activation quantization, ``export.pack_method`` order or reorder): the scheme, a refusal
    (releases before :data:`INT4_SINCE`), or None."""
    if wspec.get("dtype") not in ("int4", "uint4") or ispec is not None \
            or pack_method not in ("order", "reorder"):
        return None
    group, sym = wspec.get("group_size"), wspec.get("symmetric")
    if type(group) is not int or group <= 0 or type(sym) is not bool:  # parse_w4a16_int4_...
        return (f"{where}.weight: vLLM refuses Quark W4A16 INT4 without a positive int"
                f" `group_size` and a bool `symmetric` (got {group!r}, {sym!r};"
                " quark/utils.py parse_w4a16_int4_weight_config)")
    if version is not None and version < INT4_SINCE:
        return (f"{where}: vLLM < 0.31 has no Quark W4A16 INT4 scheme (QuarkW4A16Int4 appears"
                " in 0.31.0, quark/schemes/quark_w4a16_int4.py): \"No quark compatible scheme"
                " was found\"")
    w = QuantArgs("int", 4, Strategy.GROUP, group_size=group, symmetric=sym)
    specs = [TensorSpec("weight", frozenset({"I32"}), _int4_weight, _int4_logical),
             TensorSpec("weight_scale", FLOAT_SCALE, _int4_groups(group))]
    if not sym:
        specs.append(TensorSpec("weight_zero_point", frozenset({"I32"}), _int4_zeros(group)))
    return QuantScheme(METHOD, f"INT4 W4A16 group {group}{'' if sym else ' asym'}", w, None,
                       tuple(specs),
                       tolerated=frozenset({"weight_zero_point"}) if sym else frozenset())


def _fp8_block(wspec: Mapping[str, Any], ispec: Any, version: Version | None,
               where: str) -> QuantScheme | str | None:
    """FP8 per-block as ``QuarkConfig._is_fp8_w8a8`` matches it (static symmetric
    ``fp8_e4m3`` weights in 128x128 blocks, dynamic symmetric ``per_group`` 128 FP8 inputs):
    the scheme, a refusal (releases before ``FP8_BLOCK_FACT.since``), or None (any other
    per-block config, and the E8M0-scale variant: left to the not-modelled scheme)."""
    if wspec.get("dtype") != "fp8_e4m3" or wspec.get("qscheme") != "per_block" \
            or wspec.get("is_dynamic") or wspec.get("symmetric") is not True \
            or list(wspec.get("block_size") or []) != [FP8_BLOCK, FP8_BLOCK]:
        return None
    if not isinstance(ispec, dict) or ispec.get("dtype") != "fp8_e4m3" \
            or not ispec.get("is_dynamic") or ispec.get("qscheme") != "per_group" \
            or ispec.get("group_size") != FP8_BLOCK or ispec.get("symmetric") is not True:
        return None
    if wspec.get("scale_type") == "float8_e8m0fnu":
        return None
    fact = _fp8_block_fact()
    if version is not None and fact.since is not None and version < fact.since:
        return (f"{where}: vLLM < {'.'.join(map(str, fact.since))} has no Quark FP8 per-block"
                f" scheme ({fact.builds}"
                f" appears in {fact.source}); {fact.before}")
    scale = next(name for since, name, _ in reversed(_fp8_block_scale_names())
                 if version is None or version >= since)
    w = QuantArgs("float", 8, Strategy.BLOCK, block=(FP8_BLOCK, FP8_BLOCK))
    inputs = QuantArgs("float", 8, Strategy.GROUP, group_size=FP8_BLOCK, dynamic=True)
    return QuantScheme(METHOD, f"FP8 per-block {FP8_BLOCK}x{FP8_BLOCK}, dynamic act", w,
                       inputs, (TensorSpec("weight", FP8, full, unpacked()),
                                TensorSpec(scale, FLOAT_SCALE, blocks(FP8_BLOCK, FP8_BLOCK))))


def _scheme(cfg: Mapping[str, Any], where: str, version: Version | None = None,
            pack_method: Any = None) -> QuantScheme | str | None:
    """The scheme of one Quark config at a vLLM release (None: the newest): a QuantScheme
    (with no tensors when qscale does not model it), a refusal (str), or None when the config
    quantizes no weights."""
    wspec = cfg.get("weight")
    if wspec is None:
        return None
    if isinstance(wspec, list):  # two-level schemes (NVFP4, W4A8): first entry is the element type
        if not wspec or not all(isinstance(x, dict) for x in wspec):
            raise ConfigError(f"{where}.weight: a list of tensor configs expected")
        nvfp4 = _nvfp4(wspec, cfg.get("input_tensors"), version, where)
        if nvfp4 is not None:
            return nvfp4
        w = _args(wspec[0], f"{where}.weight[0]")
        w4a8 = len(wspec) == 2 and wspec[0].get("dtype") == "fp8_e4m3" \
            and wspec[1].get("dtype") == "int4"
        label = "W4A8 FP8 + INT4 two-level" if w4a8 else f"{wspec[0].get('dtype')} two-level"
        return QuantScheme(METHOD, label, w, None, ())
    ispec = cfg.get("input_tensors")
    for found in (_int8(wspec, ispec, version, where),  # each matches its own weight dtype
                  _int4(wspec, ispec, pack_method, version, where),
                  _fp8_block(wspec, ispec, version, where)):
        if found is not None:
            return found
    w = _args(wspec, f"{where}.weight")
    inputs = None
    if isinstance(ispec, dict):
        inputs = _args(ispec, f"{where}.input_tensors")
    dtype = wspec.get("dtype")
    if w.scale_format == "e8m0" and w.strategy == Strategy.GROUP and w.group_size == 32:
        if dtype in _MX_PACK:
            f = _MX_PACK[str(dtype)]
            weight = TensorSpec("weight", U8, packed_in(f), unpacked(f))
        elif str(dtype).startswith("fp6"):
            weight = TensorSpec("weight", U8, _fp6_packed, _fp6_logical)
        else:
            weight = TensorSpec("weight", FP8 if dtype == "fp8_e4m3" else U8, full, unpacked())
        label = f"MX{str(dtype).upper().split('_')[0]}"
        return QuantScheme(
            METHOD,
            label,
            w,
            inputs,
            (weight, TensorSpec("weight_scale", E8M0, groups(32)), *input_scale_specs(inputs)),
        )
    if dtype == "fp8_e4m3" and w.strategy in (Strategy.TENSOR, Strategy.CHANNEL):
        rule = per_tensor if w.strategy == Strategy.TENSOR else per_channel_1d
        act = (
            "weight-only" if inputs is None else ("dynamic act" if inputs.dynamic else "static act")
        )
        return QuantScheme(
            METHOD,
            f"FP8 per-{w.strategy.value}, {act}",
            w,
            inputs,
            (
                TensorSpec("weight", FP8, full, unpacked()),
                TensorSpec("weight_scale", FLOAT_SCALE, rule),
                *input_scale_specs(inputs),
            ),
        )
    return QuantScheme(METHOD, f"{dtype} {w.strategy.value}", w, inputs, ())


Scheme = QuantScheme | str | None


@dataclass(frozen=True, slots=True)
class QuarkConfig:
    """A parsed Quark ``quantization_config``, its schemes as one vLLM release builds them
    (``version`` None: the newest; :meth:`for_engine` gives another release's)."""

    global_cfg: Mapping[str, Any]
    layer_cfgs: tuple[tuple[str, Mapping[str, Any]], ...]
    exclude: tuple[str, ...]
    config_key: str = "config.json"
    method: str = METHOD
    version: Version | None = None
    engine_name: str = "vllm"
    pack_method: Any = None  #: ``export.pack_method`` (W4A16 INT4 packing)
    global_scheme: Scheme = field(init=False, repr=False, compare=False)
    #: fused-MoE layer -> the exclude entry that skips it ("" for none), filled on first use
    _layer_excluded: dict[str, str] = field(init=False, repr=False, compare=False,
                                            default_factory=dict)
    #: the plain exclude entries that skipped a fused-MoE layer as a part of it
    _child_entries: set[str] = field(init=False, repr=False, compare=False,
                                     default_factory=set)
    layer_schemes: tuple[tuple[str, Scheme], ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        where = f"{self.config_key}: quantization_config"
        object.__setattr__(self, "global_scheme", _scheme(
            self.global_cfg, f"{where}.global_quant_config", self.version, self.pack_method))
        object.__setattr__(self, "layer_schemes", tuple(
            (p, _scheme(c, f"{where}.layer_quant_config.{p}", self.version, self.pack_method))
            for p, c in self.layer_cfgs))

    def for_engine(self, engine: EngineSpec | None) -> QuarkConfig:
        """The same config as ``engine``'s release builds it; another engine's version is
        not compared with vLLM's releases (its schemes read as the newest vLLM's, and
        :meth:`refusal` says which of them that engine's loader was not read for)."""
        name, version = (engine.engine, engine.version) if engine else ("vllm", None)
        if name != "vllm":
            version = None
        if (name, version) == (self.engine_name, self.version):
            return self
        return QuarkConfig(self.global_cfg, self.layer_cfgs, self.exclude, self.config_key,
                           self.method, version, name, self.pack_method)

    def refusal(self, engine: EngineSpec | None) -> QscaleError | None:
        """A scheme ``engine``'s release refuses to build (``ConfigError``); a W8A8 INT8,
        NVFP4, W4A16 INT4 or FP8 per-block config on SGLang, whose Quark loader was not read
        (``UnknownFormat``)."""
        built = self.for_engine(engine)
        schemes = [built.global_scheme, *(s for _, s in built.layer_schemes)]
        for s in schemes:
            if isinstance(s, str):
                return ConfigError(s, hint="re-export it, or deploy on a vLLM release that"
                                   " builds it")
        if built.engine_name != "vllm" and any(
                isinstance(s, QuantScheme) and s.label.startswith(_DENSE_ONLY) for s in schemes):
            return UnknownFormat(f"{self.config_key}: Quark W8A8 INT8, NVFP4, W4A16 INT4 and"
                                 " FP8 per-block"
                                 f" are modelled as vLLM builds them; {built.engine_name}'s"
                                 " Quark loader was not read",
                                 hint="check with --engine vllm")
        return None

    def resolve(self, module: ModuleInfo) -> Resolution:
        """exclude, then layer_quant_config, then global_quant_config. A routed expert's
        config is the one of its fused-MoE layer: vLLM looks ``layer_quant_config`` up for
        ``….experts`` (``QuarkMoEMethod.get_moe_method*`` -> ``_find_matched_config``, the
        same from 0.18.0 to 0.33.0), not for ``….experts.<e>.<proj>``."""
        name = module.name
        if ".experts." in name and (m := _EXPERT.match(name)) is not None:
            name = m.group(1)
        elif module.kind != ModuleKind.FUSED_EXPERTS:
            hit = first_match(name, self.exclude)
            if hit is not None:
                return Resolution(None, f"excluded by `{hit}`")
        if name != module.name or module.kind == ModuleKind.FUSED_EXPERTS:
            why = self._excluded_layer(name)
            if why:
                return Resolution(None, why)
        for pattern, scheme in self.layer_schemes:
            matched = (
                fnmatch.fnmatchcase(name, pattern)
                if "*" in pattern
                else name in pattern
            )
            if matched:
                return self._checked(module, scheme, f"layer_quant_config `{pattern}`")
        if self.global_scheme is None:
            return Resolution(None, "global_quant_config quantizes no weights")
        return self._checked(module, self.global_scheme, "global_quant_config")

    def _excluded_layer(self, layer: str) -> str:
        """Why vLLM builds the fused-MoE layer ``layer`` unquantized ("" when it does not):
        an entry that matches ``layer`` itself, or, from ``MOE_FACTS["exclude_children"]``'s
        release on, a plain entry naming ``layer`` or anything under it. One answer per
        layer (a large MoE has 10^5 experts and its exclude list may have 10^3 entries)."""
        why = self._layer_excluded.get(layer)
        if why is not None:
            return why
        hit = first_match(layer, self.exclude)
        why = f"excluded by `{hit}`" if hit is not None else ""
        since = _moe_facts()["exclude_children"].since
        children = self.engine_name == "vllm" and (
            self.version is None or since is None or self.version >= since)
        if not why and children:
            child = next((e for e in self.exclude if not e.startswith("re:")
                          and (e == layer or e.startswith(layer + "."))), None)
            if child is not None:
                self._child_entries.add(child)
                why = (f"excluded by `{child}`: vLLM skips the whole fused-MoE layer `{layer}`"
                       " when an exclude entry names part of it")
        self._layer_excluded[layer] = why
        return why

    def child_entries(self) -> frozenset[str]:
        """The plain ``exclude`` entries that made vLLM skip a whole fused-MoE layer because
        they name part of it (``….experts.*.down_proj``), among the modules resolved so far:
        they match no module, and still act."""
        return frozenset(self._child_entries)

    def skip_list(self) -> SkipList:
        """``exclude``: exact names and ``re:`` regexes; the entries that skipped a fused-MoE
        layer by naming part of it act though they match no module (vLLM >= 0.26)."""
        return SkipList("exclude", self.exclude, equal_or_regex, acting=self.child_entries())

    def _checked(self, module: ModuleInfo, scheme: Scheme, why: str) -> Resolution:
        """The resolution, or QS102 where qscale does not model what the engine builds."""
        if scheme is None or isinstance(scheme, str):  # a refusal: reported by `refusal`
            return Resolution(None, why)
        if not scheme.tensors:
            w4a8 = _moe_facts()["w4a8"]
            also = (f": vLLM builds it with {w4a8.builds}, {w4a8.note}"
                    if scheme.label.startswith("W4A8") else "")
            raise UnknownFormat(
                f"{self.config_key}: Quark scheme {scheme.label} ({why}, `{module.name}`) is not"
                f" modelled by qscale (its tensors are not checked){also}",
                hint="qscale models Quark FP8 per-tensor/per-channel/per-block, OCP MX,"
                " W8A8 INT8, NVFP4 and W4A16 INT4, dense and MoE experts")
        if module.kind == ModuleKind.FUSED_EXPERTS or ".experts." in module.name:
            return Resolution(self._expert(module, scheme, why), why)
        return Resolution(scheme, why)

    def _expert(self, module: ModuleInfo, scheme: QuantScheme, why: str) -> QuantScheme:
        """The scheme of a routed expert as ``quark_moe.py`` builds it at this release
        (:data:`MOE_FACTS`); ``ConfigError`` where the release refuses the experts,
        ``UnknownFormat`` where qscale does not model them."""
        kind = _expert_kind(scheme.label)
        if kind is None:  # FP8 per-tensor / per-channel, OCP MX: the dense specs
            return scheme
        fact = _moe_facts()[kind]
        fused = module.kind == ModuleKind.FUSED_EXPERTS
        refused = self.engine_name == "vllm" and self.version is not None \
            and fact.since is not None and self.version < fact.since
        asym = kind == "int8" and scheme.inputs is not None and not scheme.inputs.symmetric
        if not (fused or refused or asym):  # the common case: no text built per expert
            return _expert_scheme(kind, scheme)
        where = f"{self.config_key}: Quark {scheme.label} MoE experts (`{module.name}`, {why})"
        if fused:
            raise UnknownFormat(
                f"{where} are stored fused per layer; qscale models them stored per expert"
                f" (`experts.<e>.<proj>`), as {fact.builds} loads them",
                hint="store the experts per expert, as Quark exports them")
        if refused:
            assert self.version is not None and fact.since is not None
            raise ConfigError(
                f"{where}: vLLM {_dotted(self.version)} does not build them ({fact.before});"
                f" {fact.builds} builds them from {_dotted(fact.since)} ({fact.source})",
                hint="deploy on a vLLM release that builds them, or exclude the experts")
        raise UnknownFormat(
            f"{where} are not modelled: {fact.builds} loads them, but {fact.note}",
            hint="quantize the experts' activations symmetrically")


#: scheme label prefix -> :data:`MOE_FACTS` key, for the schemes whose experts differ by release
_EXPERT_KINDS = (("INT8 ", "int8"), ("NVFP4", "nvfp4"), ("INT4 ", "int4"),
                 ("FP8 per-block", "fp8_block"))


def _expert_kind(label: str) -> str | None:
    return next((k for prefix, k in _EXPERT_KINDS if label.startswith(prefix)), None)


def _dotted(v: Version | catalogue.Since) -> str:
    v = tuple(v)
    return ".".join(map(str, v)) + (".0" if len(v) == 2 else "")


def _int4_groups_exact(group: int) -> ShapeRule:
    """A W4A16 INT4 expert's ``weight_scale``: [in/group, out] exactly (the MoE loader
    transposes it into the expert's [rows, in/group] slice; no padded width)."""
    return lambda o, i: ((1 if group == -1 else math.ceil(i / group), o),)


@lru_cache(maxsize=64)
def _expert_scheme(kind: str, scheme: QuantScheme) -> QuantScheme:
    """The per-expert tensors a Quark MoE method loads, from the dense scheme's: INT8's
    per-channel ``weight_scale`` is [out] only (``copy_`` into a 1-D slot), INT4's
    ``weight_scale`` takes no padded width; NVFP4 and FP8 per-block load as the dense ones."""
    specs = scheme.tensors
    if kind == "int8" and scheme.weights.strategy == Strategy.CHANNEL:
        specs = tuple(replace(t, shapes=per_channel_1d) if t.param == "weight_scale" else t
                      for t in specs)
    elif kind == "int4":
        group = scheme.weights.group_size or -1
        specs = tuple(replace(t, shapes=_int4_groups_exact(group))
                      if t.param == "weight_scale" else t for t in specs)
    if specs == scheme.tensors:
        return scheme
    return QuantScheme(scheme.format, scheme.label, scheme.weights, scheme.inputs, specs,
                       tolerated=scheme.tolerated)


def parse(qc: Mapping[str, Any], *, config_key: str = "config.json") -> QuarkConfig:
    """Parse a Quark ``quantization_config``."""
    where = f"{config_key}: quantization_config"
    if not isinstance(qc.get("export"), dict):
        raise ConfigError(
            f"{where}: Quark configs need an `export` object (vLLM refuses without one)"
        )
    glob = qc.get("global_quant_config") or {}
    layers = qc.get("layer_quant_config") or {}
    if not isinstance(glob, dict) or not isinstance(layers, dict):
        raise ConfigError(f"{where}: global/layer_quant_config must be objects")
    if not all(isinstance(c, dict) for c in layers.values()):
        raise ConfigError(f"{where}: layer_quant_config entries must be objects")
    return QuarkConfig(
        global_cfg=glob,
        layer_cfgs=tuple(layers.items()),
        exclude=tuple(require_list(qc, "exclude", where)),
        config_key=config_key,
        pack_method=qc["export"].get("pack_method"),
    )
