"""NVIDIA ModelOpt: ``hf_quant_config.json`` (legacy) or inline ``quant_method: modelopt``.

Follows vLLM's ``ModelOptQuantConfigBase``: ``quant_algo`` (upper-cased) is FP8, NVFP4,
W4A16_NVFP4 or MIXED_PRECISION with per-layer ``quantized_layers``; ``exclude_modules`` /
``ignore`` entries match exactly, as a dotted prefix, or as fnmatch wildcards. Tensors: FP8
``weight`` + 0-d ``weight_scale`` / ``input_scale``; NVFP4 ``weight`` (packed U8),
``weight_scale`` (FP8, one per 16 inputs), ``weight_scale_2`` and ``input_scale`` (0-d).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from qscale.errors import ConfigError, UnknownFormat
from qscale.formats._api import BuiltByEveryRelease, Resolution, Wildcards, require_list
from qscale.modules import ModuleInfo
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
    packed_in,
    per_tensor,
    unpacked,
)

METHOD = "modelopt"
ALGOS = ("FP8", "NVFP4", "W4A16_NVFP4", "MXFP4", "MIXED_PRECISION")


def scheme_for_algo(algo: str, group_size: int = 16) -> QuantScheme:
    """The tensors ModelOpt's HF export writes for one quantized Linear."""
    fp8 = QuantArgs("float", 8, Strategy.TENSOR)
    if algo == "FP8":
        return QuantScheme(
            METHOD,
            "FP8 per-tensor, static act",
            fp8,
            fp8,
            (
                TensorSpec("weight", FP8, full, unpacked()),
                TensorSpec("weight_scale", FLOAT_SCALE, per_tensor),
                TensorSpec("input_scale", FLOAT_SCALE, per_tensor),
            ),
        )
    if algo in ("NVFP4", "W4A16_NVFP4"):
        w = QuantArgs("float", 4, Strategy.TENSOR_GROUP, group_size=group_size)
        act = w if algo == "NVFP4" else None
        specs = [
            TensorSpec("weight", U8, packed_in(2), unpacked(2)),
            TensorSpec("weight_scale", FP8, groups(group_size)),
            TensorSpec("weight_scale_2", FLOAT_SCALE, per_tensor),
        ]
        if act is not None:
            specs.append(TensorSpec("input_scale", FLOAT_SCALE, per_tensor))
        return QuantScheme(METHOD, "NVFP4" if act else "NVFP4 (weight-only)", w, act, tuple(specs))
    if algo == "MXFP4":  # exported by ModelOpt; vLLM's ModelOpt loader refuses it
        mx = QuantArgs("float", 4, Strategy.GROUP, group_size=32, scale_format="e8m0")
        return QuantScheme(
            METHOD,
            "MXFP4",
            mx,
            None,
            (
                TensorSpec("weight", U8, packed_in(2), unpacked(2)),
                TensorSpec("weight_scale", E8M0, groups(32)),
            ),
        )
    raise UnknownFormat(
        f"ModelOpt quant_algo {algo!r} is not modelled",
        hint=f"qscale models ModelOpt {', '.join(ALGOS)}",
    )


@dataclass(frozen=True, slots=True)
class ModelOptConfig(BuiltByEveryRelease):
    """A parsed ModelOpt config."""

    algo: str
    default: QuantScheme | None
    layers: Mapping[str, QuantScheme]  #: MIXED_PRECISION: exact module name -> scheme
    exclude: tuple[str, ...]
    config_key: str = "hf_quant_config.json"
    method: str = METHOD
    #: ``exclude`` compiled once (a large MoE has 10^5 modules, its list 10^2 entries)
    excluded: Wildcards = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "excluded", Wildcards(self.exclude))

    def resolve(self, module: ModuleInfo) -> Resolution:
        """Excluded modules stay BF16; MIXED_PRECISION looks each layer up by name."""
        hit = self.excluded.first(module.name)
        if hit is not None:
            return Resolution(None, f"excluded by `{hit}`")
        if self.algo == "MIXED_PRECISION":
            scheme = self.layers.get(module.name)
            if scheme is None:
                parent = module.name.rsplit(".", 1)[0]
                scheme = self.layers.get(parent)  # e.g. `mlp.experts` covers every expert
            if scheme is None:
                return Resolution(None, "not in quantized_layers")
            return Resolution(scheme, "quantized_layers")
        return Resolution(self.default, f"quant_algo {self.algo}")


def parse(qc: Mapping[str, Any], *, config_key: str = "hf_quant_config.json") -> ModelOptConfig:
    """Parse either the legacy ``{"quantization": {...}}`` file or the inline form."""
    body = qc.get("quantization", qc)
    where = f"{config_key}: quantization"
    if not isinstance(body, dict):
        raise ConfigError(f"{where}: expected an object")
    algo = body.get("quant_algo")
    if not isinstance(algo, str):
        raise ConfigError(f"{where}: missing 'quant_algo'")
    algo = algo.upper()
    if algo not in ALGOS:
        raise UnknownFormat(
            f"{where}: ModelOpt quant_algo {algo!r} is not modelled",
            hint=f"qscale models ModelOpt {', '.join(ALGOS)}",
        )
    group = body.get("group_size", 16)
    if type(group) is not int:
        raise ConfigError(f"{where}: group_size must be an integer")
    key = "exclude_modules" if "exclude_modules" in body else "ignore"
    layers: dict[str, QuantScheme] = {}
    if algo == "MIXED_PRECISION":
        raw = body.get("quantized_layers") or {}
        if not isinstance(raw, dict):
            raise ConfigError(f"{where}: quantized_layers must be an object")
        for name, spec in raw.items():
            a = str(spec.get("quant_algo", "")).upper()
            layers[name] = scheme_for_algo(a, int(spec.get("group_size", group)))
    return ModelOptConfig(
        algo=algo,
        default=None if algo == "MIXED_PRECISION" else scheme_for_algo(algo, group),
        layers=layers,
        exclude=tuple(require_list(body, key, where)),
        config_key=config_key,
    )
