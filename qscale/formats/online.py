"""``quant_method: experts_int8``: the engine quantizes MoE experts to INT8 at load time, so the
checkpoint itself is unquantized.

vLLM 0.33.0 ``quantization/experts_int8.py``: ``ExpertsInt8Config.from_config`` reads no key;
``get_quant_method`` gives every ``LinearBase`` ``UnquantizedLinearMethod`` and every
``RoutedExperts`` ``Int8OnlineMoEMethod`` (``online/int8.py``), which registers the experts in
the model dtype and quantizes them after loading. 0.18.0 and 0.24.0 load BF16 expert weights
the same way (0.18.0 quantizes inside its ``quantizing_weight_loader``). So every module must
carry its plain BF16/F16 ``weight``, as in an unquantized checkpoint. SGLang 0.5.12 does not
list the method (QS102 there).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from qscale.engines import EngineSpec
from qscale.errors import UnknownFormat
from qscale.formats._api import NoSkipList, Resolution, SameInEveryRelease
from qscale.modules import ModuleInfo

EXPERTS_INT8 = "experts_int8"
_ONLINE = Resolution(None, "experts_int8: the engine quantizes the experts online, on load")


@dataclass(frozen=True, slots=True)
class ExpertsInt8Config(NoSkipList, SameInEveryRelease):
    """A parsed ``quant_method: experts_int8`` config (it has no keys)."""

    config_key: str = "config.json"
    method: str = EXPERTS_INT8

    def refusal(self, engine: EngineSpec | None) -> UnknownFormat | None:
        """SGLang (0.5.12) has no ``experts_int8``: not modelled there."""
        if engine is not None and engine.engine != "vllm":
            return UnknownFormat(
                f"{self.config_key}: quant_method 'experts_int8' is not in {engine.engine}'s"
                " quantization methods as qscale read them; not checked for this engine",
                hint="check with --engine vllm",
            )
        return None

    def resolve(self, module: ModuleInfo) -> Resolution:
        """Every module is stored unquantized."""
        return _ONLINE


def parse_experts_int8(qc: Mapping[str, Any], *, config_key: str = "config.json"
                       ) -> ExpertsInt8Config:
    """Parse ``quant_method: experts_int8`` (vLLM reads no other key)."""
    return ExpertsInt8Config(config_key)
