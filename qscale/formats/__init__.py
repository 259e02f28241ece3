"""Quantization formats, keyed by ``quant_method``; resolve_quantization() assigns every module
its scheme.

Where the config lives follows vLLM: ``config.json:quantization_config`` (root or
``text_config``) first, else ModelOpt's ``hf_quant_config.json``.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any, cast

from qscale._dsv4 import applies as _dsv4_applies
from qscale._fast import maker
from qscale.checkpoint import Checkpoint
from qscale.engines import EngineSpec, parse_engine
from qscale.engines.catalogue import family_or_none
from qscale.engines.families import Family
from qscale.errors import ConfigError, UnknownFormat
from qscale.formats import registry
from qscale.formats._api import QuantFormat, Resolution, first_match, loaded_instance
from qscale.formats._layers import built_unquantized, built_unquantized_texts
from qscale.module_map import Grouped, ModuleMap, group_blocks
from qscale.modules import ModuleInfo, ModuleKind, by_module, modules_of
from qscale.schemes import QuantScheme, TensorSpec

if TYPE_CHECKING:
    from qscale.formats.compressed_tensors import CompressedTensorsConfig


@dataclass(frozen=True, slots=True)
class Parser:
    """How one ``quant_method``'s config is recognised in a checkpoint and parsed. The module
    that parses it is imported when a checkpoint needs it: a check imports its own format's
    parser alone."""

    #: ``module:function`` under ``qscale.formats``; ``function(config, config_key=…,
    #: **inputs)`` gives the format
    target: str
    #: what it reads of the checkpoint besides the config: keyword arguments, each named
    #: after one of :data:`INPUTS` (the safetensors headers, config.json, its dtype, …)
    reads: tuple[str, ...] = ()
    #: ``claims(quant_method, model_type)``: whether it takes over a config written with
    #: another ``quant_method`` (vLLM's ``override_quantization_method``); tried before the
    #: ``quant_method`` lookup
    claims: Callable[[str, str | None], bool] | None = None
    #: files besides config.json that hold its config, read when config.json has none
    config_files: tuple[str, ...] = ()

    def function(self) -> Callable[..., QuantFormat]:
        """The parsing function (its module imported now)."""
        module, _, name = self.target.partition(":")
        return getattr(importlib.import_module(f"qscale.formats.{module}"), name)  # type: ignore[no-any-return]

    def parse(self, config: Mapping[str, Any], **kwargs: Any) -> QuantFormat:
        """The format of ``config``."""
        return self.function()(config, **kwargs)


def _model_dtype(ckpt: Checkpoint) -> str | None:
    """config.json's ``torch_dtype`` (or ``dtype``), text config first: what vLLM's
    ``--dtype auto`` keeps (float32 aside, which it downcasts)."""
    for cfg in (ckpt.config.text, ckpt.config.raw):
        for key in ("torch_dtype", "dtype"):
            if isinstance(cfg.get(key), str):
                return str(cfg[key]).removeprefix("torch.")
    return None


#: what a parser may read of the checkpoint besides its config (:attr:`Parser.reads`)
INPUTS: Mapping[str, Callable[[Checkpoint], Any]] = {
    "files": lambda ckpt: ckpt.files,  # the safetensors headers (torchao's metadata)
    "model_dtype": _model_dtype,  # vLLM builds FP-Quant for one model dtype only
    "architecture": lambda ckpt: ckpt.config.architecture,
    "hf_config": lambda ckpt: ckpt.config.raw,  # config.json, as vLLM's hf_config
}

#: quant_method -> its parser (each key is its module's own method constant: tests hold the
#: two together)
FORMATS: Mapping[str, Parser] = {
    "compressed-tensors": Parser("compressed_tensors:parse"),
    "fp8": Parser("fp8:parse"),
    "fbgemm_fp8": Parser("fbgemm_fp8:parse"),
    "fp_quant": Parser("fp_quant:parse", reads=("model_dtype",)),
    "quark": Parser("quark:parse"),
    "mxfp4": Parser("mxfp4:parse"),
    "modelopt": Parser("modelopt:parse", config_files=("hf_quant_config.json",)),
    "gptq": Parser("gptq:parse_gptq"),
    "awq": Parser("gptq:parse_awq"),
    "auto-round": Parser("auto_round:parse"),
    "experts_int8": Parser("online:parse_experts_int8"),
    "moe_wna16": Parser("moe_wna16:parse_moe_wna16"),
    # vLLM's DeepseekV4FP8Config.override_quantization_method; it reads hf_config too
    "deepseek_v4_fp8": Parser("deepseek_v4_fp8:parse_for_model",
                              reads=("architecture", "hf_config"), claims=_dsv4_applies),
    "inc": Parser("auto_round:parse_inc"),
    # its quantization metadata is in the safetensors headers
    "torchao": Parser("torchao:parse", reads=("files",)),
    **dict.fromkeys(registry.RUNTIME_ONLY, Parser("runtime_only:parse_runtime_only")),
}
#: the parsers that take over other methods' configs, tried first (:attr:`Parser.claims`)
_CLAIMING = tuple(p for p in FORMATS.values() if p.claims is not None)
#: (file, parser) for configs kept outside config.json (:attr:`Parser.config_files`)
_CONFIG_FILES = tuple((f, p) for p in FORMATS.values() for f in p.config_files)
#: Spellings engines accept for the same parser.
ALIASES = {"modelopt_fp4": "modelopt", "modelopt_mixed": "modelopt",
           "modelopt_mxfp8": "modelopt", "mxfp8": "modelopt", "gpt_oss_mxfp4": "mxfp4",
           "auto_gptq": "gptq", "gptq_marlin": "gptq", "auto_awq": "awq", "awq_marlin": "awq"}

#: vLLM 0.33 ``QUANTIZATION_METHODS`` (``vllm/model_executor/layers/quantization/__init__.py``,
#: the ``QuantizationMethods`` literal), plus ``auto-round``, which its ``INCConfig``
#: takes over (``inc/inc.py``, ``override_quantization_method``): :data:`registry.VLLM_0_33`
VLLM_METHODS = frozenset(registry.BY_NAME)
#: methods SGLang 0.5.12 loads that vLLM 0.33 does not list: the keys of
#: ``BASE_QUANTIZATION_METHODS`` in ``sglang/srt/layers/quantization/__init__.py`` (plus
#: ``mlx_q4`` / ``mlx_q8``, registered only on Apple MPS) minus :data:`VLLM_METHODS`
SGLANG_ONLY_METHODS = frozenset({
    "blockwise_int8", "modelopt_fp8", "w8a8_int8", "w8a8_fp8", "bitsandbytes", "gguf", "qoq",
    "w4afp8", "petit_nvfp4", "modelslim", "quark_int4fp8_moe", "mlx_q4", "mlx_q8",
})


def not_modelled(key: str, method: str) -> UnknownFormat:
    """QS102 for a ``quant_method`` qscale has no parser for, saying who knows it."""
    entry = registry.BY_NAME.get(method)
    if entry is not None and entry.why_not:
        return UnknownFormat(
            f"{key}: quant_method {method!r} is known to vLLM 0.33 ({entry.config}), not"
            f" modelled by qscale: {entry.why_not}",
            hint=f"not checked; vLLM 0.33.0 vllm/{entry.source} has the rules",
        )
    if method in VLLM_METHODS:
        who = "known to vLLM 0.33"
    elif method in SGLANG_ONLY_METHODS:
        who = "known to SGLang (not to vLLM 0.33)"
    else:
        who = "unknown to vLLM 0.33 and SGLang"
    return UnknownFormat(
        f"{key}: quant_method {method!r} is {who}, not modelled by qscale",
        hint=f"qscale models: {', '.join(sorted(FORMATS))} (and their aliases)",
    )


def detect_format(ckpt: Checkpoint) -> QuantFormat | None:
    """Parse the checkpoint's quantization config; None for an unquantized checkpoint."""
    qc = ckpt.config.quantization_config
    key = "config.json"
    if qc is None:
        for name, in_file in _CONFIG_FILES:
            if name in ckpt.extra_configs:
                return _parse(in_file, ckpt.extra_configs[name], name, ckpt)
        return None
    method = qc.get("quant_method")
    if not isinstance(method, str):
        raise ConfigError(f"{key}: quantization_config has no `quant_method`")
    method = ALIASES.get(method.lower(), method.lower())
    model_type = ckpt.config.model_type
    parser = next((p for p in _CLAIMING if p.claims and p.claims(method, model_type)),
                  None) or FORMATS.get(method)
    if parser is None:
        raise not_modelled(key, method)
    return _parse(parser, qc, key, ckpt)


def _parse(parser: Parser, qc: Mapping[str, Any], key: str, ckpt: Checkpoint) -> QuantFormat:
    """``parser`` on the config, given the checkpoint inputs it reads."""
    return parser.parse(qc, config_key=key, **{r: INPUTS[r](ckpt) for r in parser.reads})


@dataclass(frozen=True, slots=True)
class ModuleQuant:
    """One module with its resolved scheme and logical weight shape."""

    module: ModuleInfo
    resolution: Resolution
    logical_shape: tuple[int, int] | None  #: (out, in) per expert for fused experts
    #: the scheme, or None when unquantized (``resolution.scheme``, stored: rules read it
    #: 10^6 times on a large MoE)
    scheme: QuantScheme | None = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "scheme", self.resolution.scheme)


@dataclass(frozen=True, slots=True)
class QuantMap:
    """Every module of a checkpoint with its resolved quantization."""

    format: QuantFormat | None
    modules: Mapping[str, ModuleQuant]

    def quantized(self) -> list[ModuleQuant]:
        """Modules with a scheme."""
        return [m for m in self.modules.values() if m.scheme is not None]

    def walk(self, blind: bool = True) -> Iterator[tuple[str, ModuleQuant, int]]:
        """``(name, record, n)`` of the modules in name order. Where ``blind`` (the caller's
        verdict on a module does not depend on its expert index), an alike block of routed
        experts comes once, as its first member with ``n`` its size, and no other member's
        record is built; every other module, and every module when not ``blind``, with 1."""
        mods = self.modules
        if blind and isinstance(mods, ModuleMap):
            for mq, n in mods.units():
                yield mq.module.name, mq, n
        else:
            for name, mq in mods.items():
                yield name, mq, 1

    def where(self, keep: Callable[[ModuleQuant], bool]) -> list[ModuleQuant]:
        """``[m for m in modules.values() if keep(m)]``, for a ``keep`` that judges a module
        only by what an alike block's members share (resolution, scheme, logical shape,
        kind, parameter names, dtypes and shapes; not the name): a block whose first member
        it drops is dropped whole, without building its members' records."""
        mods = self.modules
        if isinstance(mods, ModuleMap) and not any(n > 1 and keep(mq) for mq, n in mods.units()):
            return [mq for mq, _ in mods.units() if keep(mq)]
        return [m for m in mods.values() if keep(m)]

    def schemes(self) -> list[QuantScheme]:
        """Every distinct scheme of the modules, in the order first met."""
        each = (mq for _, mq, _ in self.walk())
        return list({id(m.scheme): m.scheme for m in each if m.scheme is not None}.values())

    def count_quantized(self) -> int:
        """``len(self.quantized())``, without building a record per expert."""
        if isinstance(self.modules, ModuleMap):
            return self.modules.count_quantized()
        return sum(m.scheme is not None for m in self.modules.values())


def logical_shape(
    module: ModuleInfo, spec: TensorSpec | None, values: Mapping[str, Any]
) -> tuple[int, int] | None:
    """(out, in) of a module's weight, from ``weight_shape`` when stored, else the weight."""
    ws = None
    if "weight_shape" in module.tensors:  # values are decoded from stored tensors only
        ws = values.get(module.tensor_name("weight_shape"))
    if ws is not None and ws.size == 2:
        return int(ws[0]), int(ws[1])
    lead = 1 if module.kind == ModuleKind.FUSED_EXPERTS else 0
    if spec is not None and spec.logical is not None and spec.param in module.tensors:
        return spec.logical(module.tensors[spec.param].shape[lead:])
    w = module.tensors.get("weight")
    if w is not None and len(w.shape) == 2 + lead and w.dtype in ("BF16", "F16", "F32"):
        return w.shape[lead], w.shape[lead + 1]
    return None


def resolve_quantization(ckpt: Checkpoint, engine: EngineSpec | str | None = None, *,
                         share_experts: bool = True) -> QuantMap:
    """Assign each module its scheme (only Linear and fused-expert modules can be quantized),
    as ``engine``'s loader builds them (default: the newest vLLM).

    Where it is sound (:func:`_may_share`, :func:`_format_alike`), each alike block of routed
    experts is resolved by its first member and held as one record in a
    :class:`~qscale.module_map.ModuleMap`; ``share_experts=False`` resolves every module on
    its own (the map that one must equal, record for record)."""
    fmt = detect_format(ckpt)
    release = parse_engine(engine) if isinstance(engine, str) else engine or parse_engine(None)
    if fmt is not None:
        fmt = fmt.for_engine(release)  # the config as that release builds it
    if fmt is not None and (err := fmt.refusal(release)) is not None:
        raise err  # a config the engine version refuses to build
    family = family_or_none(ckpt, engine)
    if family is not None and family.engines:  # that engine's own loader facts
        family = family.for_engine(parse_engine(engine).engine if isinstance(engine, str)
                                   else (engine or parse_engine(None)).engine)
    _refuse_startup(family, ckpt, release)
    one = _Resolver(fmt, family, release, ckpt)
    params = by_module(ckpt)
    grouped = group_blocks(params) if share_experts and _may_share(fmt, family, ckpt) else None
    if grouped is not None and _format_alike(fmt, grouped):
        # each block by its first member, in name order with the other modules (the first
        # module that fails to resolve is the one the module-by-module path meets first)
        known: dict[str, ModuleQuant] = {}
        loose, firsts = grouped.loose, grouped.firsts
        for name in sorted((*loose, *firsts)):
            block = firsts.get(name)
            if block is None:
                known[name] = one(name, loose[name])
            else:
                known[name] = block.quant = one(name, block.first)
        return QuantMap(fmt, ModuleMap(grouped.order, known, grouped.blocks))
    return QuantMap(fmt, {name: one(name, module) for name, module in modules_of(params).items()})


class _Resolver:
    """One module's record: the format's resolution, then the engine's and architecture's
    unquantized builds, and the logical shape."""

    def __init__(self, fmt: QuantFormat | None, family: Family | None, release: EngineSpec,
                 ckpt: Checkpoint) -> None:
        self.fmt, self.family, self.release = fmt, family, release
        self.never = family.never_quantized if family else ()
        self.plain = built_unquantized(ckpt.config.architecture)
        #: the resolutions that do not depend on the module's name, made once (they are frozen)
        fixed = {kind: Resolution(None, f"{kind.value} module") for kind in ModuleKind}
        for kind in (ModuleKind.LINEAR, ModuleKind.FUSED_EXPERTS):
            fixed[kind] = Resolution(None, "no quantization config")
        self.fixed = fixed
        self.memo: dict[tuple[str, ...], Resolution | None] = {}  # engine names -> scheme
        self.shape_of = _LogicalShapes(ckpt.values)

    def __call__(self, name: str, module: ModuleInfo) -> ModuleQuant:
        fmt, family = self.fmt, self.family
        if fmt is None or module.kind not in (ModuleKind.LINEAR, ModuleKind.FUSED_EXPERTS):
            res = self.fixed[module.kind]
        else:
            res = _resolve(fmt, family, module, self.release, self.memo)
            if self.plain is not None and res.scheme is not None and (why := self.plain(name)):
                res = Resolution(None, why)
            # endswith(never) first: a cheap test that rules out almost every module
            if family is not None and res.scheme is not None and name.endswith(self.never):
                why = family.builds_unquantized(name)
                if why is not None:
                    res = Resolution(None, f"the engine builds `*{why}` unquantized")
            if family is not None and res.scheme is not None and family.unquantized_prefixes:
                child = family.child_unquantized(name, fmt.method)
                if child is not None:
                    res = Resolution(None, f"the engine builds `{child.rstrip('.')}` without"
                                     f" a quantization config under {fmt.method}")
        spec = res.scheme.weight_spec if res.scheme and res.scheme.tensors else None
        return _module_quant(module, res, self.shape_of(module, spec))


def _may_share(fmt: QuantFormat | None, family: Family | None, ckpt: Checkpoint) -> bool:
    """Whether alike routed experts can resolve as their first one does, as far as the format
    (it says how, ``resolves_experts_alike``: a format without it is resolved module by
    module), the family and the architecture go: no name test of theirs
    (``never_quantized``, ``unquantized_prefixes`` after the family's renames,
    :func:`built_unquantized`) holds text that could tell one expert index from another
    (:func:`qscale.engines.templates.index_blind_literals`). The members of a block store the
    same parameters, dtypes and shapes (:func:`qscale.module_map.group_blocks`), so nothing
    else a resolution reads differs."""
    from qscale.engines.loader import _index_blind
    from qscale.engines.templates import index_blind_literals

    if fmt is not None and getattr(fmt, "resolves_experts_alike", None) is None:
        return False
    if not index_blind_literals(built_unquantized_texts(ckpt.config.architecture)):
        return False
    if family is None:
        return True
    return (index_blind_literals(family.never_quantized)
            and index_blind_literals(p for p, _ in family.unquantized_prefixes)
            and (not family.unquantized_prefixes or _index_blind(family)))


def _format_alike(fmt: QuantFormat | None, grouped: Grouped) -> bool:
    """Whether the format's config resolves every member of each block alike."""
    if fmt is None:
        return True
    alike = getattr(fmt, "resolves_experts_alike")  # noqa: B009 (checked by _may_share)
    return bool(alike({b.layer for b in grouped.blocks.values()}))


class _LogicalShapes:
    """:func:`logical_shape` over one checkpoint's modules, memoized where it reads no more
    than the weight spec, whether the module holds fused experts, and the stored weight's
    shape (no ``weight_shape`` tensor): the 10^5 experts of a large MoE share a handful."""

    def __init__(self, values: Mapping[str, Any]) -> None:
        self._values = values
        #: (id of the spec, fused, stored shape) -> logical shape; the specs outlive the check
        self._known: dict[tuple[int, bool, tuple[int, ...]], tuple[int, int] | None] = {}

    def __call__(self, module: ModuleInfo, spec: TensorSpec | None) -> tuple[int, int] | None:
        stored = module.tensors
        w = None if spec is None or spec.logical is None else stored.get(spec.param)
        if w is None or "weight_shape" in stored:
            return logical_shape(module, spec, self._values)
        key = (id(spec), module.kind == ModuleKind.FUSED_EXPERTS, w[2])  # w.shape
        known = self._known
        if key in known:
            return known[key]
        found = known[key] = logical_shape(module, spec, self._values)
        return found


def _refuse_startup(family: Family | None, ckpt: Checkpoint, release: EngineSpec) -> None:
    """Raise the engine's failure to build the model from this config.json, where the
    family says the release reads a key the config lacks (``Family.reads_quant_config``)."""
    if family is not None and family.reads_quant_config:
        where, qc = engine_quant_config(ckpt)
        err = family.build_refusal(qc, where, release.engine, release.version, release.label)
        if err is not None:
            raise err


@dataclass(frozen=True, slots=True)
class QuantConfigRef:
    """Where the quantization config is stored: file, JSON pointer, and its raw object."""

    file: str  #: "config.json" or "hf_quant_config.json"
    #: e.g. "/quantization_config", "/text_config/quantization_config", "/quantization"
    pointer: str
    raw: Mapping[str, Any]

    def at(self, key: str) -> str:
        """The JSON pointer of one key of the config."""
        return f"{self.pointer}/{key}"


def quant_config_ref(ckpt: Checkpoint) -> QuantConfigRef | None:
    """Where the config :func:`detect_format` parses is stored (None for an unquantized
    checkpoint): config.json's ``quantization_config``, then its ``text_config``'s, then
    ModelOpt's ``hf_quant_config.json`` (its ``quantization`` object when nested)."""
    raw = ckpt.config.raw
    if isinstance(raw.get("quantization_config"), dict):
        return QuantConfigRef("config.json", "/quantization_config", raw["quantization_config"])
    text = raw.get("text_config")
    if isinstance(text, dict) and isinstance(text.get("quantization_config"), dict):
        return QuantConfigRef(
            "config.json", "/text_config/quantization_config", text["quantization_config"]
        )
    hf = ckpt.extra_configs.get("hf_quant_config.json")
    if hf is None:
        return None
    if isinstance(hf.get("quantization"), dict):
        return QuantConfigRef("hf_quant_config.json", "/quantization", hf["quantization"])
    return QuantConfigRef("hf_quant_config.json", "", hf)


def engine_quant_config(ckpt: Checkpoint) -> tuple[str, Any]:
    """(file, value): the quantization config vLLM sets on its model config, which its model
    code reads as ``config.quantization_config``. ``get_config`` (vLLM 0.20.0, 0.22.1 and 0.33.0
    ``vllm/transformers_utils/config.py``) takes config.json's top-level
    ``quantization_config`` and, where that is absent or null, the whole of
    ``hf_quant_config.json`` (ModelOpt 0.29 and before); ``text_config``'s and the other
    quantization files are not read there. ``("config.json", None)`` when neither is present."""
    qc = ckpt.config.raw.get("quantization_config")
    if qc is None and "hf_quant_config.json" in ckpt.extra_configs:
        return "hf_quant_config.json", ckpt.extra_configs["hf_quant_config.json"]
    return "config.json", qc


def _resolve(fmt: QuantFormat, family: Family | None, module: ModuleInfo,
             release: EngineSpec, memo: dict[tuple[str, ...], Resolution | None]
             ) -> Resolution:
    """The format's resolution of one module, compressed-tensors' in the engine's order:
    vLLM (``find_matched_target``, 0.33) and SGLang (0.5.13) try the config's exact and
    ``re:`` targets on the engine's own module name first (the fused ``qkv_proj``, the
    expert probe ``experts.0.gate_proj``), and only then the shard (checkpoint) names and
    the class name ``Linear``: a name target that matches the engine's name wins over a
    ``Linear`` target or another group matching the checkpoint name."""
    res = fmt.resolve(module)
    ct = cast("CompressedTensorsConfig | None",
              loaded_instance(fmt, "compressed_tensors", "CompressedTensorsConfig"))
    if family is None or ct is None:
        return res
    from qscale.formats import compressed_tensors  # loaded: its config is fmt

    if res.reason.startswith(compressed_tensors.IGNORED_BY):
        return res
    names = family.engine_modules(module.name, release.version)
    if names == (module.name,):
        return res
    if names not in memo:  # the experts of a layer share their probe names
        memo[names] = _named_on_engine(ct, names)
    engine = memo[names]
    if engine is not None and engine.scheme != res.scheme:
        return engine  # the same scheme: the checkpoint name's reason is kept
    if res.reason == compressed_tensors.NO_GROUP:
        return _on_engine_names(fmt, family, module, release) or res
    return res


def _named_on_engine(fmt: CompressedTensorsConfig,
                     names: tuple[str, ...]) -> Resolution | None:
    """The scheme a name target gives every one of the engine's names (one scheme: a MoE
    layer's projections must agree), or None."""
    if any(first_match(n, fmt.ignore) for n in names):
        return None  # the engine skips it under its own name: left to the checkpoint name
    found = [fmt.by_name(n) for n in names]
    first = found[0]
    if first is None or first.scheme is None or any(
            r is None or r.scheme != first.scheme for r in found[1:]):
        return None
    return Resolution(first.scheme, f"{first.reason}, on the engine's name `{names[0]}`")


#: how a resolution that also tried the engine's names for a module says so (QS203's fix)
ENGINE_NAMES = "the engine's names"


def _on_engine_names(fmt: QuantFormat, family: Family, module: ModuleInfo,
                     release: EngineSpec) -> Resolution | None:
    """A compressed-tensors scheme found on the engine's names of a module its checkpoint
    name matches to no group. vLLM matches targets against its own module names (the fused
    ``qkv_proj``, DeepSeek-V4's ``attn.fused_wqa_wkv``, the shared experts' ``gate_up_proj``),
    and for a fused MoE layer against ``<experts>.0.<checkpoint name>`` of each projection,
    all three with one scheme (``CompressedTensorsMoEMethod.get_moe_method``; differing
    schemes are its ValueError, left to the checkpoint name here). None when the engine's
    names are the checkpoint's."""
    names = family.engine_modules(module.name, release.version)
    if names == (module.name,):
        return None
    found = _on_names(fmt, module, names)
    from qscale.formats import compressed_tensors  # the only format that asks

    if found is None:
        shown = " / ".join(f"`{n}`" for n in names)
        return Resolution(None, f"{compressed_tensors.NO_GROUP} on its checkpoint name or on"
                          f" {ENGINE_NAMES} {shown}"
                          f"{_experts_built_unquantized(fmt, family, module, release)}")
    return Resolution(found.scheme, f"{found.reason}, on the engine's name `{names[0]}`")


def _on_names(fmt: QuantFormat, module: ModuleInfo, names: tuple[str, ...]) -> Resolution | None:
    """The one scheme the format gives ``module`` under every one of ``names``, or None."""
    found = [fmt.resolve(replace(module, name=n)) for n in names]
    if found[0].scheme is None or any(r.scheme != found[0].scheme for r in found[1:]):
        return None
    return found[0]


def _experts_built_unquantized(fmt: QuantFormat, family: Family, module: ModuleInfo,
                               release: EngineSpec) -> str:
    """Why a routed expert whose probed names match no group is built unquantized, where the
    family says which engine code builds the fused-MoE layer with those names
    (``Family.moe_layer_built_by``); and, where older releases probed other names
    (``Family.moe_layer_names_before``) that the config does match, that those load it
    quantized. Empty for any other module."""
    eng = family.engine_name(f"{module.name}.weight").removesuffix(".weight")
    ex = family.expert_layer_names(eng, release.version)
    if family.moe_layer_built_by is None or ex is None or ex != family.experts:
        return ""
    why = (f": {release.label} builds the routed experts as one fused-MoE layer with the"
           f" checkpoint names `{ex.gate}`/`{ex.up}`/`{ex.down}`"
           f" ({family.moe_layer_built_by}) and takes their scheme from the config group that"
           " matches `<experts>.0.<name>` (`CompressedTensorsMoEMethod.get_moe_method`,"
           " vllm/model_executor/layers/quantization/compressed_tensors/compressed_tensors_moe/"
           "compressed_tensors_moe.py); matching none, it builds them unquantized"
           " (`UnquantizedFusedMoEMethod`), with no parameter for this tensor")
    old = family.moe_layer_names_before
    if old is not None:
        before = (0,)  # any release before the change
        older = family.engine_modules(module.name, before)
        if _on_names(fmt, module, older) is not None:
            since = ".".join(map(str, old[0]))
            why += (f"; releases before {since} probe `{older[0]}`, which the config's"
                    " targets match, and load it quantized")
    return why


_new_module_quant = maker(ModuleQuant)
_set_scheme = vars(ModuleQuant)["scheme"].__set__  # the slot's descriptor


def _module_quant(
    module: ModuleInfo, res: Resolution, shape: tuple[int, int] | None
) -> ModuleQuant:
    """``ModuleQuant(module, res, shape)`` without the frozen ``__init__``'s cost (10^5 per
    check)."""
    mq = _new_module_quant(module, res, shape)
    _set_scheme(mq, res.scheme)
    return mq
