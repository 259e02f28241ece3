"""AMD Quark (``quant_method: quark``): global, per-layer and per-type configs, ``exclude``;
FP8 per-tensor / per-channel, OCP MX (MXFP4, MXFP6, MXFP8), W8A8 INT8, NVFP4 and W4A16 INT4
tensor by tensor; other schemes (FP8 per-block, W4A8 two-level, the INT8 / NVFP4 / INT4 MoE
experts) stop at QS102.

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
routed experts (``QuarkW8A8Int8MoEMethod``, ``w13_``/``w2_`` parameters) are not modelled.

NVFP4 (``QuarkNVFP4``, ``quark/schemes/quark_nvfp4.py``, from 0.22.0; the same in every
release read up to 0.33.0) is a two-entry ``weight`` and ``input_tensors``: FP4 per-group 16
(inputs dynamic) and a static per-tensor FP8 entry (``_is_nvfp4``). A module stores ``weight``
(U8, two values a byte, [out, in/2]), ``weight_scale`` (FP8 E4M3, [out, in/16]) and the
scalars ``weight_scale_2`` and ``input_scale_2``. Earlier releases have no such scheme
(refused); its MoE experts (``QuarkNvfp4MoEMethod``) are not modelled. Other two-entry
configs (W4A8 FP8 + INT4, which vLLM builds for MoE experts only) stay QS102.

W4A16 INT4 (``QuarkW4A16Int4``, ``quark/schemes/quark_w4a16_int4.py``, from 0.31.0; the same
in 0.32.0 and 0.33.0): int4 / uint4 weights without activation quantization, packed by
``export.pack_method`` order or reorder, with an int ``group_size`` and a bool ``symmetric``.
A module stores ``weight`` (I32 [in, out/8], transposed as AWQ packs it), ``weight_scale``
([in/group, out], or ``out`` rounded up to a multiple of 8, which the loader pads to) and,
when asymmetric, ``weight_zero_point`` (I32 [in/group, out/8]); symmetric ones may store it
(registered, unused). Earlier releases refuse it; its MoE experts
(``QuarkW4A16Int4MoEMethod``) are not modelled.

Which Quark schemes each release builds was read in ``quark/quark.py`` of every wheel from
0.18.0 and 0.20.0 to 0.33.0: FP8 (``QuarkW8A8Fp8``), static INT8, OCP MX and W4A8 MXFP4-FP8
from 0.18.0; dynamic INT8 from 0.20.0; NVFP4 from 0.22.0; FP8 per-block
(``QuarkW8A8Fp8PerBlock``) from 0.28.0; W4A16 INT4 (``QuarkW4A16Int4``) from 0.31.0.
"""

from __future__ import annotations

import fnmatch
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from qscale.engines import catalogue
from qscale.errors import ConfigError, QscaleError, UnknownFormat
from qscale.formats._api import Resolution, first_match, require_list
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
#: labels of the schemes whose routed experts qscale does not model
_DENSE_ONLY = ("INT8 ", "NVFP4", "INT4 ")
_QSCHEMES = {
    "per_tensor": Strategy.TENSOR,
    "per_channel": Strategy.CHANNEL,
    "per_group": Strategy.GROUP,
    "per_block": Strategy.BLOCK,
}
_MX_PACK = {"fp4": 2}  # values per stored byte along the input dimension


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
    inputs = _args(ispec, f"{where}.input_tensors")
    per_channel = w.strategy == Strategy.CHANNEL
    rule: ShapeRule
    if not per_channel:
        rule = per_tensor
    elif version is not None and version < INT8_SCALE_2D_SINCE:
        rule = per_channel_1d
    else:
        rule = _channel_1d_or_2d
    sym_input = ispec.get("symmetric") is True
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
        return QuantScheme(METHOD, f"{wspec[0].get('dtype')} two-level", w, None, ())
    int8 = _int8(wspec, cfg.get("input_tensors"), version, where)
    if int8 is not None:
        return int8
    int4 = _int4(wspec, cfg.get("input_tensors"), pack_method, version, where)
    if int4 is not None:
        return int4
    w = _args(wspec, f"{where}.weight")
    ispec = cfg.get("input_tensors")
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
    layer_schemes: tuple[tuple[str, Scheme], ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        where = f"{self.config_key}: quantization_config"
        object.__setattr__(self, "global_scheme", _scheme(
            self.global_cfg, f"{where}.global_quant_config", self.version, self.pack_method))
        object.__setattr__(self, "layer_schemes", tuple(
            (p, _scheme(c, f"{where}.layer_quant_config.{p}", self.version, self.pack_method))
            for p, c in self.layer_cfgs))

    def for_engine(self, engine: EngineSpec | None) -> QuarkConfig:
        """The same config as ``engine``'s release builds it."""
        name, version = (engine.engine, engine.version) if engine else ("vllm", None)
        if (name, version) == (self.engine_name, self.version):
            return self
        return QuarkConfig(self.global_cfg, self.layer_cfgs, self.exclude, self.config_key,
                           self.method, version, name, self.pack_method)

    def refusal(self, engine: EngineSpec | None) -> QscaleError | None:
        """A scheme ``engine``'s release refuses to build (``ConfigError``); a W8A8 INT8,
        NVFP4 or W4A16 INT4 config on SGLang, whose Quark loader was not read
        (``UnknownFormat``)."""
        built = self.for_engine(engine)
        schemes = [built.global_scheme, *(s for _, s in built.layer_schemes)]
        for s in schemes:
            if isinstance(s, str):
                return ConfigError(s, hint="re-export it, or deploy on a vLLM release that"
                                   " builds it")
        if built.engine_name != "vllm" and any(
                isinstance(s, QuantScheme) and s.label.startswith(_DENSE_ONLY) for s in schemes):
            return UnknownFormat(f"{self.config_key}: Quark W8A8 INT8, NVFP4 and W4A16 INT4"
                                 f" are modelled as vLLM builds them; {built.engine_name}'s"
                                 " Quark loader was not read",
                                 hint="check with --engine vllm")
        return None

    def resolve(self, module: ModuleInfo) -> Resolution:
        """exclude, then layer_quant_config, then global_quant_config."""
        hit = first_match(module.name, self.exclude)
        if hit is not None:
            return Resolution(None, f"excluded by `{hit}`")
        for pattern, scheme in self.layer_schemes:
            matched = (
                fnmatch.fnmatchcase(module.name, pattern)
                if "*" in pattern
                else module.name in pattern
            )
            if matched:
                return self._checked(module, scheme, f"layer_quant_config `{pattern}`")
        if self.global_scheme is None:
            return Resolution(None, "global_quant_config quantizes no weights")
        return self._checked(module, self.global_scheme, "global_quant_config")

    def _checked(self, module: ModuleInfo, scheme: Scheme, why: str) -> Resolution:
        """The resolution, or QS102 where qscale does not model what the engine builds."""
        if scheme is None or isinstance(scheme, str):  # a refusal: reported by `refusal`
            return Resolution(None, why)
        if not scheme.tensors:
            raise UnknownFormat(
                f"{self.config_key}: Quark scheme {scheme.label} ({why}, `{module.name}`) is not"
                " modelled by qscale (its tensors are not checked)",
                hint="qscale models Quark FP8 per-tensor/per-channel, OCP MX, W8A8 INT8,"
                " NVFP4 and W4A16 INT4")
        expert = module.kind == ModuleKind.FUSED_EXPERTS or ".experts." in module.name
        if expert and scheme.label.startswith(_DENSE_ONLY):
            raise UnknownFormat(
                f"{self.config_key}: Quark {scheme.label} MoE experts (`{module.name}`) are not"
                " modelled (vLLM builds them with a Quark MoE method of quark/quark_moe.py,"
                " w13_/w2_ parameters)",
                hint="the dense layers of this scheme are modelled; MoE experts are not")
        return Resolution(scheme, why)


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
