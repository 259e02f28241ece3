"""AMD Quark (``quant_method: quark``): global, per-layer and per-type configs, ``exclude``.

Follows vLLM's ``QuarkConfig``: ``exclude`` entries match exactly or as ``re:`` regexes
(``quark/utils.py::should_ignore_layer``); a layer's config is looked up in
``layer_quant_config`` (``*`` patterns by fnmatch, others when the layer name is a substring of
the pattern), then ``layer_type_quant_config``, then ``global_quant_config``.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from qscale.errors import ConfigError
from qscale.formats._api import BuiltByEveryRelease, Resolution, first_match, require_list
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
    input_scale_specs,
    packed_in,
    per_channel_1d,
    per_tensor,
    unpacked,
)

METHOD = "quark"
_QSCHEMES = {
    "per_tensor": Strategy.TENSOR,
    "per_channel": Strategy.CHANNEL,
    "per_group": Strategy.GROUP,
    "per_block": Strategy.BLOCK,
}
_MX_PACK = {"fp4": 2}  # values per stored byte along the input dimension


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


def _scheme(cfg: Mapping[str, Any], where: str) -> QuantScheme | None:
    wspec = cfg.get("weight")
    if wspec is None:
        return None
    if isinstance(wspec, list):  # two-level schemes (NVFP4, W4A8): first entry is the element type
        w = _args(wspec[0], f"{where}.weight[0]")
        return QuantScheme(METHOD, f"{wspec[0].get('dtype')} two-level", w, None, ())
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


@dataclass(frozen=True, slots=True)
class QuarkConfig(BuiltByEveryRelease):
    """A parsed Quark ``quantization_config``."""

    global_scheme: QuantScheme | None
    layer_schemes: tuple[tuple[str, QuantScheme | None], ...]
    exclude: tuple[str, ...]
    config_key: str = "config.json"
    method: str = METHOD

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
                return Resolution(scheme, f"layer_quant_config `{pattern}`")
        if self.global_scheme is None:
            return Resolution(None, "global_quant_config quantizes no weights")
        return Resolution(self.global_scheme, "global_quant_config")


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
    return QuarkConfig(
        global_scheme=_scheme(glob, f"{where}.global_quant_config"),
        layer_schemes=tuple(
            (p, _scheme(c, f"{where}.layer_quant_config.{p}")) for p, c in layers.items()
        ),
        exclude=tuple(require_list(qc, "exclude", where)),
        config_key=config_key,
    )
