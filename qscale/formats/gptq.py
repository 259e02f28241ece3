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
* What each release refuses at start-up is versioned data (:mod:`qscale.engines.wna16`,
  :meth:`WNA16Config.refusal`): GPTQ outside Marlin's (4, sym) / (8, sym) and group sizes
  -1/32/64/128 ("Unsupported quantization config", "Marlin does not support group_size")
  from 0.22 on (0.18–0.21 build the rest, 2/3/4/8 bits, with the exllama GPTQ kernel);
  ``desc_act: true`` with a group size from 0.30 on ("GPTQ group activation ordering
  (desc_act=True) is no longer supported"), also through a ``dynamic`` rule; AWQ bits other
  than 4 in every release.
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

from qscale.engines import wna16
from qscale.errors import ConfigError, QscaleError, UnknownFormat
from qscale.formats._api import NoSkipList, Resolution, SameInEveryRelease
from qscale.formats._layers import is_lm_head
from qscale.modules import ModuleInfo
from qscale.schemes import FLOAT_SCALE, QuantArgs, QuantScheme, Shapes, Strategy, TensorSpec

if TYPE_CHECKING:
    from qscale.engines import EngineSpec

GPTQ = "gptq"
AWQ = "awq"
I32 = frozenset({"I32"})
FLOATS = frozenset({"F16", "BF16", "F32"})
#: which (bits, sym, group, desc_act) each release builds, refuses or builds with act order:
#: :mod:`qscale.engines.wna16` (versioned data, with the files it was read from)


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
class WNA16Config(NoSkipList, SameInEveryRelease):
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
    desc_act: bool = False  #: GPTQ act order (``desc_act``), as the config states it
    scheme: QuantScheme = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "scheme",
                           wna16_scheme(self.method, self.bits, self.group_size, self.sym))

    def _variants(self) -> list[tuple[str, int, bool, int, bool]]:
        """(where, bits, sym, group, desc_act) of the config and of each positive ``dynamic``
        rule, the way the engine validates them."""
        out = [("", self.bits, self.sym, self.group_size, self.desc_act)]
        for pattern, ov in self.dynamic:
            if not pattern.startswith("-:"):
                out.append((f"dynamic rule `{pattern}`: ", int(ov.get("bits", self.bits)),
                            bool(ov.get("sym", self.sym)),
                            int(ov.get("group_size", self.group_size)),
                            bool(ov.get("desc_act", self.desc_act))))
        return out

    def refusal(self, engine: EngineSpec | None) -> QscaleError | None:
        """The error ``engine`` (default: the newest vLLM) stops on while building this config,
        as :mod:`qscale.engines.wna16` records it per release, or None.

        An :class:`UnknownFormat` for a config the release builds in a way qscale does not
        model (3-bit GPTQ through the exllama kernel of vLLM < 0.22 and of SGLang). SGLang's
        row: :data:`qscale.engines.wna16.SGLANG` (read in 0.5.23)."""
        name, version = (engine.engine, engine.version) if engine else ("vllm", None)
        facts = wna16.facts(name, version)
        if facts is None:
            return None
        if engine is not None and engine.version is not None:
            who = engine.label
        else:  # the newest release: the range of the row that decides, not the profile's
            who = name + (facts.range_label if facts.low > (0,) else "")
        where = f"{self.config_key}: quantization_config"
        if self.method == AWQ:
            if self.bits in facts.awq_bits or (
                    self.bits in facts.awq_marlin_bits
                    and self.group_size in facts.marlin_group_sizes):
                return None
            only = sorted(facts.awq_bits | facts.awq_marlin_bits)
            return ConfigError(f"{where}: {who} builds AWQ only with"
                               f" {' or '.join(map(str, only))} bits"
                               + (" (8 with Marlin group sizes)" if 8 in only else "")
                               + f", got {self.bits} (\"Unsupported num_bits\")",
                               hint="re-export with 4-bit AWQ, or as GPTQ / compressed-tensors")
        for rule, bits, sym, group, desc_act in self._variants():
            if desc_act and group != -1 and facts.desc_act_refused:
                what = f"dynamic {rule[8:-2]} enables desc_act" if rule else "desc_act=true"
                return ConfigError(
                    f"{where}: {what} with group_size {group}: {who} refuses GPTQ group"
                    " activation ordering (\"no longer supported\", utils/gptq_utils.py)",
                    hint="re-export with desc_act=false (static act order), or use group_size"
                    " -1, or deploy on vLLM <= 0.29")
            if (bits, sym) in facts.gptq_marlin_types and group in facts.marlin_group_sizes:
                continue
            if bits in facts.gptq_fallback_bits:  # GPTQConfig (gptq.py) builds it
                if 32 % bits:
                    return UnknownFormat(
                        f"{where}: {rule}{bits}-bit GPTQ: {who} builds it with its non-Marlin"
                        " GPTQ kernel (gptq.py); qscale does not model 3-bit packing",
                        hint="qscale models 2/4/8-bit GPTQ")
                continue
            if (bits, sym) not in facts.gptq_marlin_types:
                return ConfigError(
                    f"{where}: {rule}{who} builds GPTQ only with bits 4 or 8 and sym=true, got"
                    f" bits={bits}, sym={sym} (\"Unsupported quantization config\")",
                    hint="re-export with 4- or 8-bit symmetric GPTQ, or deploy on vLLM <= 0.21 or"
                    " SGLang"
                    " (its exllama GPTQ kernel builds 2/3/4/8 bits, asymmetric too)")
            return ConfigError(
                f"{where}: {rule}GPTQ group_size {group}: {who} refuses it (\"Marlin does not"
                f" support group_size = {group}\"; supported: {list(facts.marlin_group_sizes)})",
                hint="re-export with group_size -1, 32, 64 or 128, or deploy on vLLM <= 0.21")
        return None

    def act_order(self, name: str, engine: EngineSpec | None) -> bool:
        """Whether ``engine`` builds module ``name`` with act order, reading its ``g_idx``
        (``desc_act`` with a group size, on a release that does not refuse it). Otherwise
        every release drops ``g_idx`` or empties it after loading (vLLM 0.18 ``gptq.py`` /
        ``gptq_marlin.py`` ``process_weights_after_loading``; 0.30+ maps ``.g_idx`` to None)."""
        if self.method != GPTQ:
            return False
        desc, group = self.desc_act, self.group_size
        m = _EXPERT.match(name)
        dyn = self._dynamic(m.group(1) if m else name) if self.dynamic else None
        if dyn is not None and not dyn[0].startswith("-:"):
            desc = bool(dyn[1].get("desc_act", desc))
            group = int(dyn[1].get("group_size", group))
        facts = wna16.facts(*((engine.engine, engine.version) if engine else ("vllm", None)))
        return desc and group != -1 and (facts is None or not facts.desc_act_refused)

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
    for pattern, ov in raw_dyn.items():
        try:
            re.compile(pattern.removeprefix("-:").removeprefix("+:"))
        except re.error as exc:
            raise ConfigError(f"{where}: dynamic: invalid regular expression `{pattern}` ({exc})",
                              ) from None
        ov = ov if isinstance(ov, dict) else {}
        for key in ("bits", "group_size"):
            if key in ov and type(ov[key]) is not int:
                raise ConfigError(f"{where}: dynamic rule `{pattern}`: `{key}` must be an"
                                  f" integer, got {ov[key]!r}")
        if "group_size" in ov:
            _group_size(ov["group_size"], f"{where}: dynamic rule `{pattern}`")
        if "bits" in ov and ov["bits"] not in (2, 3, 4, 8):
            raise ConfigError(f"{where}: dynamic rule `{pattern}`: GPTQ bits {ov['bits']}"
                              " (GPTQ stores 2, 3, 4 or 8 bits)")
        dynamic.append((pattern, ov))
    if bits not in (2, 3, 4, 8):
        raise ConfigError(f"{where}: GPTQ bits {bits} (GPTQ stores 2, 3, 4 or 8 bits; no vLLM"
                          " release builds other widths)")
    names = _flat(qc.get("modules_in_block_to_quantize"))
    return WNA16Config(GPTQ, bits, group, sym, lm_head, names, tuple(dynamic), config_key,
                       desc_act)


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
    # shows up as a qweight shape mismatch. Bits other than 4: WNA16Config.refusal
    if bits not in (2, 3, 4, 8):
        raise ConfigError(f"{where}: AWQ bits {bits} (AWQ stores 2, 3, 4 or 8 bits)")
    listed = qc.get("modules_to_not_convert")
    if listed is not None and not (isinstance(listed, list)
                                   and all(isinstance(x, str) for x in listed)):
        raise ConfigError(f"{where}: `modules_to_not_convert` must be a list of strings")
    return WNA16Config(AWQ, bits, group, not zero_point, lm_head,
                       tuple(listed) if listed else None, (), config_key)
