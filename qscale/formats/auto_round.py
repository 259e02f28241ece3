"""AutoRound (``quant_method: auto-round``), integer data types, as vLLM 0.33's ``INCConfig``
loads it (``vllm/model_executor/layers/quantization/inc/inc.py``, ``inc/config_parser.py``).

``packing_format`` ``auto_round:auto_gptq`` (the default) stores GPTQ-packed tensors,
``auto_round:auto_awq`` AWQ-packed ones (``INCLayerConfig.is_gptq`` / ``is_awq``, also read from
``backend``); the tensors are those of :mod:`qscale.formats.gptq`. Per module: an
``extra_config`` entry (exact name, ``model.``-prefixed name, a ``.``-suffix, or a key with
regex characters matched by ``re.search``) overrides bits / group_size / sym, and bits >= 16
leaves the module unquantized; ``block_name_to_quantize`` / ``to_quant_block_names`` limits
quantization to names starting with one of its entries; the ``lm_head`` is quantized only
through ``extra_config``. FP8 / MXFP data types are not modelled (QS102).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from qscale.errors import ConfigError, UnknownFormat
from qscale.formats._api import BuiltByEveryRelease, Resolution
from qscale.formats._layers import is_lm_head
from qscale.formats.gptq import AWQ, GPTQ, wna16_scheme
from qscale.modules import ModuleInfo

METHOD = "auto-round"
#: ``INCConfig.SUPPORTED_BITS`` / ``SUPPORTED_FORMATS`` / ``SUPPORTED_BACKENDS`` (vLLM 0.33)
BITS = frozenset({2, 3, 4, 5, 6, 7, 8})
INT_FORMATS = ("auto_round:auto_gptq", "auto_round:auto_awq")
BACKENDS = frozenset({"auto", "gptq", "gptq:marlin", "awq", "awq:marlin", "marlin"})
_REGEX_CHARS = frozenset(r"*+?^$()[]{}|\\")


@dataclass(frozen=True, slots=True)
class AutoRoundConfig(BuiltByEveryRelease):
    """A parsed integer AutoRound config."""

    packing: str  #: ``gptq`` or ``awq``: how qweight is packed
    bits: int
    group_size: int
    sym: bool
    blocks: tuple[str, ...] | None
    extra: Mapping[str, Mapping[str, Any]]
    config_key: str = "config.json"
    method: str = METHOD

    def _entry(self, name: str) -> tuple[str, Mapping[str, Any]] | None:
        for key in (name, f"model.{name}"):
            if key in self.extra:
                return key, self.extra[key]
        for key, cfg in self.extra.items():
            if name.endswith(f".{key}"):
                return key, cfg
        for key, cfg in self.extra.items():
            if _REGEX_CHARS & set(key):
                try:
                    if re.search(key, name):
                        return key, cfg
                except re.error:
                    continue
        return None

    def resolve(self, module: ModuleInfo) -> Resolution:
        """``INCConfigParser.resolve`` for one checkpoint module."""
        name = module.name
        hit = self._entry(name) if self.extra else None
        quantized = not is_lm_head(name)
        if hit is None and self.blocks is not None:
            quantized = any(name.startswith(b) for b in self.blocks)
        if hit is None and not quantized:
            why = "lm_head (only an extra_config entry quantizes it)" if is_lm_head(name) \
                else "outside block_name_to_quantize"
            return Resolution(None, why)
        bits, group, sym = self.bits, self.group_size, self.sym
        if hit is not None:
            cfg = hit[1]
            bits = int(cfg.get("bits", bits))
            group = int(cfg.get("group_size", group))
            sym = bool(cfg.get("sym", sym))
            if bits >= 16:
                return Resolution(None, f"extra_config `{hit[0]}` bits {bits}")
        why = f"extra_config `{hit[0]}`" if hit else f"quant_method {METHOD}"
        return Resolution(wna16_scheme(self.packing, bits, group, sym), why)


def parse(qc: Mapping[str, Any], *, config_key: str = "config.json") -> AutoRoundConfig:
    """Parse as ``INCConfig.from_config`` (integer data types only)."""
    where = f"{config_key}: quantization_config"
    data_type = qc.get("data_type", "int")
    if data_type != "int":
        raise UnknownFormat(f"{where}: auto-round data_type {data_type!r} is known to vLLM 0.33,"
                            " not modelled by qscale", hint="qscale models auto-round int")
    bits, group = qc.get("bits"), qc.get("group_size")
    if type(bits) is not int or type(group) is not int:
        raise ConfigError(f"{where}: auto-round needs integer `bits` and `group_size`")
    if bits not in BITS:
        raise ConfigError(f"{where}: vLLM 0.33 refuses auto-round bits {bits}"
                          f" (supported: {sorted(BITS)})")
    if 32 % bits:  # 3/5/6/7 bits: vLLM packs them with a Fraction; not modelled here
        raise UnknownFormat(f"{where}: auto-round {bits}-bit packing is known to vLLM 0.33,"
                            " not modelled by qscale", hint="qscale models 2/4/8-bit auto-round")
    packing = qc.get("packing_format") or INT_FORMATS[0]
    backend = qc.get("backend", qc.get("vllm_backend", "auto"))
    if packing not in INT_FORMATS:
        raise ConfigError(f"{where}: vLLM 0.33 refuses packing_format {packing!r} for int"
                          f" (supported: {', '.join(INT_FORMATS)})")
    if backend not in BACKENDS:
        raise ConfigError(f"{where}: vLLM 0.33 refuses auto-round backend {backend!r}")
    kind = GPTQ if ("gptq" in packing or "gptq" in backend) else AWQ
    blocks = qc.get("block_name_to_quantize", qc.get("to_quant_block_names"))
    if isinstance(blocks, str):
        blocks = blocks.split(",")
    extra = qc.get("extra_config") or {}
    if not isinstance(extra, dict) or not all(isinstance(v, dict) for v in extra.values()):
        raise ConfigError(f"{where}: `extra_config` must map module names to objects")
    sym = qc.get("sym", True)
    return AutoRoundConfig(kind, bits, group, bool(sym),
                           tuple(blocks) if blocks else None, extra, config_key)
