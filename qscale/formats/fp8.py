"""``quant_method: fp8`` (DeepSeek-V3 / Qwen official FP8): block or per-tensor FP8 weights.

Follows vLLM's ``Fp8Config``: ``weight_block_size`` selects block quantization with
``weight_scale_inv``; otherwise one ``weight_scale`` per tensor, plus ``input_scale`` when the
activation scheme is static. ``ignored_layers`` (falling back to ``modules_to_not_convert``)
names unquantized modules exactly (``is_layer_skipped``, exact mode).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from qscale.errors import ConfigError
from qscale.formats._api import BuiltByEveryRelease, Resolution, require_list
from qscale.modules import ModuleInfo
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
    #: the resolution of every Linear it quantizes, made once (a large MoE has 10^5)
    quantized: Resolution = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        resolution = Resolution(self.scheme, "quant_method fp8 (all Linear layers)")
        object.__setattr__(self, "quantized", resolution)

    def resolve(self, module: ModuleInfo) -> Resolution:
        """Every Linear is FP8 unless listed."""
        if module.name in self.ignored:
            return _NOT_CONVERTED
        return self.quantized


def parse(qc: Mapping[str, Any], *, config_key: str = "config.json") -> Fp8Config:
    """Parse a ``quant_method: fp8`` config."""
    where = f"{config_key}: quantization_config"
    act = qc.get("activation_scheme", "dynamic")
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
    ignored = qc.get("ignored_layers")
    key = "ignored_layers" if ignored is not None else "modules_to_not_convert"
    return Fp8Config(
        QuantScheme(METHOD, label, w, inputs, specs),
        frozenset(require_list(qc, key, where)),
        config_key,
    )
