"""AutoRound (``quant_method: auto-round``), integer data types, as vLLM's ``INCConfig``
loads it (``vllm/model_executor/layers/quantization/inc/inc.py``, ``inc/config_parser.py``).

``packing_format`` ``auto_round:auto_gptq`` (the default) stores GPTQ-packed tensors,
``auto_round:auto_awq`` AWQ-packed ones (``INCLayerConfig.is_gptq`` / ``is_awq``, also read from
``backend``); the tensors are those of :mod:`qscale.formats.gptq`. Per module: an
``extra_config`` entry (exact name, ``model.``-prefixed name, a ``.``-suffix, or a key with
regex characters matched by ``re.search``) overrides bits / group_size / sym, and bits >= 16
leaves the module unquantized; ``block_name_to_quantize`` / ``to_quant_block_names`` limits
quantization to names starting with one of its entries; the ``lm_head`` is quantized only
through ``extra_config``.

Which configs a release builds is data (:func:`qscale.engines.wna16.auto_round_facts`, CUDA):
bits outside ``SUPPORTED_BITS``, data types outside ``SUPPORTED_DTYPES``, a ``packing_format``
outside ``SUPPORTED_FORMATS`` and a ``backend`` outside ``SUPPORTED_BACKENDS`` are refused,
each named with the release checked (from 0.29 an int config must also be GPTQ- or AWQ-packed;
0.27-0.28 accept ``auto_round:llm_compressor`` there, which is not modelled: QS102);
GPTQ-packed int layers outside Marlin's (4, sym) / (8, sym) and group sizes are refused from
0.22 (``NotImplementedError``; 0.18–0.21 build them with ``GPTQConfig``); bits 2/3/5/6/7 go to
the Humming kernels from 0.30 (their packing is not modelled: QS102). FP8-block (``fp``) and
MXFP (``mx_fp``) configs are checked against ``INCConfig``'s own validation (0.29 on) and are
otherwise not modelled (QS102).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

from qscale.engines import wna16
from qscale.errors import ConfigError, QscaleError, UnknownFormat
from qscale.formats._api import NoSkipList, Resolution, SameInEveryRelease
from qscale.formats._layers import is_lm_head
from qscale.formats.gptq import AWQ, GPTQ, wna16_scheme

if TYPE_CHECKING:
    from qscale.engines import EngineSpec
from qscale.modules import ModuleInfo

METHOD = "auto-round"
#: the union of ``INCConfig.SUPPORTED_BITS`` over the releases read (vLLM 0.30 on)
BITS = frozenset({2, 3, 4, 5, 6, 7, 8})
#: the GPTQ / AWQ packings (``_validate_int_quantization``, vLLM 0.29 on)
INT_FORMATS = ("auto_round:auto_gptq", "auto_round:auto_awq")
_REGEX_CHARS = frozenset(r"*+?^$()[]{}|\\")


@dataclass(frozen=True, slots=True)
class AutoRoundConfig(NoSkipList, SameInEveryRelease):
    """A parsed integer AutoRound config."""

    packing: str  #: ``gptq`` or ``awq``: how qweight is packed
    bits: int
    group_size: int
    sym: bool
    blocks: tuple[str, ...] | None
    extra: Mapping[str, Mapping[str, Any]]
    config_key: str = "config.json"
    method: str = METHOD
    data_type: str = "int"
    #: the raw settings INCConfig validates for non-int data types
    raw: Mapping[str, Any] | None = None
    packing_format: str = INT_FORMATS[0]  #: as stored (the default when absent)
    backend: str = "auto"
    #: the ``quant_method`` as stored: ``auto-round``, or ``inc`` (INCConfig's own name, which
    #: vLLM 0.33 parses alike; ``method`` stays ``auto-round`` so every rule treats it alike)
    spelling: str = METHOD

    def refusal(self, engine: EngineSpec | None) -> QscaleError | None:
        """What ``engine`` (default: the newest vLLM) does with this config at start-up, on
        CUDA: a ``ConfigError`` where it refuses it, an ``UnknownFormat`` where it builds it in
        a way qscale does not model, None where qscale models what it builds."""
        name, version = (engine.engine, engine.version) if engine else ("vllm", None)
        f = wna16.auto_round_facts(name, version)
        where = f"{self.config_key}: quantization_config"
        if self.spelling != METHOD and (f is None or (version or (0, 33))[:2] != (0, 33)):
            return UnknownFormat(f"{where}: quant_method {self.spelling!r} (INCConfig's own"
                                 " name) is read as auto-round for vLLM 0.33 only; not checked"
                                 f" for {engine.label if engine else name}",
                                 hint="check with --engine vllm==0.33.0, or store"
                                 " quant_method auto-round")
        if f is None:  # SGLang: modelled as vLLM's GPTQ / AWQ packings only
            if self.data_type == "int" and self.packing_format in INT_FORMATS \
                    and self.backend in wna16.AUTO_ROUND_BACKENDS:
                return None
            return UnknownFormat(f"{where}: auto-round packing_format {self.packing_format!r},"
                                 f" backend {self.backend!r} on {name}: not modelled",
                                 hint="qscale models SGLang's GPTQ / AWQ-packed auto-round")
        who = engine.label if engine is not None else f.range_label
        if self.bits not in f.bits:
            return ConfigError(f"{where}: {who} refuses auto-round bits {self.bits}"
                               f" (\"Unsupported weight_bits\"; supported: {sorted(f.bits)})")
        mx = "mx_fp" in self.data_type
        if self.data_type not in f.data_types and not (mx and "mx_fp" in f.data_types):
            return ConfigError(f"{where}: {who} refuses auto-round data_type"
                               f" {self.data_type!r} (\"Unsupported data_type\"; supported:"
                               f" {sorted(f.data_types)})", hint="deploy on vLLM >= 0.29"
                               if "fp" in self.data_type else None)
        if self.packing_format not in f.formats:
            return ConfigError(f"{where}: {who} refuses auto-round packing_format"
                               f" {self.packing_format!r} (\"Unsupported packing_format\";"
                               f" supported: {sorted(f.formats)})")
        if self.backend not in wna16.AUTO_ROUND_BACKENDS:
            return ConfigError(f"{where}: {who} refuses auto-round backend {self.backend!r}"
                               f" (\"Unsupported backend\"; supported:"
                               f" {sorted(wna16.AUTO_ROUND_BACKENDS)})")
        if self.data_type != "int":
            if not f.float_validated:
                return UnknownFormat(f"{where}: auto-round data_type {self.data_type!r} is"
                                     f" accepted by {who} (inc/inc.py), not modelled by qscale",
                                     hint="qscale models auto-round int")
            return _float_refusal(self, where, who)
        if self.packing_format not in INT_FORMATS:
            if f.int_packing_checked:
                return ConfigError(f"{where}: {who} refuses int auto-round with packing_format"
                                   f" {self.packing_format!r} (\"INC int quantization only"
                                   f" supports packing_format in {sorted(INT_FORMATS)}\")")
            return UnknownFormat(f"{where}: {who} accepts int auto-round with packing_format"
                                 f" {self.packing_format!r}; what it builds is not modelled",
                                 hint=f"qscale models {', '.join(INT_FORMATS)}")
        return self._int_refusal(f, where, who)

    def _int_refusal(self, f: wna16.AutoRoundFacts, where: str, who: str
                     ) -> QscaleError | None:
        if self.bits in f.humming_bits:
            return UnknownFormat(f"{where}: {who} builds {self.bits}-bit auto-round on CUDA"
                                 " through the Humming kernels (inc/schemes/"
                                 "inc_wna16_scheme.py); qscale does not model that packing",
                                 hint="qscale models 4/8-bit auto-round on vLLM >= 0.30")
        if self.packing == AWQ:
            if self.bits == 4:
                return None
            return UnknownFormat(f"{where}: {self.bits}-bit AWQ-packed auto-round is not"
                                 " modelled by qscale", hint="qscale models 4-bit AWQ packing")
        marlin = (self.bits, self.sym) in {(4, True), (8, True)} \
            and self.group_size in (-1, 32, 64, 128)
        if marlin:
            return None
        if f.gptq_fallback:  # GPTQConfig builds 2/3/4/8 bits, any group, asymmetric too
            if 32 % self.bits:
                return UnknownFormat(f"{where}: {who} builds {self.bits}-bit auto-round with"
                                     " its non-Marlin GPTQ kernel; qscale does not model"
                                     " 3-bit packing", hint="qscale models 2/4/8-bit GPTQ")
            return None
        return ConfigError(
            f"{where}: {who} refuses auto-round int bits={self.bits}, sym={self.sym},"
            f" group_size={self.group_size} on CUDA (\"Only 4-bit and 8-bit symmetric"
            " quantization is supported with Marlin kernels\"; group sizes -1/32/64/128)",
            hint="re-export 4- or 8-bit symmetric with group_size -1/32/64/128"
            + (", or deploy on vLLM <= 0.21" if self.bits in (2, 4, 8) else ""))

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


def _float_refusal(cfg: AutoRoundConfig, where: str, who: str) -> QscaleError:
    """``INCConfig`` validation of FP8-block (``fp``) and MXFP (``mx_fp``) configs (vLLM 0.29
    on, ``inc/inc.py`` ``_validate_*_quantization`` / ``_validate_raw_config``): the first
    assertion it fails, else not modelled."""
    raw = cfg.raw or {}
    group = raw.get("group_size")
    packing = raw.get("packing_format")
    backend = raw.get("backend", raw.get("vllm_backend", "auto"))
    sym = raw.get("sym", True)
    if "mx_fp" in cfg.data_type:
        need = [("bits", cfg.bits in (4, 8), "4 or 8"), ("group_size", group == 32, "32"),
                ("sym", sym is True, "true"),
                ("packing_format", packing in (None, "auto_round:llm_compressor"),
                 "'auto_round:llm_compressor'"), ("backend", backend == "auto", "'auto'")]
        what = "INC MXFP"
    else:
        need = [("bits", cfg.bits == 8, "8"),
                ("group_size", isinstance(group, list) and len(group) == 2, "a 2-D block"),
                ("sym", sym is True, "true"),
                ("packing_format", packing in (None, "auto_round:fp8"), "'auto_round:fp8'"),
                ("backend", backend == "auto", "'auto'")]
        what = "INC block-wise FP8"
    for key, ok, want in need:
        if not ok:
            return ConfigError(f"{where}: {who} refuses it: {what} needs {key} {want}, got"
                               f" {raw.get(key)!r}")
    return UnknownFormat(f"{where}: auto-round data_type {cfg.data_type!r} is built by {who}"
                         " (inc/schemes), not modelled by qscale",
                         hint="qscale models auto-round int")


def parse_inc(qc: Mapping[str, Any], *, config_key: str = "config.json") -> AutoRoundConfig:
    """``quant_method: inc``: vLLM 0.33 hands it to the same ``INCConfig.from_config`` as
    ``auto-round`` (which it only renames to ``inc``, ``override_quantization_method``), and
    that reads no ``quant_method``: parsed as auto-round, checked for vLLM 0.33 only."""
    return replace(parse(qc, config_key=config_key), spelling="inc")


def parse(qc: Mapping[str, Any], *, config_key: str = "config.json") -> AutoRoundConfig:
    """Parse as ``INCConfig.from_config`` (integer data types only)."""
    where = f"{config_key}: quantization_config"
    data_type = qc.get("data_type", "int")
    if not isinstance(data_type, str):
        raise ConfigError(f"{where}: auto-round `data_type` must be a string")
    data_type = "fp" if data_type == "fp8" else data_type  # INCConfig._normalize_data_type
    bits, group = qc.get("bits"), qc.get("group_size")
    if type(bits) is not int:
        raise ConfigError(f"{where}: auto-round needs an integer `bits`")
    backend = qc.get("backend", qc.get("vllm_backend", "auto"))
    if data_type != "int":  # judged by AutoRoundConfig.refusal (never resolved)
        # INCConfig.from_config's default packing per data type
        block = data_type == "fp" and bits == 8 and isinstance(group, list)
        default = "auto_round:fp8" if block else "auto_round:llm_compressor" \
            if "mx_fp" in data_type else INT_FORMATS[0]
        return AutoRoundConfig(GPTQ, bits, -1, True, None, {}, config_key,
                               data_type=data_type, raw=dict(qc),
                               packing_format=str(qc.get("packing_format") or default),
                               backend=str(backend))
    if type(group) is not int:
        raise ConfigError(f"{where}: auto-round needs integer `bits` and `group_size`")
    if bits not in BITS:
        raise ConfigError(f"{where}: no vLLM release builds auto-round bits {bits}"
                          f" (supported at most: {sorted(BITS)})")
    packing = qc.get("packing_format") or INT_FORMATS[0]
    if not isinstance(packing, str) or not isinstance(backend, str):
        raise ConfigError(f"{where}: auto-round `packing_format` and `backend` must be strings")
    kind = GPTQ if ("gptq" in packing or "gptq" in backend) else AWQ
    blocks = qc.get("block_name_to_quantize", qc.get("to_quant_block_names"))
    if isinstance(blocks, str):
        blocks = blocks.split(",")
    extra = qc.get("extra_config") or {}
    if not isinstance(extra, dict) or not all(isinstance(v, dict) for v in extra.values()):
        raise ConfigError(f"{where}: `extra_config` must map module names to objects")
    sym = qc.get("sym", True)
    return AutoRoundConfig(kind, bits, group, bool(sym),
                           tuple(blocks) if blocks else None, extra, config_key,
                           packing_format=packing, backend=backend)
