"""``quant_method: fbgemm_fp8`` (Meta's official Llama-3.1 FP8 checkpoints, transformers'
``FbgemmFp8Config``): FP8 weights with one F32 scale per output row, dynamic per-token
activations.

Follows vLLM's ``FBGEMMFp8Config`` (``vllm/model_executor/layers/quantization/fbgemm_fp8.py``,
the same in 0.20.0 and 0.33.0 but for how ``process_weights_after_loading`` replaces the
parameters; the facts are engine-catalogue data, :func:`facts` cites the files):

* ``from_config`` reads ``modules_to_not_convert`` and ``activation_scale_ub`` with
  ``get_from_keys``: a config without either key is refused ("Cannot find any of [...] in the
  model's quantization config."). A null list means no module is skipped.
* ``get_quant_method`` quantizes ``LinearBase`` layers only. ``ParallelLMHead`` (a
  ``VocabParallelEmbedding``) and ``FusedMoE`` get None: the head is built BF16 and the MoE
  experts fall back to ``UnquantizedFusedMoEMethod`` (``fused_moe/routed_experts.py``,
  ``_get_quant_method``).
* the ignore list is matched by ``is_layer_skipped`` in its default exact mode, over the
  model's ``packed_modules_mapping``: a fused layer is skipped when all its shards are listed
  and refused when only some are. 0.33.0 also skips it when the fused name itself
  (``self_attn.qkv_proj``) is listed, 0.20.0 does not; qscale matches the checkpoint's own
  module names only, so such an entry is not modelled.
* each quantized Linear registers ``weight`` F8_E4M3 ``[out, in]`` (``ModelWeightParameter``)
  and ``weight_scale`` F32 ``[out, 1]`` (``ChannelQuantScaleParameter``, filled with the F32
  minimum until loaded; a BF16 or F16 scale is converted on load), and sets
  ``input_scale_ub`` from ``activation_scale_ub``.
  transformers' ``FbgemmFp8Linear`` (4.57.1, 5.25.0) keeps ``input_scale_ub`` as a
  non-persistent buffer, so its exports never store one. qscale reports a stored one as
  unexpected (QS203); what the engine does with it is not modelled (the parameter is a plain
  ``nn.Parameter`` without a ``weight_loader``).
* SGLang 0.5.12 (``srt/layers/quantization/fpgemm_fp8.py``) builds the same tensors, but its
  ``is_layer_skipped`` matches ignore entries on dotted path components (``utils.py``,
  ``_module_path_match``): ``self_attn`` skips every attention projection there and none in
  vLLM. qscale models the vLLM matching only, so SGLang is not checked (QS102).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from qscale.engines import EngineSpec, catalogue
from qscale.errors import ConfigError, UnknownFormat
from qscale.formats._api import Resolution, SameInEveryRelease, SkipList, require_list
from qscale.formats._layers import is_lm_head
from qscale.modules import ModuleInfo, ModuleKind
from qscale.schemes import (
    FLOAT_SCALE,
    FP8,
    QuantArgs,
    QuantScheme,
    Strategy,
    TensorSpec,
    full,
    per_channel,
    unpacked,
)

METHOD = "fbgemm_fp8"

#: what this module models of vLLM, each a fact of the engine catalogue (``data/vllm.json``
#: ``formats``: read from every release's ``quantization/fbgemm_fp8.py`` by the generator,
#: or hand-written with the releases it was read in); :func:`facts` cites them
CATALOGUE_FACTS: Mapping[str, str] = {
    "required keys": "fbgemm_fp8.required_keys",  # from_config's get_from_keys
    "layers quantized": "fbgemm_fp8.layers",  # get_quant_method's isinstance tests
    "ignore matching": "fbgemm_fp8.ignore_matching",
    "parameters": "fbgemm_fp8.parameters",  # create_weights: weight, weight_scale
    "input_scale_ub": "fbgemm_fp8.input_scale_ub",
}
#: what other engines and the exporter do (not in vLLM's catalogue)
ELSEWHERE: Mapping[str, str] = {
    "required keys": "SGLang 0.5.12 quantization/fpgemm_fp8.py reads the same keys",
    "layers quantized": "FusedMoE gets UnquantizedFusedMoEMethod (vLLM 0.33.0"
                        " fused_moe/routed_experts.py _get_quant_method)",
    "ignore matching": "SGLang 0.5.12 quantization/utils.py matches dotted path components",
    "parameters": "a BF16 or F16 scale is converted by copy_ (parameter.py has no dtype check)",
    "input_scale_ub": "transformers 4.57.1 and 5.25.0 integrations/fbgemm_fp8.py register it"
                      " as a non-persistent buffer",
}


def facts(version: tuple[int, ...] | None = None) -> dict[str, str]:
    """The engine facts at a vLLM release (None: the newest), each with its source."""
    out = {}
    for label, name in CATALOGUE_FACTS.items():
        f = catalogue.format_fact("vllm", name, version)
        read = f"{f.value} ({f.cite})" if f is not None else "not read in that release"
        out[label] = f"{read}; {ELSEWHERE[label]}" if label in ELSEWHERE else read
    return out


def required_keys() -> tuple[str, ...]:
    """The keys ``FBGEMMFp8Config.from_config`` requires (the same in every catalogued
    release; tests/test_catalogue_formats.py)."""
    f = catalogue.format_fact("vllm", "fbgemm_fp8.required_keys", None)
    if f is None:
        raise LookupError("the vllm catalogue has no fbgemm_fp8.required_keys")
    return tuple(f.value)


def __getattr__(name: str) -> Any:
    """``FACTS``: :func:`facts` of the newest release (read from the catalogue when asked)."""
    if name == "FACTS":
        return facts()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


_NOT_CONVERTED = Resolution(None, "listed in modules_to_not_convert")
_EXPERTS = Resolution(None, "FBGEMMFp8Config quantizes Linear layers only: the engine builds"
                            " MoE experts with UnquantizedFusedMoEMethod")

SCHEME = QuantScheme(
    METHOD,
    "FP8 per-channel (FBGEMM), dynamic per-token act",
    QuantArgs("float", 8, Strategy.CHANNEL),
    QuantArgs("float", 8, Strategy.TOKEN, dynamic=True),
    (
        TensorSpec("weight", FP8, full, unpacked()),
        TensorSpec("weight_scale", FLOAT_SCALE, per_channel),
    ),
)


@dataclass(frozen=True, slots=True)
class FbgemmFp8Config(SameInEveryRelease):
    """A parsed ``quant_method: fbgemm_fp8`` config."""

    ignored: frozenset[str]
    config_key: str = "config.json"
    method: str = METHOD
    #: required keys the config lacks (``get_from_keys`` refuses it)
    missing: tuple[str, ...] = ()
    activation_scale_ub: float | None = None
    quantized: Resolution = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        why = "quant_method fbgemm_fp8 (all Linear layers)"
        object.__setattr__(self, "quantized", Resolution(SCHEME, why))

    def skip_list(self) -> SkipList:
        """``modules_to_not_convert``: exact names (vLLM's match, as for fp8)."""
        return SkipList("modules_to_not_convert", sorted(self.ignored), str.__eq__)

    def refusal(self, engine: EngineSpec | None) -> ConfigError | UnknownFormat | None:
        """The missing-key refusal of every release, or QS102 on SGLang."""
        if self.missing:
            return ConfigError(
                f"{self.config_key}: quantization_config has no"
                f" {' or '.join(f'`{k}`' for k in self.missing)}; FBGEMMFp8Config refuses it"
                f" (\"Cannot find any of ['{self.missing[0]}'] in the model's quantization"
                " config.\")",
                hint='transformers writes both: "activation_scale_ub": 1200.0,'
                     ' "modules_to_not_convert": [...] (or null)',
            )
        if engine is not None and engine.engine != "vllm":
            return UnknownFormat(
                f"{self.config_key}: {engine.engine} matches fbgemm_fp8's"
                " `modules_to_not_convert` on dotted path components, which qscale does not"
                " model (it models vLLM's exact match)",
                hint="check against vLLM (--engine vllm==X)",
            )
        return None

    def resolve(self, module: ModuleInfo) -> Resolution:
        """Every Linear is FP8 unless listed by its exact name; MoE experts stay unquantized.
        ``lm_head`` keeps the scheme the exporter gave it (rules judge the head)."""
        if module.name in self.ignored:
            return _NOT_CONVERTED
        if module.kind == ModuleKind.FUSED_EXPERTS or (
                ".experts." in module.name and not is_lm_head(module.name)):
            return _EXPERTS
        return self.quantized


def parse(qc: Mapping[str, Any], *, config_key: str = "config.json") -> FbgemmFp8Config:
    """Parse a ``quant_method: fbgemm_fp8`` config."""
    where = f"{config_key}: quantization_config"
    listed = require_list(qc, "modules_to_not_convert", where)  # null: none skipped
    ub = qc.get("activation_scale_ub")
    if ub is not None and (isinstance(ub, bool) or not isinstance(ub, int | float)):
        raise ConfigError(f"{where}: activation_scale_ub must be a number, got {ub!r}")
    missing = tuple(k for k in required_keys() if k not in qc)
    return FbgemmFp8Config(
        frozenset(listed), config_key, missing=missing,
        activation_scale_ub=None if ub is None else float(ub),
    )
