"""compressed-tensors (``quant_method: compressed-tensors``): config groups, targets, ignore.

The schema and its validation follow compressed-tensors' own pydantic models
(``QuantizationArgs.validate_model_after``, ``CompressionFormat``); importing that package
costs seconds and pulls in torch, so the check path mirrors it here and the test suite
compares the two over every preset and every real-tool config. Target and ignore matching
follows vLLM's ``CompressedTensorsConfig``: exact names or ``re:`` regexes (``re.match``),
then the module class (``Linear``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from qscale.errors import ConfigError
from qscale.formats._api import Resolution, first_match, require_list
from qscale.modules import ModuleInfo, ModuleKind
from qscale.schemes import (
    E8M0,
    FLOAT_SCALE,
    FP8,
    U8,
    QuantArgs,
    QuantScheme,
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


def parse_args(raw: Any, where: str) -> QuantArgs:  # noqa: C901 - mirrors one pydantic validator
    """Parse and validate one ``QuantizationArgs`` object, as compressed-tensors does."""
    if not isinstance(raw, dict):
        raise ConfigError(f"{where}: expected an object")
    extra = set(raw) - _ARG_KEYS
    if extra:
        raise ConfigError(
            f"{where}: unknown field(s) {sorted(extra)}", hint=f"valid fields: {sorted(_ARG_KEYS)}"
        )
    qtype = str(raw.get("type", "int")).lower()
    if qtype not in ("int", "float"):
        raise ConfigError(f"{where}: `type` must be int or float, got {qtype!r}")
    num_bits = raw.get("num_bits", 8)
    group_size = raw.get("group_size")
    if group_size is not None and (type(group_size) is not int or group_size < -1):
        raise ConfigError(f"{where}: invalid group_size {group_size!r}")
    block = raw.get("block_structure")
    if isinstance(block, str):
        block = [int(x) for x in block.split("x")]
    if block is not None and (
        not isinstance(block, list)
        or len(block) != 2
        or not all(type(b) is int and b > 0 for b in block)
    ):
        raise ConfigError(f"{where}: block_structure must be [rows, cols], got {block!r}")
    dynamic = raw.get("dynamic", False)
    if isinstance(dynamic, str):
        dynamic = dynamic.lower()
        if dynamic != "local":
            raise ConfigError(f'{where}: dynamic must be true, false or "local"')
    actorder = raw.get("actorder")
    if actorder is True or (isinstance(actorder, str) and actorder.lower() in ("group", "dynamic")):
        raise ConfigError(
            f"{where}: actorder={actorder!r} (group/dynamic activation ordering)"
            " is no longer supported by compressed-tensors or vLLM"
        )
    strategy_raw = raw.get("strategy")
    try:
        strategy = Strategy(strategy_raw.lower()) if isinstance(strategy_raw, str) else None
    except ValueError:
        raise ConfigError(
            f"{where}: unknown strategy {strategy_raw!r}",
            hint=f"valid: {[s.value for s in Strategy]}",
        ) from None
    if strategy is None:
        if group_size is None:
            strategy = Strategy.TENSOR
        elif group_size > 0:
            strategy = Strategy.GROUP
        elif group_size == -1:
            strategy = Strategy.CHANNEL
        else:
            raise ConfigError(f"{where}: invalid group size {group_size}")
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
    return QuantArgs(
        type=qtype,
        num_bits=int(num_bits),
        strategy=strategy,
        group_size=group_size if grouped else None,
        block=(block[0], block[1]) if block else None,
        symmetric=bool(raw.get("symmetric", True)),
        dynamic=dynamic,
    )


def infer_format(w: QuantArgs, inputs: QuantArgs | None) -> str:
    """The compressor compressed-tensors picks when a config names none."""
    if w.type == "float" and w.num_bits == 4:
        if w.strategy == Strategy.TENSOR_GROUP and w.group_size == 16:
            return "nvfp4-pack-quantized"
        return "mxfp4-pack-quantized"
    if w.type == "int" and w.num_bits in (4, 8) and inputs is None:
        return "pack-quantized"
    return "float-quantized" if w.type == "float" else "int-quantized"


def tensor_specs(fmt: str, w: QuantArgs, inputs: QuantArgs | None) -> tuple[TensorSpec, ...]:
    """The tensors compressed-tensors' compressor for ``fmt`` writes for one Linear."""
    zp = (
        ()
        if w.symmetric
        else (
            TensorSpec("weight_zero_point", frozenset({"I8", "I32", "F32", "BF16"}), scale_rule(w)),
        )
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
            per_int = 32 // w.num_bits
            return (
                TensorSpec(
                    "weight_packed", frozenset({"I32"}), packed_in(per_int), unpacked(per_int)
                ),
                TensorSpec("weight_scale", FLOAT_SCALE, scale_rule(w)),
                TensorSpec("weight_shape", frozenset({"I64", "I32"}), shape_vector),
                *zp,
                *input_scale_specs(inputs),
            )
        case "nvfp4-pack-quantized":
            gs = w.group_size or 16
            specs = [
                TensorSpec("weight_packed", U8, packed_in(2), unpacked(2)),
                TensorSpec("weight_scale", FP8, groups(gs)),
                TensorSpec("weight_global_scale", FLOAT_SCALE, per_tensor),
            ]
            if inputs is not None:
                specs.append(TensorSpec("input_global_scale", FLOAT_SCALE, per_tensor))
            return tuple(specs)
        case "mxfp4-pack-quantized":
            return (
                TensorSpec("weight_packed", U8, packed_in(2), unpacked(2)),
                TensorSpec("weight_scale", E8M0, groups(32)),
            )
        case "mxfp8-quantized":
            return (
                TensorSpec("weight", FP8, full, unpacked()),
                TensorSpec("weight_scale", E8M0, groups(32)),
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
class CompressedTensorsConfig:
    """A parsed compressed-tensors ``quantization_config``."""

    groups: tuple[_Group, ...]
    ignore: tuple[str, ...]
    global_format: str | None
    kv_cache: QuantArgs | None
    config_key: str = "config.json"
    method: str = METHOD

    def resolve(self, module: ModuleInfo) -> Resolution:
        """vLLM's order: ignore, then exact/regex targets, then the class name ``Linear``."""
        hit = first_match(module.name, self.ignore)
        if hit is not None:
            return Resolution(None, f"ignored by `{hit}`")
        for g in self.groups:
            t = first_match(module.name, g.targets)
            if t is not None:
                return Resolution(g.scheme, f"config_groups.{g.name} (target `{t}`)")
        if module.kind == ModuleKind.LINEAR:
            for g in self.groups:
                t = next(
                    (t for t in g.targets if not t.startswith("re:") and t.lower() in "linear"),
                    None,
                )
                if t is not None:
                    return Resolution(g.scheme, f"config_groups.{g.name} (target `{t}`)")
        return Resolution(None, "matched by no config group")


def parse(qc: Mapping[str, Any], *, config_key: str = "config.json") -> CompressedTensorsConfig:
    """Parse a compressed-tensors ``quantization_config``."""
    where = f"{config_key}: quantization_config"
    global_format = qc.get("format")
    if global_format is not None and global_format not in FORMATS:
        raise ConfigError(
            f"{where}: unknown format {global_format!r}",
            hint=f"compressed-tensors formats: {', '.join(FORMATS)}",
        )
    raw_groups = qc.get("config_groups") or {}
    if not isinstance(raw_groups, dict):
        raise ConfigError(f"{where}: `config_groups` must be an object")
    parsed = []
    for name, g in raw_groups.items():
        gw = f"{where}.config_groups.{name}"
        if not isinstance(g, dict):
            raise ConfigError(f"{gw}: expected an object")
        targets = tuple(require_list(g, "targets", gw))
        if g.get("weights") is None:
            continue  # activation-only groups carry no weight tensors
        w = parse_args(g["weights"], f"{gw}.weights")
        ia = g.get("input_activations")
        inputs = parse_args(ia, f"{gw}.input_activations") if ia is not None else None
        fmt = g.get("format") or global_format
        if fmt in (None, "mixed-precision"):
            fmt = infer_format(w, inputs)
        if fmt not in FORMATS:
            raise ConfigError(f"{gw}: unknown format {fmt!r}")
        scheme = QuantScheme(
            f"{METHOD}/{fmt}", _label(fmt, w, inputs), w, inputs, tensor_specs(fmt, w, inputs)
        )
        parsed.append(_Group(name, targets, scheme))
    kv = qc.get("kv_cache_scheme")
    return CompressedTensorsConfig(
        groups=tuple(parsed),
        ignore=tuple(require_list(qc, "ignore", where)),
        global_format=global_format,
        kv_cache=parse_args(kv, f"{where}.kv_cache_scheme") if kv else None,
        config_key=config_key,
    )
