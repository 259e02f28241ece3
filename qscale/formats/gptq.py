"""GPTQ (``quant_method: gptq``; AutoGPTQ / GPTQModel / AutoRound's ``auto_gptq`` export) and
AWQ (``quant_method: awq``; AutoAWQ / AutoRound's ``auto_awq`` export).

Follows vLLM 0.33 ``AutoGPTQConfig`` / ``AutoAWQConfig`` (``vllm/model_executor/layers/
quantization/auto_gptq.py``, ``auto_awq.py``, ``utils/gptq_utils.py``), which replace the
older gptq / gptq_marlin / awq / awq_marlin configs (all those names map to them):

* GPTQ tensors per Linear: ``qweight`` I32 ``[in/pack, out]``, ``qzeros`` I32
  ``[groups, out/pack]``, ``scales`` ``[groups, out]`` (pack = 32 / bits, groups =
  in // group_size, 1 for ``group_size: -1``). ``g_idx`` is dropped on load
  (``QuantizationConfig.get_checkpoint_weight_mapper`` maps ``.g_idx`` to None).
* AWQ tensors: ``qweight`` I32 ``[in, out/pack]``, ``qzeros`` I32 ``[groups, out/pack]``
  (registered with or without ``zero_point``), ``scales`` ``[groups, out]``.
* vLLM refuses at start-up: GPTQ bits/sym outside (4, sym) / (8, sym) ("Unsupported
  quantization config"), ``desc_act: true`` with a group size ("GPTQ group activation
  ordering (desc_act=True) is no longer supported"), also through a ``dynamic`` rule; AWQ
  bits other than 4.
* Which modules are quantized: ``lm_head`` (a ``ParallelLMHead``) only with ``lm_head: true``;
  GPTQ ``modules_in_block_to_quantize`` matches as a substring of the module name, AWQ
  ``modules_to_not_convert`` likewise; when the list is absent vLLM reads the safetensors
  metadata and quantizes exactly the modules that store a non-float tensor
  (``maybe_update_config``). GPTQ ``dynamic``: the first pattern that ``re.match``-es the
  name wins; ``-:`` leaves the module unquantized, ``+:`` (or no prefix) overrides
  bits / group_size / sym / desc_act (``get_dynamic_override``).
* Routed experts (per-expert ``….experts.<e>.{gate,up,down}_proj`` on disk) load into one
  fused-MoE layer named ``….experts``, whose quantization vLLM decides for that name only:
  GPTQ (``AutoGPTQConfig.get_quant_method`` -> ``get_moe_quant_method``) quantizes it unless a
  ``-:`` dynamic rule matches ``….experts`` (``modules_in_block_to_quantize`` and the metadata
  fallback are not consulted); AWQ (``AutoAWQConfig.get_quant_method``) unless an entry of
  ``modules_to_not_convert`` (or of its metadata fallback, the float-only modules) is a
  substring of ``….experts``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import lru_cache
from typing import TYPE_CHECKING, Any

from qscale.errors import ConfigError
from qscale.formats._api import Resolution
from qscale.formats._layers import is_lm_head
from qscale.modules import ModuleInfo
from qscale.schemes import FLOAT_SCALE, QuantArgs, QuantScheme, Shapes, Strategy, TensorSpec

if TYPE_CHECKING:
    from qscale.engines import EngineSpec

GPTQ = "gptq"
AWQ = "awq"
I32 = frozenset({"I32"})
FLOATS = frozenset({"F16", "BF16", "F32"})
#: (bits, sym) vLLM 0.33 ``AutoGPTQConfig.TYPE_MAP`` builds; AWQ: ``AutoAWQConfig.TYPE_MAP``
GPTQ_TYPES = frozenset({(4, True), (8, True)})
AWQ_BITS = frozenset({4})
#: ``MARLIN_SUPPORTED_GROUP_SIZES`` (vLLM 0.33 ``utils/marlin_utils.py``): GPTQ's linear method
#: calls ``verify_marlin_supported`` in ``__init__`` on every platform
MARLIN_GROUP_SIZES = (-1, 32, 64, 128)
#: the first vLLM release that refuses ``desc_act`` with a group size (0.29.0 builds it)
DESC_ACT_REFUSED_SINCE = (0, 30, 0)


def _groups(group_size: int, inp: int) -> int:
    return 1 if group_size == -1 else inp // group_size


@lru_cache(maxsize=64)
def wna16_scheme(method: str, bits: int, group_size: int, sym: bool) -> QuantScheme:
    """The tensors a GPTQ- or AWQ-packed Linear carries (``method`` ``gptq`` or ``awq``)."""
    pack = 32 // bits
    args = QuantArgs("int", bits, Strategy.CHANNEL if group_size == -1 else Strategy.GROUP,
                     group_size=None if group_size == -1 else group_size, symmetric=sym)

    def zeros(o: int, i: int) -> Shapes:
        return ((_groups(group_size, i), o // pack),)

    def scales(o: int, i: int) -> Shapes:
        return ((_groups(group_size, i), o),)

    if method == GPTQ:
        weight = TensorSpec("qweight", I32, lambda o, i: ((i // pack, o),),
                            lambda s: (s[1], s[0] * pack) if len(s) == 2 else None)
    else:
        weight = TensorSpec("qweight", I32, lambda o, i: ((i, o // pack),),
                            lambda s: (s[1] * pack, s[0]) if len(s) == 2 else None)
    tensors = (weight, TensorSpec("qzeros", I32, zeros), TensorSpec("scales", FLOAT_SCALE, scales))
    gs = "channel" if group_size == -1 else f"g{group_size}"
    label = f"{method.upper()} int{bits} {gs}{'' if sym else ' asym'}"
    #: vLLM 0.33 drops `.g_idx` on load (QuantizationConfig.get_checkpoint_weight_mapper)
    tolerated = frozenset({"g_idx"}) if method == GPTQ else frozenset()
    return QuantScheme(method, label, args, None, tensors, tolerated)


def _int(qc: Mapping[str, Any], keys: tuple[str, ...], where: str, default: Any = None) -> int:
    for k in keys:
        if k in qc:
            v = qc[k]
            if type(v) is not int:
                raise ConfigError(f"{where}: `{k}` must be an integer, got {v!r}")
            return v
    if default is None:
        raise ConfigError(f"{where}: missing `{keys[0]}`")
    return int(default)


def _bool(qc: Mapping[str, Any], key: str, where: str, default: bool | None = None) -> bool:
    v = qc.get(key, default)
    if not isinstance(v, bool):
        raise ConfigError(f"{where}: `{key}` must be true or false, got {v!r}")
    return v


def _group_size(v: int, where: str) -> int:
    if v != -1 and v <= 0:
        raise ConfigError(f"{where}: invalid group_size {v}")
    return v


#: a per-expert module ``<moe>.<e>.<proj>``: vLLM decides for the fused-MoE layer ``<moe>``
_EXPERT = re.compile(r"^(.*\.experts)\.\d+\.[^.]+$")


def _quantized_by_storage(module: ModuleInfo) -> bool:
    """vLLM's metadata fallback: a module is quantized when it stores a non-float tensor."""
    return any(t.dtype not in FLOATS for t in module.tensors.values())


@dataclass(frozen=True, slots=True)
class WNA16Config:
    """A parsed GPTQ or AWQ config."""

    method: str  #: ``gptq`` or ``awq``
    bits: int
    group_size: int
    sym: bool
    lm_head: bool
    #: GPTQ ``modules_in_block_to_quantize`` (substrings); AWQ ``modules_to_not_convert``
    listed: tuple[str, ...] | None
    dynamic: tuple[tuple[str, Mapping[str, Any]], ...] = ()
    config_key: str = "config.json"
    #: why vLLM from :data:`DESC_ACT_REFUSED_SINCE` on refuses this config (group act order,
    #: ``desc_act`` with a group size), as (message, hint); None: it does not
    desc_act_refusal: tuple[str, str] | None = None
    scheme: QuantScheme = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "scheme",
                           wna16_scheme(self.method, self.bits, self.group_size, self.sym))

    def refusal(self, engine: EngineSpec | None) -> ConfigError | None:
        """The error ``engine`` stops on while building this config, or None.

        vLLM 0.30.0 added ``normalize_and_validate_gptq_desc_act``
        (``quantization/utils/gptq_utils.py``), which refuses ``desc_act`` with a group size;
        0.29.x and earlier build it (Marlin act order). SGLang is not modelled here.
        """
        if self.desc_act_refusal is None:
            return None
        if engine is not None and (engine.engine != "vllm" or (
                engine.version is not None and engine.version < DESC_ACT_REFUSED_SINCE)):
            return None
        message, hint = self.desc_act_refusal
        return ConfigError(message, hint=hint)

    def _dynamic(self, name: str) -> tuple[str, Mapping[str, Any]] | None:
        for pattern, overrides in self.dynamic:
            if re.match(pattern.removeprefix("-:").removeprefix("+:"), name):
                return pattern, overrides
        return None

    def _resolve_experts(self, moe: str) -> Resolution:
        """A routed expert: the engine's choice for its fused-MoE layer ``moe``."""
        if self.method == AWQ:
            hit = next((s for s in self.listed or () if s in moe), None)
            if hit is not None:
                return Resolution(None, f"`{moe}` matches modules_to_not_convert (`{hit}`)")
            return Resolution(self.scheme, "quant_method awq (fused MoE)")
        dyn = self._dynamic(moe) if self.dynamic else None
        if dyn is None:
            return Resolution(self.scheme, "quant_method gptq (the fused MoE is quantized"
                              " whatever modules_in_block_to_quantize lists)")
        return self._by_dynamic(*dyn, fused=f" on `{moe}`")

    def _by_dynamic(self, pattern: str, ov: Mapping[str, Any], fused: str = "") -> Resolution:
        if pattern.startswith("-:"):
            return Resolution(None, f"skipped by dynamic `{pattern}`{fused}")
        scheme = wna16_scheme(self.method, int(ov.get("bits", self.bits)),
                              int(ov.get("group_size", self.group_size)),
                              bool(ov.get("sym", self.sym)))
        return Resolution(scheme, f"dynamic `{pattern}`{fused}")

    def resolve(self, module: ModuleInfo) -> Resolution:
        """The engine's choice for one module (see the module docstring)."""
        name = module.name
        if ".experts." in name and (m := _EXPERT.match(name)) is not None:
            return self._resolve_experts(m.group(1))
        if is_lm_head(name) and not self.lm_head:
            return Resolution(None, f"{self.method} quantizes lm_head only with `lm_head: true`")
        if self.listed is not None and self.method == GPTQ:
            if not any(s in name for s in self.listed):
                return Resolution(None, "not in modules_in_block_to_quantize")
        elif self.listed is not None:
            hit = next((s for s in self.listed if s in name), None)
            if hit is not None:
                return Resolution(None, f"listed in modules_to_not_convert (`{hit}`)")
        elif not _quantized_by_storage(module):
            return Resolution(None, "stores only float tensors (the engine reads the"
                              " safetensors dtypes when the config lists no modules)")
        dyn = self._dynamic(name) if self.dynamic else None
        if dyn is None:
            return Resolution(self.scheme, f"quant_method {self.method}")
        return self._by_dynamic(*dyn)


def parse_gptq(qc: Mapping[str, Any], *, config_key: str = "config.json") -> WNA16Config:
    """Parse a ``quant_method: gptq`` config as vLLM 0.33 ``AutoGPTQConfig.from_config``."""
    where = f"{config_key}: quantization_config"
    bits = _int(qc, ("bits",), where)
    group = _group_size(_int(qc, ("group_size",), where), where)
    desc_act = _bool(qc, "desc_act", where, False)
    sym = _bool(qc, "sym", where, True)
    lm_head = _bool(qc, "lm_head", where, False)
    if qc.get("checkpoint_format", "gptq") not in ("gptq", "gptq_v2"):
        raise ConfigError(f"{where}: unknown checkpoint_format {qc.get('checkpoint_format')!r}")
    raw_dyn = qc.get("dynamic") or {}
    if not isinstance(raw_dyn, dict):
        raise ConfigError(f"{where}: `dynamic` must be an object")
    dynamic: list[tuple[str, Mapping[str, Any]]] = []
    refusal: tuple[str, str] | None = None
    for pattern, ov in raw_dyn.items():
        try:
            re.compile(pattern.removeprefix("-:").removeprefix("+:"))
        except re.error as exc:
            raise ConfigError(f"{where}: dynamic: invalid regular expression `{pattern}` ({exc})",
                              ) from None
        ov = ov if isinstance(ov, dict) else {}
        if not pattern.startswith("-:"):
            b, s = ov.get("bits", bits), ov.get("sym", sym)
            g, d = ov.get("group_size", group), ov.get("desc_act", desc_act)
            if d and g != -1 and refusal is None:
                refusal = (
                    f"{where}: dynamic rule `{pattern}` enables desc_act with group_size {g}:"
                    " vLLM ≥ 0.30 refuses GPTQ group activation ordering",
                    "re-export with desc_act=false (or static act order)")
            if g not in MARLIN_GROUP_SIZES:
                raise ConfigError(f"{where}: dynamic rule `{pattern}`: group_size {g}; vLLM 0.33"
                                  f" refuses it (\"Marlin does not support group_size = {g}\")")
            if (b, s) not in GPTQ_TYPES:
                raise ConfigError(f"{where}: dynamic rule `{pattern}`: vLLM 0.33 builds GPTQ"
                                  f" only with bits 4 or 8 and sym=true, got bits={b}, sym={s}")
        dynamic.append((pattern, ov))
    if desc_act and group != -1:
        refusal = (
            f"{where}: desc_act=true with group_size {group}: vLLM ≥ 0.30 refuses GPTQ group"
            " activation ordering (\"no longer supported\")",
            "re-export with desc_act=false (static act order), or use group_size -1,"
            " or deploy on vLLM ≤ 0.29")
    if (bits, sym) not in GPTQ_TYPES:
        raise ConfigError(
            f"{where}: vLLM 0.33 builds GPTQ only with bits 4 or 8 and sym=true, got"
            f" bits={bits}, sym={sym} (\"Unsupported quantization config\")")
    if group not in MARLIN_GROUP_SIZES:
        raise ConfigError(
            f"{where}: GPTQ group_size {group}: vLLM 0.33 refuses it (\"Marlin does not"
            f" support group_size = {group}\"; supported: {list(MARLIN_GROUP_SIZES)})")
    names = _flat(qc.get("modules_in_block_to_quantize"))
    return WNA16Config(GPTQ, bits, group, sym, lm_head, names, tuple(dynamic), config_key,
                       refusal)


def _flat(listed: Any) -> tuple[str, ...] | None:
    """``modules_in_block_to_quantize``, a list or a list of lists, flattened (None: absent)."""
    if not listed:
        return None
    items = listed if isinstance(listed, list) else [listed]
    return tuple(str(x) for item in items for x in (item if isinstance(item, list) else [item]))


def parse_awq(qc: Mapping[str, Any], *, config_key: str = "config.json") -> WNA16Config:
    """Parse a ``quant_method: awq`` config as vLLM 0.33 ``AutoAWQConfig.from_config``."""
    where = f"{config_key}: quantization_config"
    bits = _int(qc, ("w_bit", "bits"), where)
    group = _group_size(_int(qc, ("q_group_size", "group_size"), where), where)
    zero_point = _bool(qc, "zero_point", where)
    lm_head = _bool(qc, "lm_head", where, False)
    # `version` (gemm / gemv / marlin) is not read by vLLM 0.33; a non-GEMM layout
    # shows up as a qweight shape mismatch
    if bits not in AWQ_BITS:
        raise ConfigError(f"{where}: vLLM 0.33 builds AWQ only with 4 bits, got {bits}"
                          " (\"Unsupported num_bits\")")
    listed = qc.get("modules_to_not_convert")
    if listed is not None and not (isinstance(listed, list)
                                   and all(isinstance(x, str) for x in listed)):
        raise ConfigError(f"{where}: `modules_to_not_convert` must be a list of strings")
    return WNA16Config(AWQ, bits, group, not zero_point, lm_head,
                       tuple(listed) if listed else None, (), config_key)
