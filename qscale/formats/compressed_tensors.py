"""compressed-tensors (``quant_method: compressed-tensors``): config groups, targets, ignore.

The schema and its validation follow compressed-tensors' own pydantic models
(``QuantizationArgs.validate_model_after``, ``CompressionFormat``); importing that package
costs seconds and pulls in torch, so the check path mirrors it here and the test suite
compares the two over every preset and every real-tool config. Target and ignore matching
follows vLLM's ``CompressedTensorsConfig``: exact names or ``re:`` regexes (``re.match``),
then the module class (``Linear``).
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from qscale.engines import EngineSpec
from qscale.errors import ConfigError, UnknownFormat
from qscale.formats._api import (
    BuiltByEveryRelease,
    Resolution,
    SkipList,
    equal_or_regex,
    first_match,
    require_list,
)
from qscale.modules import ModuleInfo, ModuleKind
from qscale.schemes import (
    E8M0,
    FLOAT_SCALE,
    FP8,
    U8,
    QuantArgs,
    QuantScheme,
    ShapeRule,
    Strategy,
    TensorSpec,
    full,
    groups,
    input_scale_specs,
    packed_in,
    per_tensor,
    scale_rule,
    shape_vector,
    unpacked,
)

METHOD = "compressed-tensors"
FORMATS = (
    "dense",
    "sparse-bitmask",
    "sparse-24-bitmask",
    "int-quantized",
    "float-quantized",
    "naive-quantized",
    "pack-quantized",
    "marlin-24",
    "mixed-precision",
    "nvfp4-pack-quantized",
    "mxfp4-pack-quantized",
    "mxfp6-pack-quantized",
    "mxfp8-quantized",
)
#: formats whose tensors qscale does not model: a config using one is partial (QS102)
UNMODELLED_FORMATS = frozenset(
    {"sparse-bitmask", "sparse-24-bitmask", "marlin-24", "mxfp6-pack-quantized"}
)
#: the reason of a module no ignore entry, target or class name matches
NO_GROUP = "matched by no config group"
#: how the reason of a module an ignore entry matches begins
IGNORED_BY = "ignored by"
#: first vLLM release that refuses ``sparsity_config`` (0.21.0 builds it; 0.22.0 refuses)
SPARSITY_REFUSED_SINCE = (0, 22, 0)
_ARG_KEYS = frozenset(
    {
        "num_bits",
        "type",
        "symmetric",
        "group_size",
        "strategy",
        "block_structure",
        "dynamic",
        "actorder",
        "scale_dtype",
        "zp_dtype",
        "observer",
        "observer_kwargs",
    }
)
_DYNAMIC_OK = (Strategy.TOKEN, Strategy.TENSOR, Strategy.TENSOR_GROUP, Strategy.GROUP)
#: The names ``getattr(torch, name)`` resolves to a ``torch.dtype`` (compressed-tensors'
#: ``TorchDtype`` accepts ``"torch.<name>"`` or ``"<name>"``), as of torch 2.13.
TORCH_DTYPES = frozenset(
    {
        *("bool", "bit", "bits8", "bits16", "bits1x8", "bits2x4", "bits4x2"),
        *("uint8", "uint16", "uint32", "uint64", *(f"uint{n}" for n in range(1, 8))),
        *("int8", "int16", "int32", "int64", *(f"int{n}" for n in range(1, 8))),
        *("short", "int", "long", "half", "float", "double", "bfloat16"),
        *("float16", "float32", "float64", "float4_e2m1fn_x2", "float8_e8m0fnu"),
        *("float8_e4m3fn", "float8_e4m3fnuz", "float8_e5m2", "float8_e5m2fnuz"),
        *("complex32", "complex64", "complex128", "cfloat", "cdouble", "chalf"),
        *("qint8", "quint8", "qint32", "quint4x2", "quint2x4"),
    }
)
_TRUE = frozenset({"1", "on", "t", "true", "y", "yes"})
_FALSE = frozenset({"0", "off", "f", "false", "n", "no"})
_INT_TEXT = re.compile(r"[+-]?\d+(_\d+)*(\.0*)?")
_ACTORDER = ("weight", "static")


def _lax_int(value: Any, field: str, where: str) -> int:
    """An ``int`` field as pydantic's lax mode reads it: ints, bools, integral floats, and
    strings holding an integer."""
    if isinstance(value, int):
        return int(value)
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, str) and _INT_TEXT.fullmatch(value.strip()):
        return int(float(value.strip().replace("_", "")))
    raise ConfigError(f"{where}: `{field}` must be an integer, got {value!r}")


def _lax_bool(value: Any, field: str, where: str) -> bool:
    """A ``bool`` field as pydantic's lax mode reads it (0/1, "true"/"no"/...)."""
    if isinstance(value, bool):
        return value
    if isinstance(value, int | float) and value in (0, 1):
        return bool(value)
    if isinstance(value, str) and value.lower() in _TRUE | _FALSE:
        return value.lower() in _TRUE
    raise ConfigError(f"{where}: `{field}` must be a boolean, got {value!r}")


def torch_dtype_name(value: Any, field: str, where: str) -> str | None:
    """A ``TorchDtype`` field (``scale_dtype``, ``zp_dtype``): None or a torch dtype name."""
    if value is None:
        return None
    name = value.removeprefix("torch.") if isinstance(value, str) else None
    if name not in TORCH_DTYPES:
        raise ConfigError(f"{where}: `{field}` is not a torch dtype: {value!r}")
    return name


def _check_plain_fields(raw: Mapping[str, Any], where: str) -> None:
    """Fields qscale does not use, validated as pydantic types them."""
    for key in ("scale_dtype", "zp_dtype"):
        torch_dtype_name(raw.get(key), key, where)
    observer = raw.get("observer")
    if observer is not None and not isinstance(observer, str):
        raise ConfigError(f"{where}: `observer` must be a string, got {observer!r}")
    if "observer_kwargs" in raw and not isinstance(raw["observer_kwargs"], dict):
        raise ConfigError(f"{where}: `observer_kwargs` must be an object")
    actorder = raw.get("actorder")
    if actorder is True or (isinstance(actorder, str) and actorder.lower() in ("group", "dynamic")):
        raise ConfigError(
            f"{where}: actorder={actorder!r} (group/dynamic activation ordering)"
            " is no longer supported by compressed-tensors or vLLM"
        )
    if isinstance(actorder, str) and actorder not in _ACTORDER:
        raise ConfigError(f"{where}: unknown actorder {actorder!r} (valid: weight, static)")
    if actorder is not None and not isinstance(actorder, str):
        _lax_bool(actorder, "actorder", where)


def _group_size(raw: Mapping[str, Any], where: str) -> int | None:
    value = raw.get("group_size")
    if value is None:
        return None
    if isinstance(value, str):  # compressed-tensors compares it with -1 before coercing
        raise ConfigError(f"{where}: invalid group_size {value!r}")
    group_size = _lax_int(value, "group_size", where)
    if group_size < -1:
        raise ConfigError(f"{where}: invalid group_size {group_size}")
    return group_size


def _block(raw: Mapping[str, Any], where: str) -> tuple[int, int] | None:
    value = raw.get("block_structure")
    if value is None:
        return None
    block: Any = value
    if isinstance(value, str):  # backward-compatible "128x128"
        try:
            block = [int(x) for x in value.split("x")]
        except ValueError:
            block = None
    if (
        not isinstance(block, list | tuple)
        or len(block) != 2
        or not all(isinstance(b, int) and b > 0 for b in block)
    ):
        raise ConfigError(f"{where}: block_structure must be [rows, cols], got {value!r}")
    return int(block[0]), int(block[1])


def _dynamic(raw: Mapping[str, Any], where: str) -> bool | str:
    value = raw.get("dynamic", False)
    if isinstance(value, str):
        if value.lower() != "local":
            raise ConfigError(f'{where}: dynamic must be true, false or "local", got {value!r}')
        return "local"
    return _lax_bool(value, "dynamic", where)


def _strategy(raw: Mapping[str, Any], group_size: int | None, where: str) -> Strategy:
    value = raw.get("strategy")
    if value is None:  # inferred from group_size
        if group_size is None:
            return Strategy.TENSOR
        if group_size > 0:
            return Strategy.GROUP
        if group_size == -1:
            return Strategy.CHANNEL
        raise ConfigError(f"{where}: invalid group size {group_size}")
    try:
        return Strategy(value.lower() if isinstance(value, str) else value)
    except ValueError:
        raise ConfigError(
            f"{where}: unknown strategy {value!r}", hint=f"valid: {[s.value for s in Strategy]}"
        ) from None


def parse_args(raw: Any, where: str) -> QuantArgs:
    """Parse and validate one ``QuantizationArgs`` object, as compressed-tensors does (vLLM
    calls ``QuantizationArgs.model_validate`` on every ``weights`` / ``input_activations``)."""
    if not isinstance(raw, dict):
        raise ConfigError(f"{where}: expected an object")
    extra = set(raw) - _ARG_KEYS
    if extra:
        raise ConfigError(
            f"{where}: unknown field(s) {sorted(extra)}", hint=f"valid fields: {sorted(_ARG_KEYS)}"
        )
    qtype = raw.get("type", "int")
    if not isinstance(qtype, str) or qtype.lower() not in ("int", "float"):
        raise ConfigError(f"{where}: `type` must be int or float, got {qtype!r}")
    qtype = qtype.lower()
    num_bits = _lax_int(raw.get("num_bits", 8), "num_bits", where)
    symmetric = _lax_bool(raw.get("symmetric", True), "symmetric", where)
    group_size = _group_size(raw, where)
    block = _block(raw, where)
    dynamic = _dynamic(raw, where)
    _check_plain_fields(raw, where)
    strategy = _strategy(raw, group_size, where)
    _check_combination(strategy, group_size, block, dynamic, where)
    if qtype == "float" and num_bits not in (4, 6, 8) and raw.get("zp_dtype") is None:
        # QuantizationArgs.pytorch_dtype() raises NotImplementedError for other float widths
        raise ConfigError(f"{where}: float quantization supports 4, 6 or 8 bits, not {num_bits}")
    grouped = strategy in (Strategy.GROUP, Strategy.TENSOR_GROUP)
    return QuantArgs(
        type=qtype,
        num_bits=num_bits,
        strategy=strategy,
        group_size=group_size if grouped else None,
        block=block,
        symmetric=symmetric,
        dynamic=dynamic,
    )


def _check_combination(
    strategy: Strategy,
    group_size: int | None,
    block: tuple[int, int] | None,
    dynamic: bool | str,
    where: str,
) -> None:
    """The cross-field rules of ``QuantizationArgs.validate_model_after``."""
    if strategy == Strategy.TOKEN and not dynamic:
        raise ConfigError(f"{where}: static token quantization is not possible (set dynamic)")
    grouped = strategy in (Strategy.GROUP, Strategy.TENSOR_GROUP)
    if grouped and (group_size is None or group_size <= 0):
        raise ConfigError(f"{where}: strategy {strategy.value} needs a positive group_size")
    if group_size is not None and group_size > 0 and not grouped:
        raise ConfigError(f"{where}: group_size {group_size} needs strategy group")
    if (strategy == Strategy.BLOCK) != (block is not None):
        raise ConfigError(f"{where}: block strategy and block_structure go together")
    if dynamic and strategy not in _DYNAMIC_OK:
        raise ConfigError(
            f"{where}: dynamic quantization needs strategy token, tensor, group or"
            f" tensor_group, not {strategy.value}"
        )
    if dynamic == "local" and strategy != Strategy.TENSOR_GROUP:
        raise ConfigError(f'{where}: dynamic "local" needs strategy tensor_group')


def infer_format(w: QuantArgs, inputs: QuantArgs | None, *, scale_dtype: str | None = None) -> str:
    """The compressor compressed-tensors picks when a config names none: the first of
    ``COMPRESSION_FORMAT_PRIORITY`` whose ``can_compress`` accepts the scheme
    (``scale_dtype``: the weights' torch dtype name, which tells MXFP8 from FP8)."""
    if w.type == "float":
        if w.group_size == 32 and w.num_bits in (4, 6):
            return f"mxfp{w.num_bits}-pack-quantized"
        if w.group_size == 32 and w.num_bits == 8 and scale_dtype == "uint8":
            return "mxfp8-quantized"
        if w.group_size == 16 and w.num_bits == 4:
            return "nvfp4-pack-quantized"
    if inputs is not None:
        return "float-quantized" if w.type == "float" else "int-quantized"
    if w.type == "int" and 1 <= w.num_bits <= 8:
        return "pack-quantized"
    return "naive-quantized"


def _packed_int32(bits: int) -> ShapeRule:
    """``weight_packed``: ``32 // bits`` values per int32 (older compressed-tensors, and the
    only layout for 2, 4 and 8 bits), or dense cross-word packing, ``ceil(in * bits / 32)``
    words (compressed-tensors >= 0.20 for 3, 5, 6 and 7 bits)."""
    per_int = 32 // bits
    return lambda o, i: tuple(
        dict.fromkeys(((o, math.ceil(i / per_int)), (o, math.ceil(i * bits / 32))))
    )


def _packed_zero_point(w: QuantArgs) -> tuple[TensorSpec, ...]:
    """pack-quantized packs the zero points of group and channel strategies along the output
    dimension into int32 (``pack_to_int32(zp, packed_dim=0)``; vLLM's WNA16 registers them so);
    other strategies keep the unpacked int8 zero point."""
    rule = scale_rule(w)
    if w.strategy not in (Strategy.GROUP, Strategy.CHANNEL):
        return (TensorSpec("weight_zero_point", frozenset({"I8", "I32"}), rule),)
    bits = w.num_bits
    return (
        TensorSpec(
            "weight_zero_point",
            frozenset({"I32"}),
            lambda o, i: tuple(
                dict.fromkeys((math.ceil(o * bits / 32), s[1]) for s in rule(o, i) if len(s) == 2)
            ),
        ),
    )


def tensor_specs(fmt: str, w: QuantArgs, inputs: QuantArgs | None) -> tuple[TensorSpec, ...]:
    """The tensors compressed-tensors' compressor for ``fmt`` writes for one Linear."""
    # Every compressor writes a zero point for asymmetric weights (FP4 ones in FP8 or U8).
    zp_dtypes = {"I8", "I32", "F32", "BF16"} | ({"F8_E4M3", "U8"} if w.type == "float" else set())
    zp = (
        ()
        if w.symmetric
        else (TensorSpec("weight_zero_point", frozenset(zp_dtypes), scale_rule(w)),)
    )
    match fmt:
        case "float-quantized" | "int-quantized" | "naive-quantized":
            wdt = FP8 if w.type == "float" else frozenset({"I8"})
            return (
                TensorSpec("weight", wdt, full, unpacked()),
                TensorSpec("weight_scale", FLOAT_SCALE, scale_rule(w)),
                *zp,
                *input_scale_specs(inputs),
            )
        case "pack-quantized":
            if not 1 <= w.num_bits <= 8:  # pack_to_int32 refuses; no engine kernel either
                raise ConfigError(f"pack-quantized packs 1 to 8 bit integers, not {w.num_bits}")
            per_int = 32 // w.num_bits
            return (
                TensorSpec(
                    "weight_packed",
                    frozenset({"I32"}),
                    _packed_int32(w.num_bits),
                    unpacked(per_int),
                ),
                TensorSpec("weight_scale", FLOAT_SCALE, scale_rule(w)),
                TensorSpec("weight_shape", frozenset({"I64", "I32"}), shape_vector),
                *(_packed_zero_point(w) if zp else ()),
                *input_scale_specs(inputs),
            )
        case "nvfp4-pack-quantized":
            gs = w.group_size or 16
            specs = [
                TensorSpec("weight_packed", U8, packed_in(2), unpacked(2)),
                TensorSpec("weight_scale", FP8, groups(gs)),
                TensorSpec("weight_global_scale", FLOAT_SCALE, per_tensor),
                *zp,
            ]
            if inputs is not None:
                specs.append(TensorSpec("input_global_scale", FLOAT_SCALE, per_tensor))
            return tuple(specs)
        case "mxfp4-pack-quantized":
            return (
                TensorSpec("weight_packed", U8, packed_in(2), unpacked(2)),
                TensorSpec("weight_scale", E8M0, groups(32)),
                *zp,
            )
        case "mxfp8-quantized":
            return (
                TensorSpec("weight", FP8, full, unpacked()),
                TensorSpec("weight_scale", E8M0, groups(32)),
                *zp,
            )
    return ()  # dense, sparse and marlin formats: not modelled tensor by tensor


_LABELS = {
    "nvfp4-pack-quantized": "NVFP4",
    "mxfp4-pack-quantized": "MXFP4",
    "mxfp8-quantized": "MXFP8",
}


def _label(fmt: str, w: QuantArgs, inputs: QuantArgs | None) -> str:
    if fmt in _LABELS:
        return _LABELS[fmt] + (
            "" if inputs is not None or fmt != "nvfp4-pack-quantized" else " (weight-only)"
        )
    if fmt == "pack-quantized":
        g = f" g{w.group_size}" if w.group_size else f" {w.strategy.value}"
        return f"W{w.num_bits}A16{g}"
    kind = "FP8" if w.type == "float" and w.num_bits == 8 else f"{w.type.upper()}{w.num_bits}"
    strat = f"block {w.block[0]}x{w.block[1]}" if w.block else f"per-{w.strategy.value}"
    act = "weight-only" if inputs is None else ("dynamic act" if inputs.dynamic else "static act")
    return f"{kind} {strat}, {act}"


@dataclass(frozen=True, slots=True)
class _Group:
    name: str
    targets: tuple[str, ...]
    scheme: QuantScheme


@dataclass(frozen=True, slots=True)
class CompressedTensorsConfig(BuiltByEveryRelease):
    """A parsed compressed-tensors ``quantization_config``."""

    groups: tuple[_Group, ...]
    ignore: tuple[str, ...]
    global_format: str | None
    kv_cache: QuantArgs | None
    config_key: str = "config.json"
    method: str = METHOD
    #: ``sparsity_config.targets`` (non-empty: a sparse checkpoint)
    sparse_targets: tuple[str, ...] = ()
    #: formats in the config whose tensors qscale does not model (sparse, marlin-24, mxfp6)
    unmodelled_formats: tuple[str, ...] = ()

    def skip_list(self) -> SkipList:
        """``ignore``: exact names and ``re:`` regexes."""
        return SkipList("ignore", self.ignore, equal_or_regex)

    def refusal(self, engine: EngineSpec | None) -> ConfigError | UnknownFormat | None:
        """vLLM >= 0.22 refuses any ``sparsity_config`` with targets
        (``CompressedTensorsConfig._parse_sparsity_config``, 0.22.0 to 0.33.0; 0.21.0 still
        builds sparse-24 schemes); other sparse or unmodelled formats are QS102."""
        if self.sparse_targets and (engine is None or (engine.engine == "vllm" and (
                engine.version is None or engine.version >= SPARSITY_REFUSED_SINCE))):
            return ConfigError(
                f"{self.config_key}: quantization_config.sparsity_config targets"
                f" {list(self.sparse_targets)[:3]}; vLLM >= 0.22 refuses it (\"Sparsity support"
                " has been removed from compressed-tensors.\")",
                hint="use a checkpoint without sparsity, or vLLM <= 0.21",
            )
        if self.sparse_targets or self.unmodelled_formats:
            what = ", ".join(dict.fromkeys(
                (*self.unmodelled_formats, *(("sparsity_config",) if self.sparse_targets
                                             else ()))))
            return UnknownFormat(
                f"{self.config_key}: compressed-tensors {what} is not modelled by qscale"
                " (its tensors are not checked)",
                hint="qscale models the dense quantized formats: " + ", ".join(
                    f for f in FORMATS if f not in UNMODELLED_FORMATS and f != "dense"),
            )
        return None

    def by_name(self, name: str) -> Resolution | None:
        """The first group whose exact or ``re:`` target matches ``name`` (ignore entries and
        class targets not applied), or None."""
        for g in self.groups:
            t = first_match(name, g.targets)
            if t is not None:
                return Resolution(g.scheme, f"config_groups.{g.name} (target `{t}`)")
        return None

    def resolve(self, module: ModuleInfo) -> Resolution:
        """vLLM's order: ignore, then exact/regex targets, then the class name ``Linear``."""
        hit = first_match(module.name, self.ignore)
        if hit is not None:
            return Resolution(None, f"{IGNORED_BY} `{hit}`")
        named = self.by_name(module.name)
        if named is not None:
            return named
        if module.kind == ModuleKind.LINEAR:
            for g in self.groups:
                t = next(
                    (t for t in g.targets if not t.startswith("re:") and t.lower() in "linear"),
                    None,
                )
                if t is not None:
                    return Resolution(g.scheme, f"config_groups.{g.name} (target `{t}`)")
        return Resolution(None, NO_GROUP)


def _patterns(obj: Mapping[str, Any], key: str, where: str) -> list[str]:
    """``targets`` / ``ignore``: names or ``re:`` regexes, compiled here so that a bad one is
    reported with the key it sits under."""
    patterns = require_list(obj, key, where)
    for p in patterns:
        if p.startswith("re:"):
            try:
                re.compile(p[3:])
            except re.error as exc:
                raise ConfigError(
                    f"{where}: `{key}` has an invalid regular expression `{p}` ({exc})"
                ) from None
    return patterns


def parse(qc: Mapping[str, Any], *, config_key: str = "config.json") -> CompressedTensorsConfig:
    """Parse a compressed-tensors ``quantization_config``."""
    where = f"{config_key}: quantization_config"
    global_format = qc.get("format")
    if global_format is not None and global_format not in FORMATS:
        raise ConfigError(
            f"{where}: unknown format {global_format!r}",
            hint=f"compressed-tensors formats: {', '.join(FORMATS)}",
        )
    raw_groups = qc.get("config_groups")
    if raw_groups is None:
        raw_groups = {}
    if not isinstance(raw_groups, dict):
        raise ConfigError(f"{where}: `config_groups` must be an object")
    parsed = []
    for name, g in raw_groups.items():
        gw = f"{where}.config_groups.{name}"
        if not isinstance(g, dict):
            raise ConfigError(f"{gw}: expected an object")
        targets = tuple(_patterns(g, "targets", gw))
        if g.get("weights") is None:
            continue  # activation-only groups carry no weight tensors
        w = parse_args(g["weights"], f"{gw}.weights")
        ia = g.get("input_activations")
        inputs = parse_args(ia, f"{gw}.input_activations") if ia is not None else None
        fmt = g.get("format") or global_format
        if fmt in (None, "mixed-precision"):
            sd = torch_dtype_name(g["weights"].get("scale_dtype"), "scale_dtype", gw)
            fmt = infer_format(w, inputs, scale_dtype=sd)
        if fmt not in FORMATS:
            raise ConfigError(f"{gw}: unknown format {fmt!r}")
        try:
            specs = tensor_specs(fmt, w, inputs)
        except ConfigError as exc:
            raise ConfigError(f"{gw}: {exc.message}") from None
        scheme = QuantScheme(f"{METHOD}/{fmt}", _label(fmt, w, inputs), w, inputs, specs)
        parsed.append(_Group(name, targets, scheme))
    kv = qc.get("kv_cache_scheme")
    sparsity = qc.get("sparsity_config") or {}
    if not isinstance(sparsity, dict):
        raise ConfigError(f"{where}: `sparsity_config` must be an object")
    used = [global_format, *(g.scheme.format.rpartition("/")[2] for g in parsed)]
    return CompressedTensorsConfig(
        groups=tuple(parsed),
        ignore=tuple(_patterns(qc, "ignore", where)),
        global_format=global_format,
        kv_cache=parse_args(kv, f"{where}.kv_cache_scheme") if kv else None,
        config_key=config_key,
        sparse_targets=tuple(_patterns(sparsity, "targets", f"{where}.sparsity_config")),
        unmodelled_formats=tuple(dict.fromkeys(f for f in used if f in UNMODELLED_FORMATS)),
    )
