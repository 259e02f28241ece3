"""``quant_method: fp8`` (DeepSeek-V3 / Qwen official FP8): block or per-tensor FP8 weights.

Follows vLLM's ``Fp8Config``: ``weight_block_size`` selects block quantization with
``weight_scale_inv``; otherwise one ``weight_scale`` per tensor, plus ``input_scale`` when the
activation scheme is static. ``ignored_layers`` (falling back to ``modules_to_not_convert``)
names unquantized modules exactly (``is_layer_skipped``, exact mode).

Keys vLLM 0.33.0 ``Fp8Config.from_config`` reads (``quantization/fp8.py``; 0.18.0 and 0.24.0
read them the same way, but ``store_dtype`` only from 0.24.0):

* ``activation_scheme`` is required (``get_from_keys``: "Cannot find any of
  ['activation_scheme']"; SGLang 0.5.12 ``fp8.py`` likewise): a config without it is refused.
* an empty ``ignored_layers`` falls back to ``modules_to_not_convert`` (``if not
  ignored_layers``); SGLang takes the first key present (``get_from_keys_or``), so where the two
  differ SGLang is not checked (QS102).
* ``store_dtype: mxfp4`` builds the MoE experts with ``Mxfp4MoEMethod`` (0.24.0 on); those
  experts are not modelled (QS102). Linear layers stay FP8.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from typing import Any

from qscale.engines import EngineSpec
from qscale.errors import ConfigError, UnknownFormat
from qscale.formats._api import BuiltByEveryRelease, Resolution, SkipList, require_list
from qscale.modules import ModuleInfo, ModuleKind
from qscale.schemes import (
    FLOAT_SCALE,
    FP8,
    QuantArgs,
    QuantScheme,
    Strategy,
    TensorSpec,
    blocks,
    full,
    input_scale_specs,
    per_tensor,
    unpacked,
)

METHOD = "fp8"
_NOT_CONVERTED = Resolution(None, "listed in modules_to_not_convert")


@dataclass(frozen=True, slots=True)
class Fp8Config(BuiltByEveryRelease):
    """A parsed ``quant_method: fp8`` config."""

    scheme: QuantScheme
    ignored: frozenset[str]
    config_key: str = "config.json"
    method: str = METHOD
    #: ``activation_scheme`` absent: every engine read refuses the config
    no_activation_scheme: bool = False
    #: ``ignored_layers`` empty while ``modules_to_not_convert`` is not (SGLang reads the former)
    ignore_keys_differ: bool = False
    store_dtype: str | None = None
    #: the key ``ignored`` was read from: ``ignored_layers``, or ``modules_to_not_convert``
    #: where vLLM falls back to it (Qwen3.5-397B-A17B-FP8 writes only that one)
    skip_key: str = "ignored_layers"
    #: the resolution of every Linear it quantizes, made once (a large MoE has 10^5)
    quantized: Resolution = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        resolution = Resolution(self.scheme, "quant_method fp8 (all Linear layers)")
        object.__setattr__(self, "quantized", resolution)

    def skip_list(self) -> SkipList:
        """``ignored_layers`` (or ``modules_to_not_convert``): exact names, as vLLM matches."""
        return SkipList(self.skip_key, sorted(self.ignored), str.__eq__)

    def refusal(self, engine: EngineSpec | None) -> ConfigError | UnknownFormat | None:
        """What stops ``engine`` building this config, or QS102 where qscale cannot say."""
        if self.no_activation_scheme:
            return ConfigError(
                f"{self.config_key}: quantization_config has no `activation_scheme`; the engine"
                " refuses it (\"Cannot find any of ['activation_scheme'] in the model's"
                " quantization config.\")",
                hint='add "activation_scheme": "dynamic" (or "static" with input scales)',
            )
        if engine is not None and engine.engine != "vllm" and self.ignore_keys_differ:
            return UnknownFormat(
                f"{self.config_key}: `ignored_layers` is empty and `modules_to_not_convert` is"
                f" not; {engine.engine}'s reading of that is not modelled",
                hint="keep one of the two keys",
            )
        return None

    def resolves_experts_alike(self, layers: Collection[str]) -> bool:
        """Whether every routed expert of these MoE layers (``….experts``) resolves as the
        layer's first does: :meth:`resolve` reads a module's name only through the exact
        names of ``ignored``, so it does unless one of those names a module under one of
        the layers (the ``store_dtype`` refusal names no index)."""
        named = [e for e in self.ignored if ".experts." in e]  # every expert's name has it
        heads = tuple(f"{layer}." for layer in layers)
        return not any(e.startswith(heads) for e in named)

    def resolve(self, module: ModuleInfo) -> Resolution:
        """Every Linear is FP8 unless listed."""
        if module.name in self.ignored:
            return _NOT_CONVERTED
        if self.store_dtype == "mxfp4" and (
                module.kind == ModuleKind.FUSED_EXPERTS or ".experts." in module.name):
            raise UnknownFormat(
                f"{self.config_key}: `store_dtype: mxfp4` experts (`{module.name}`) are built"
                " with vLLM's Mxfp4MoEMethod (>= 0.24.0), which qscale does not model for"
                " quant_method fp8",
                hint="the FP8 Linear layers are modelled; these MoE experts are not",
            )
        return self.quantized


def parse(qc: Mapping[str, Any], *, config_key: str = "config.json") -> Fp8Config:
    """Parse a ``quant_method: fp8`` config."""
    where = f"{config_key}: quantization_config"
    act = qc.get("activation_scheme", "dynamic")  # absent: refused (Fp8Config.refusal)
    if act not in ("static", "dynamic"):
        raise ConfigError(f"{where}: activation_scheme must be static or dynamic, got {act!r}")
    block = qc.get("weight_block_size")
    if block is not None:
        if not (
            isinstance(block, list)
            and len(block) == 2
            and all(type(b) is int and b > 0 for b in block)
        ):
            raise ConfigError(f"{where}: weight_block_size must have 2 dimensions, got {block!r}")
        if act != "dynamic":
            raise ConfigError(
                f"{where}: block-wise FP8 supports only the dynamic activation"
                " scheme (vLLM refuses static)"
            )
        w = QuantArgs("float", 8, Strategy.BLOCK, block=(block[0], block[1]))
        specs: tuple[TensorSpec, ...] = (
            TensorSpec("weight", FP8, full, unpacked()),
            TensorSpec("weight_scale_inv", FLOAT_SCALE, blocks(block[0], block[1])),
        )
        label = f"FP8 block {block[0]}x{block[1]}"
        inputs = QuantArgs("float", 8, Strategy.TOKEN, dynamic=True)
    else:
        w = QuantArgs("float", 8, Strategy.TENSOR)
        inputs = QuantArgs("float", 8, Strategy.TENSOR, dynamic=act == "dynamic")
        specs = (
            TensorSpec("weight", FP8, full, unpacked()),
            TensorSpec("weight_scale", FLOAT_SCALE, per_tensor),
            *input_scale_specs(inputs),
        )
        label = f"FP8 per-tensor, {act} act"
    listed = require_list(qc, "ignored_layers", where)
    fallback = require_list(qc, "modules_to_not_convert", where)
    store = qc.get("store_dtype")
    if store is not None and not isinstance(store, str):
        raise ConfigError(f"{where}: store_dtype must be a string, got {store!r}")
    return Fp8Config(
        QuantScheme(METHOD, label, w, inputs, specs),
        frozenset(listed or fallback),  # vLLM: ``if not ignored_layers`` falls back
        config_key,
        no_activation_scheme="activation_scheme" not in qc,
        ignore_keys_differ="ignored_layers" in qc and not listed and bool(fallback),
        store_dtype=store,
        skip_key="modules_to_not_convert" if fallback and not listed else "ignored_layers",
    )
