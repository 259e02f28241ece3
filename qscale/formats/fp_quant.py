"""``quant_method: fp_quant`` (IST-DASLab FP-Quant, transformers' ``FPQuantConfig``): MXFP4 or
NVFP4 weights and activations behind a grouped Hadamard rotation, per Linear layer.

Follows vLLM's ``FPQuantConfig`` (``vllm/model_executor/layers/quantization/fp_quant.py``); the
facts that differ by release are engine-catalogue data read from every wheel (``data/vllm.json``
``formats``, ``fp_quant.*``; :func:`facts` cites them):

* ``from_config`` requires ``hadamard_group_size``, ``forward_dtype``, ``forward_method`` and
  ``modules_to_not_convert`` (``get_from_keys``), and up to 0.22.1 also ``pseudoquantization``,
  which ``__init__`` refuses when true ("Pseudoquantization is not supported for vLLM");
  0.23.0 no longer reads it.
* ``get_quant_method``: a layer whose prefix ends with an entry of ``modules_to_not_convert``
  gets ``UnquantizedLinearMethod``; every other ``LinearBase`` ``FPQuantLinearMethod``; other
  layers None, so ``ParallelLMHead`` is built BF16 and ``FusedMoE`` experts unquantized.
  The entries are matched here against the checkpoint's module names; vLLM matches its own
  prefixes, where the shards of a fused layer are one (``qkv_proj``): an entry naming one
  shard (``q_proj``) is not modelled.
* ``create_weights`` refuses a model dtype other than BF16, an input per rank that is not a
  multiple of ``hadamard_group_size`` (TP: QS505), and a ``forward_dtype`` other than
  ``mxfp4`` / ``nvfp4`` (an assertion); it registers ``qweight`` U8 [out, in/2] (two FP4 codes
  a byte), ``scales`` U8 [out, in/g] (g 32 for MXFP4, E8M0 bytes; 16 for NVFP4, E4M3 bytes),
  ``weight_global_scale`` and ``act_global_scale`` F32 [1] and ``forward_hadamard_matrix``
  [h, h] in the model dtype; up to 0.22.1 also ``backward_hadamard_matrix`` [h, h]. From
  0.23.0 a checkpoint that stores ``backward_hadamard_matrix`` (FP-Quant's exporter and
  fp_quant's ``FPQuantLinear`` write it) fails to load: "There is no module or parameter
  named '….backward_hadamard_matrix'" (QS203; real vLLM 0.32.0 and 0.33.0).
* the global scales and the Hadamard matrix have no ``output_dim``: in a fused layer
  (``qkv_proj``, ``gate_up_proj``) the loader copies each shard's tensor over the whole
  parameter and the shard loaded last stays (``MergedParam.overwritten``; real vLLM 0.32.0
  and 0.33.0 kept ``v_proj``'s and ``up_proj``'s). Shards whose global scales differ are QS403.
  ``act_global_scale`` divides the output of MXFP4 layers like the weight's (the activations
  are quantized without it); NVFP4 quantizes the activations with it, so there one value for
  the layer stays correct.
* SGLang (0.5.12, 0.5.23) has no ``fp_quant`` in its ``QUANTIZATION_METHODS`` and refuses it
  at start-up ("Unknown quantization method: fp_quant", ``srt/configs/model_config.py``):
  QS101.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from qscale.engines import EngineSpec, Version, catalogue, parse_version
from qscale.errors import ConfigError, UnknownFormat
from qscale.formats._api import Resolution, SkipList, ends_with, require_list
from qscale.formats._layers import is_lm_head
from qscale.modules import ModuleInfo, ModuleKind
from qscale.schemes import (
    FLOAT_SCALE,
    U8,
    QuantArgs,
    QuantScheme,
    ShapeRule,
    Strategy,
    TensorSpec,
    groups,
    packed_in,
    per_tensor,
    square,
    unpacked,
)

METHOD = "fp_quant"

#: what this module models of vLLM, each a fact of the engine catalogue, by label
CATALOGUE_FACTS: Mapping[str, str] = {
    "required keys": "fp_quant.required_keys",  # from_config's get_from_keys
    "layers quantized": "fp_quant.layers",  # get_quant_method's isinstance tests
    "parameters": "fp_quant.parameters",  # create_weights' register_parameter calls
    "scale groups": "fp_quant.group_sizes",  # forward_dtype -> group of `scales`
    "checks": "fp_quant.checks",  # params_dtype, input multiple, supported act dtypes
    "pseudoquantization refused": "fp_quant.refuses_pseudoquantization",
}
#: what other engines and the exporters do (not in vLLM's catalogue)
ELSEWHERE: Mapping[str, str] = {
    "layers quantized": "FusedMoE gets UnquantizedFusedMoEMethod (vLLM 0.33.0"
                        " fused_moe/routed_experts.py _get_quant_method)",
    "parameters": "fp_quant 0.3.2 module/linear.py FPQuantLinear stores qweight, scales,"
                  " weight_global_scale, act_global_scale (model dtype), forward_ and"
                  " backward_hadamard_matrix per Linear; FP-Quant model_quant.py saves the same",
}


def facts(version: Version | None = None) -> dict[str, str]:
    """The engine facts at a vLLM release (None: the newest), each with its source."""
    out = {}
    for label, name in CATALOGUE_FACTS.items():
        f = catalogue.format_fact("vllm", name, version)
        read = f"{f.value} ({f.cite})" if f is not None else "not read in that release"
        out[label] = f"{read}; {ELSEWHERE[label]}" if label in ELSEWHERE else read
    return out


@dataclass(frozen=True, slots=True)
class Release:
    """One vLLM release's ``fp_quant.py``, from the catalogue."""

    label: str  #: ``vllm==0.33.0`` (the catalogued release)
    required: tuple[str, ...]
    parameters: Mapping[str, Mapping[str, Any]]
    group_sizes: Mapping[str, int]
    params_dtype: str | None
    act_dtypes: tuple[str, ...] | None
    refuses_pseudoquantization: bool


def release(version: Version | None) -> Release | None:
    """The facts of the catalogued release that models ``version``; None where one of them
    was not read there."""
    got = {k: catalogue.format_fact("vllm", n, version) for k, n in CATALOGUE_FACTS.items()}
    if any(f is None for f in got.values()):
        return None
    req, params, grp, chk, pseudo = (got["required keys"], got["parameters"],
                                      got["scale groups"], got["checks"],
                                      got["pseudoquantization refused"])
    assert req and params and grp and chk and pseudo
    acts = chk.value.get("act_dtypes")
    return Release(f"vllm=={req.release}", tuple(req.value), params.value, grp.value,
                   chk.value.get("params_dtype"), tuple(acts) if acts is not None else None,
                   bool(pseudo.value))


#: the shape rule of every parameter qscale knows, given (scale group, Hadamard group)
def _shape(param: str, g: int, h: int) -> ShapeRule | None:
    return {"qweight": packed_in(2), "scales": groups(g),
            "weight_global_scale": per_tensor, "act_global_scale": per_tensor,
            "forward_hadamard_matrix": square(h),
            "backward_hadamard_matrix": square(h)}.get(param)


_NOT_CONVERTED = "listed in modules_to_not_convert"
_EXPERTS = Resolution(None, "FPQuantConfig quantizes Linear layers only: the engine builds"
                            " MoE experts with UnquantizedFusedMoEMethod")


@dataclass(frozen=True, slots=True)
class FpQuantConfig:
    """A parsed ``quant_method: fp_quant`` config, as one vLLM release builds it."""

    keys: frozenset[str]  #: the keys the config has
    forward_dtype: str
    hadamard_group_size: int
    modules_to_not_convert: tuple[str, ...]
    pseudoquantization: bool = False
    model_dtype: str | None = None  #: config.json ``torch_dtype`` / ``dtype``
    config_key: str = "config.json"
    method: str = METHOD
    engine_name: str = "vllm"
    version: Version | None = None
    facts: Release | None = field(init=False, repr=False, compare=False)
    scheme: QuantScheme | None = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        rel = release(self.version)
        object.__setattr__(self, "facts", rel)
        g = rel.group_sizes.get(self.forward_dtype) if rel is not None else None
        scheme = None
        if rel is not None and g is not None and all(
                _shape(p, g, self.hadamard_group_size) for p in rel.parameters):
            scheme = _scheme(self.forward_dtype, g, self.hadamard_group_size, rel.parameters,
                             rel.label)
        object.__setattr__(self, "scheme", scheme)

    def skip_list(self) -> SkipList:
        """``modules_to_not_convert``: name suffixes, which vLLM tests against its own layer
        names (``FPQuantConfig.get_quant_method``)."""
        return SkipList("modules_to_not_convert", self.modules_to_not_convert, ends_with,
                        on_engine_layers=True)

    def for_engine(self, engine: EngineSpec | None) -> FpQuantConfig:
        """The config as ``engine``'s release builds it (another engine: the newest vLLM's
        reading, refused by :meth:`refusal`)."""
        name, version = (engine.engine, engine.version) if engine else ("vllm", None)
        if name != "vllm":
            version = None
        if (name, version) == (self.engine_name, self.version):
            return self
        return replace(self, engine_name=name, version=version)

    def refusal(self, engine: EngineSpec | None) -> ConfigError | UnknownFormat | None:
        """What the release stops on at start-up or while building the layers."""
        built = self.for_engine(engine)
        label = engine.label if engine is not None else "vLLM"
        if built.engine_name == "sglang":
            return ConfigError(
                f"{self.config_key}: quant_method fp_quant; SGLang has no FP-Quant config"
                " (not in QUANTIZATION_METHODS of srt/layers/quantization/__init__.py, read in"
                " 0.5.12 and 0.5.23) and refuses it at start-up (\"Unknown quantization method:"
                " fp_quant. Must be one of [...]\", srt/configs/model_config.py)",
                hint="serve it with vLLM (--allow-deprecated-quantization from 0.18.0)")
        if built.engine_name != "vllm":
            return UnknownFormat(
                f"{self.config_key}: {built.engine_name}'s FP-Quant loader was not read;"
                " qscale models vLLM's FPQuantConfig", hint="check against vLLM (--engine vllm==X)")
        rel = built.facts
        if rel is None:
            return UnknownFormat(f"{self.config_key}: qscale has not read {label}'s"
                                 " quantization/fp_quant.py", hint="check against a vLLM"
                                 " release qscale has read (0.18.0-0.33.0)")
        where = f"{self.config_key}: quantization_config"
        missing = [k for k in rel.required if k not in self.keys]
        if missing:
            return ConfigError(
                f"{where} has no {' or '.join(f'`{k}`' for k in missing)}; {rel.label}"
                f" FPQuantConfig.from_config refuses it (\"Cannot find any of ['{missing[0]}']"
                " in the model's quantization config.\")",
                hint="transformers' FPQuantConfig writes every key: re-save the config with it"
                     + (", with \"pseudoquantization\": false" if "pseudoquantization"
                        in missing else ""))
        if rel.refuses_pseudoquantization and self.pseudoquantization:
            return ConfigError(
                f"{where}: pseudoquantization is true; {rel.label} FPQuantConfig refuses it"
                " (\"Pseudoquantization is not supported for vLLM\")",
                hint="export real quantized weights (pseudoquantization=False): qweight and"
                     " scales, not dqweight")
        if self.forward_dtype not in rel.group_sizes:
            return ConfigError(
                f"{where}: forward_dtype `{self.forward_dtype}`; {rel.label}"
                " FPQuantLinearMethod.create_weights asserts \"Only"
                f" {' and '.join(sorted(rel.group_sizes))} are supported for now\"",
                hint=f"forward_dtype is one of {', '.join(sorted(rel.group_sizes))}")
        if built.scheme is None:
            return UnknownFormat(f"{self.config_key}: {rel.label} FPQuantLinearMethod registers"
                                 f" parameters qscale does not model ({', '.join(rel.parameters)})")
        dtype = _TORCH_DTYPES.get(self.model_dtype or "")
        if dtype is not None and rel.act_dtypes is not None and dtype not in rel.act_dtypes:
            acts = ", ".join(rel.act_dtypes)
            return ConfigError(
                f"config.json: the model dtype is {self.model_dtype}, which vLLM keeps under"
                f" --dtype auto; {rel.label} refuses it at start-up (\"{dtype} is not supported"
                f" for quantization method fp_quant. Supported dtypes: [{acts}]\";"
                " FPQuantLinearMethod.create_weights: \"Only bfloat16 is currently supported"
                " by FPQuant\")",
                hint="set torch_dtype to bfloat16 in config.json, or deploy with --dtype bfloat16")
        return None

    def resolve(self, module: ModuleInfo) -> Resolution:
        """Every Linear is FP-Quant unless its name ends with a listed entry; MoE experts stay
        unquantized. ``lm_head`` keeps the scheme the exporter gave it (rules judge the head:
        vLLM builds it BF16)."""
        hit = next((e for e in self.modules_to_not_convert if module.name.endswith(e)), None)
        if hit is not None:
            return Resolution(None, f"{_NOT_CONVERTED} (`{hit}`)")
        if module.kind == ModuleKind.FUSED_EXPERTS or (
                ".experts." in module.name and not is_lm_head(module.name)):
            return _EXPERTS
        if self.scheme is None:  # refused (refusal says why); nothing is built
            return Resolution(None, "FPQuantConfig not built")
        return Resolution(self.scheme, "quant_method fp_quant (all Linear layers)")


_TORCH_DTYPES = {"bfloat16": "torch.bfloat16", "float16": "torch.float16",
                 "half": "torch.float16"}


def _scheme(forward_dtype: str, g: int, h: int, params: Mapping[str, Any], label: str
            ) -> QuantScheme:
    """The tensors one FP-Quant Linear carries, the weight first (``qweight``: the
    catalogue keeps the parameters by name). A release that registers
    ``backward_hadamard_matrix`` (up to 0.22.1) loads it but never reads it (``apply`` uses
    the forward matrix alone), so a checkpoint may leave it out: tolerated, not required."""
    mx = forward_dtype == "mxfp4"
    role = {"weight_global_scale": "weight", "act_global_scale": "weight" if mx else "act",
            "forward_hadamard_matrix": "weight", "backward_hadamard_matrix": "weight"}
    specs = []
    for p in sorted(params, key=lambda n: (_ORDER.index(n) if n in _ORDER else len(_ORDER), n)):
        if p in _UNUSED:
            continue
        rule = _shape(p, g, h)
        assert rule is not None
        dtypes = U8 if p in ("qweight", "scales") else FLOAT_SCALE
        specs.append(TensorSpec(p, dtypes, rule, unpacked(2) if p == "qweight" else None,
                                overwritten=role.get(p)))
    lcm = g * h // math.gcd(g, h)
    return QuantScheme(
        METHOD,
        f"FP-Quant {forward_dtype.upper()} (Hadamard {h})",
        # the group the per-rank input must hold whole: create_weights tests the Hadamard
        # group, and the scale groups must not straddle ranks either
        QuantArgs("float", 4, Strategy.GROUP, group_size=lcm,
                  scale_format="e8m0" if mx else None),
        QuantArgs("float", 4, Strategy.GROUP, group_size=g, dynamic=True),
        tuple(specs),
        tolerated=frozenset(p for p in params if p in _UNUSED),
        unregistered=tuple((p, _unregistered(p, label)) for p in sorted(_UNUSED - set(params))),
    )


def _unregistered(param: str, label: str) -> str:
    """Why a tensor the exporters write loads into nothing in this release."""
    last = _last_registering(param)
    since = f" ({last} was the last release to register it)" if last else ""
    return (f"{label} FPQuantLinearMethod registers no `{param}`{since}; the load stops with"
            f" \"There is no module or parameter named '….{param}'\" (real vLLM 0.32.0 and"
            " 0.33.0)")


def _last_registering(param: str) -> str | None:
    """The newest catalogued vLLM release whose FPQuantLinearMethod registers ``param``."""
    cat = catalogue.load("vllm")
    for r in reversed(cat.releases if cat is not None else ()):
        f = catalogue.format_fact("vllm", "fp_quant.parameters", parse_version(r))
        if f is not None and param in f.value:
            return f"vllm=={r}"
    return None


#: the order the scheme lists an FP-Quant Linear's tensors in (FPQuantLinearMethod's)
_ORDER = ("qweight", "scales", "weight_global_scale", "act_global_scale",
          "forward_hadamard_matrix")
#: parameters a release registers and never reads (vLLM 0.18.0-0.22.1 ``apply``)
_UNUSED = frozenset({"backward_hadamard_matrix"})


def parse(qc: Mapping[str, Any], *, config_key: str = "config.json",
          model_dtype: str | None = None) -> FpQuantConfig:
    """Parse a ``quant_method: fp_quant`` config (``model_dtype``: config.json's dtype)."""
    where = f"{config_key}: quantization_config"
    listed = require_list(qc, "modules_to_not_convert", where)  # null: none skipped
    fd = qc.get("forward_dtype", "mxfp4")
    if not isinstance(fd, str):
        raise ConfigError(f"{where}: forward_dtype must be a string, got {fd!r}")
    h = qc.get("hadamard_group_size", 32)
    if isinstance(h, bool) or not isinstance(h, int) or h <= 0:
        raise ConfigError(f"{where}: hadamard_group_size must be a positive integer, got {h!r}")
    pseudo = qc.get("pseudoquantization", False)
    if not isinstance(pseudo, bool):
        raise ConfigError(f"{where}: pseudoquantization must be true or false, got {pseudo!r}")
    return FpQuantConfig(frozenset(qc), fd, h, tuple(listed), pseudo, model_dtype, config_key)
