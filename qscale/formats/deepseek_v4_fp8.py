"""``deepseek_v4_fp8`` (``quant_method: fp8`` of DeepSeek-V4): block-FP8 Linear, MXFP4/FP8 experts.

DeepSeek-V4's own release format (deepseek-ai/DeepSeek-V4-Flash, -Pro).

The checkpoints say ``quant_method: fp8`` (``weight_block_size: [128, 128]``,
``scale_fmt: ue8m0``); vLLM hands any ``fp8`` or ``deepseek_v4_fp8`` config of a
``model_type: deepseek_v4`` model to ``DeepseekV4FP8Config``
(``override_quantization_method``), a subclass of ``Fp8Config``. Facts from vLLM 0.33.0
``vllm/models/deepseek_v4/quant_config.py`` (0.26.0 and 0.32.0 read the same); what differs
by release (the thresholds below, the expert dtypes, the model types claimed) is
engine-catalogue data read from every wheel (``deepseek_v4.*``; :func:`facts` cites them):

* Every Linear the model builds with the config is block FP8 (``Fp8LinearMethod``); the
  checkpoint stores ``<module>.weight`` F8_E4M3 and ``<module>.scale``
  ``[ceil(out/128), ceil(in/128)]``, which the model's mapper renames ``weight_scale_inv``
  (``nvidia/model.py``, ``_make_deepseek_v4_weights_mapper``). ``is_scale_e8m0`` is true for
  ``expert_dtype: fp4``: the scales are E8M0 (``F8_E8M0``, loaded by value into the float32
  parameter); for ``expert_dtype: fp8`` (Flash-Base) they are F32.
* The routed experts (``RoutedExperts``) follow the config's ``expert_dtype`` (hf_config,
  default ``fp4``; anything but ``fp4``/``fp8`` is a ValueError): ``fp4`` builds
  ``Mxfp4MoEMethod`` (``w13_weight``/``w2_weight`` uint8 ``[E, out, in/2]``, E8M0 scales
  ``[E, out, in/32]``, the loader viewing ``F8_E8M0`` scales as uint8); the checkpoint keeps
  one ``experts.<e>.w{1,2,3}.weight`` (packed E2M1, two per byte) and ``.scale`` per expert,
  the scale renamed ``weight_scale``. ``fp8`` falls through to ``Fp8MoEMethod`` (block FP8,
  F32 scales, renamed ``weight_scale_inv``).
* ``moe_quant_algo: NVFP4`` in the quantization config (NVIDIA's DeepSeek-V4-*-NVFP4
  re-quantizations), read from 0.22.0 (0.20.0 and 0.21.0 build MXFP4 experts whatever it
  says): ``fp4`` experts get ``ModelOptNvFp4FusedMoE`` with a ``ModelOptNvFp4Config`` of
  group 16 (``modelopt.py`` ``create_weights``: ``w13_weight``/``w2_weight`` uint8
  ``[E, out, in/2]``, ``w13_weight_scale``/``w2_weight_scale`` float8_e4m3fn
  ``[E, out, in/16]``, F32 per-expert ``weight_scale_2`` and ``input_scale``; W4A4, so the
  input scales are read). The checkpoint keeps ModelOpt's names per expert
  (``experts.<e>.w1.weight``, ``.weight_scale``, ``.weight_scale_2``, ``.input_scale``),
  which the mapper leaves alone; a block scale stored as DeepSeek's ``.scale`` loads into
  the same parameter (the mapper renames it ``weight_scale``), so either is accepted. From
  0.32.0 the class CUDA builds (``vllm/models/deepseek_v41/quant_config.py``,
  ``_is_nvfp4_expert_layer``) keeps a fused expert layer MXFP4 when its name
  (``layers.<i>.ffn.experts`` or ``mtp.<k>.ffn.experts``) matches an ``fnmatch`` pattern of
  the config's ``ignore`` list (ModelOpt's exclusions, e.g. the bundled MTP layer).
* From 0.30.0 vLLM builds that class on CUDA and ROCm (``quantization/__init__.py``); with
  ``weight_block_size: [32, 32]`` and E8M0 scales it makes every Linear MXFP8 through
  ``ModelOptLinearMethod`` (DeepSeek-V4.1's layout), which qscale does not model (QS102).
* vLLM 0.20.0 (the first release with DeepSeek-V4) has no ``expert_dtype``: its
  ``DeepseekV4FP8Config`` (``model_executor/models/deepseek_v4.py``) sets
  ``is_scale_e8m0 = True`` and builds every expert MXFP4; an ``fp8`` or unknown one is not
  checked there (QS102). 0.20.1 and 0.21.0 read ``expert_dtype`` in the same file, with the
  same mapper per ``expert_dtype`` (``_make_deepseek_v4_weights_mapper``) as later releases.

The released headers agree (as quoted in NVIDIA-NeMo/Automodel issue #2034): DeepSeek-V4-Flash
``w1.weight`` ``[2048, 2048]`` I8 (two E2M1 per byte), ``w1.scale`` ``[2048, 128]`` F8_E8M0;
Flash-Base ``w1.weight`` ``[2048, 4096]`` F8_E4M3, ``w1.scale`` ``[16, 32]`` F32. vLLM copies
the packed bytes into a uint8 parameter, so U8 is accepted too. The mapper renames every
``.scale`` tensor to a weight scale, so the deep scan reads every ``.scale`` of such a
checkpoint (:func:`qscale._dsv4.scale_params`), as it reads ``weight_scale`` elsewhere.
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Collection, Mapping
from dataclasses import dataclass, replace
from typing import Any

from qscale._dsv4 import METHOD as METHOD  # re-exported: the format's names live there
from qscale._dsv4 import METHODS as METHODS
from qscale._dsv4 import MODEL_TYPE as MODEL_TYPE
from qscale._dsv4 import OTHER_MODEL_TYPES as OTHER_MODEL_TYPES
from qscale._dsv4 import applies as applies
from qscale._dsv4 import scale_params as scale_params
from qscale.engines import EngineSpec, catalogue
from qscale.errors import ConfigError, UnknownFormat
from qscale.formats import fp8, modelopt
from qscale.formats._api import NoSkipList, Resolution
from qscale.modules import ModuleInfo
from qscale.schemes import (
    E8M0,
    FP8,
    QuantArgs,
    QuantScheme,
    Strategy,
    TensorSpec,
    blocks,
    full,
    groups,
    packed_in,
    unpacked,
)

ARCHITECTURE = "DeepseekV4ForCausalLM"
#: the engine-catalogue facts (``data/vllm.json`` ``formats``, ``deepseek_v4.*``, read from
#: every release's wheel: the ``DeepseekV4FP8Config`` classes ``quantization/__init__.py``
#: imports) the thresholds below stand on
CATALOGUE_FACTS: Mapping[str, str] = {
    "config classes": "deepseek_v4.configs",
    "expert dtypes": "deepseek_v4.expert_dtypes",  # _DEEPSEEK_V4_EXPERT_DTYPES
    "moe_quant_algo read": "deepseek_v4.moe_quant_algo",
    "ignore keeps experts MXFP4": "deepseek_v4.nvfp4_ignore",  # _is_nvfp4_expert_layer
    "MXFP8 Linear layers": "deepseek_v4.mxfp8_linear",  # ModelOptLinearMethod
}
#: the first release with ``DeepseekV4FP8Config`` (0.20.0 ``quantization/__init__.py`` imports
#: it from ``model_executor/models/deepseek_v4.py``; 0.19.1 has neither, nor a DeepSeek-V4
#: model class)
CONFIG_SINCE = catalogue.since("vllm", "deepseek_v4.configs", bool)
#: the first release that reads ``expert_dtype`` (0.20.1 ``model_executor/models/
#: deepseek_v4.py`` ``_DEEPSEEK_V4_EXPERT_DTYPES``; 0.20.0 has none)
EXPERT_DTYPE_SINCE = catalogue.since("vllm", "deepseek_v4.expert_dtypes", bool)
#: the first release that reads ``moe_quant_algo`` (0.22.0 ``deepseek_v4/quant_config.py``;
#: 0.20.0 and 0.21.0 ``model_executor/models/deepseek_v4.py`` build every fp4 expert MXFP4)
NVFP4_SINCE = catalogue.since("vllm", "deepseek_v4.moe_quant_algo", bool)
#: the first release whose CUDA config keeps the fused expert layers the config's ``ignore``
#: list matches MXFP4 (``_is_nvfp4_expert_layer``, 0.32.0 ``deepseek_v41/quant_config.py``)
NVFP4_IGNORE_SINCE = catalogue.since("vllm", "deepseek_v4.nvfp4_ignore", bool)
#: the first release whose CUDA config builds ``[32, 32]`` E8M0 Linear layers MXFP8
#: (``ModelOptLinearMethod``, 0.30.0 ``deepseek_v41/quant_config.py``)
MXFP8_LINEAR_SINCE = catalogue.since("vllm", "deepseek_v4.mxfp8_linear", bool)


def expert_dtypes(version: tuple[int, ...] | None = None) -> tuple[str, ...]:
    """``_DEEPSEEK_V4_EXPERT_DTYPES`` of the release (None: the newest); () where the release
    reads no ``expert_dtype``."""
    f = catalogue.format_fact("vllm", "deepseek_v4.expert_dtypes", version)
    return tuple(f.value) if f is not None else ()


def facts(version: tuple[int, ...] | None = None) -> dict[str, str]:
    """The engine facts at a vLLM release (None: the newest), each with its source."""
    out = {}
    for label, name in CATALOGUE_FACTS.items():
        f = catalogue.format_fact("vllm", name, version)
        out[label] = f"{f.value} ({f.cite})" if f is not None else "not read in that release"
    return out


def __getattr__(name: str) -> Any:
    """``EXPERT_DTYPES``: :func:`expert_dtypes` of the newest release."""
    if name == "EXPERT_DTYPES":
        return expert_dtypes()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


_F32 = frozenset({"F32"})
_PACKED_FP4 = frozenset({"I8", "U8"})
_EXPERT = re.compile(r"\.experts\.\d+\.w[123]$")


def _linear(block: tuple[int, int], expert_dtype: str) -> QuantScheme:
    e8m0 = expert_dtype == "fp4"
    return QuantScheme(
        METHOD,
        f"FP8 block {block[0]}x{block[1]}, {'E8M0' if e8m0 else 'F32'} scales",
        QuantArgs("float", 8, Strategy.BLOCK, block=block, scale_format="e8m0" if e8m0 else None),
        QuantArgs("float", 8, Strategy.TOKEN, dynamic=True),
        (TensorSpec("weight", FP8, full, unpacked()),
         TensorSpec("scale", frozenset({"F8_E8M0"}) if e8m0 else _F32, blocks(*block))),
    )


#: ``expert_dtype: fp4``: MXFP4 experts, MXFP8 dynamic activations (``kMxfp8Dynamic``)
MXFP4_EXPERTS = QuantScheme(
    METHOD,
    "MXFP4 experts (E8M0 scales, group 32)",
    QuantArgs("float", 4, Strategy.GROUP, group_size=32, scale_format="e8m0"),
    QuantArgs("float", 8, Strategy.GROUP, group_size=32, dynamic=True, scale_format="e8m0"),
    (TensorSpec("weight", _PACKED_FP4, packed_in(2), unpacked(2)),
     TensorSpec("scale", E8M0, groups(32))),
)

#: ``moe_quant_algo: NVFP4``: ModelOpt's NVFP4 experts (``ModelOptNvFp4FusedMoE``, group 16)
NVFP4_EXPERTS = replace(modelopt.scheme_for_algo("NVFP4", 16), format=METHOD,
                        label="NVFP4 experts (moe_quant_algo NVFP4, group 16)")
#: the same with the block scale under DeepSeek's name: the mapper renames an expert's
#: ``.scale`` to ``weight_scale`` (the ``fp4`` mapper), so vLLM loads either spelling
NVFP4_EXPERTS_SCALE = replace(
    NVFP4_EXPERTS,
    tensors=tuple(replace(t, param="scale") if t.param == "weight_scale" else t
                  for t in NVFP4_EXPERTS.tensors))


@dataclass(frozen=True, slots=True)
class DeepseekV4Fp8Config(NoSkipList):
    """A DeepSeek-V4 ``fp8`` / ``deepseek_v4_fp8`` config as ``DeepseekV4FP8Config`` reads it."""

    linear: QuantScheme
    experts: QuantScheme
    ignored: frozenset[str]
    expert_dtype: str
    moe_quant_algo: str
    config_key: str = "config.json"
    method: str = METHOD
    #: the config's ``ignore`` list (ModelOpt's exclusions; fnmatch patterns)
    modelopt_ignore: tuple[str, ...] = ()
    block: tuple[int, int] = (128, 128)
    #: the vLLM release it is built by (None: the newest)
    version: tuple[int, ...] | None = None

    def for_engine(self, engine: EngineSpec | None) -> DeepseekV4Fp8Config:
        """The same config as ``engine``'s release builds it (the NVFP4 experts differ); a
        release of another engine (refused in :meth:`refusal`) reads as the newest vLLM."""
        version = engine.version if engine is not None and engine.engine == "vllm" else None
        return self if version == self.version else replace(self, version=version)

    def _since(self, release: catalogue.Since) -> bool:
        return self.version is None or release <= tuple(self.version)

    def expert_scheme(self, module: str, stored: Collection[str] = ()) -> QuantScheme:
        """The routed experts' scheme of this release, for one expert module that stores
        the parameters ``stored``."""
        if not (self.expert_dtype == "fp4" and self.moe_quant_algo == "NVFP4"
                and self._since(NVFP4_SINCE)):
            return self.experts
        if self._since(NVFP4_IGNORE_SINCE) and self.modelopt_ignore:
            layer = _EXPERT.sub(".experts", module)
            if any(fnmatch.fnmatchcase(layer, p) for p in self.modelopt_ignore):
                return self.experts
        if "scale" in stored and "weight_scale" not in stored:
            return NVFP4_EXPERTS_SCALE
        return NVFP4_EXPERTS

    def refusal(self, engine: EngineSpec | None) -> ConfigError | UnknownFormat | None:
        """vLLM's ValueError for an unknown ``expert_dtype``; QS102 for what is not modelled
        (SGLang, releases before ``DeepseekV4FP8Config``, ``fp8`` experts on 0.20.0, MXFP8
        ``[32, 32]`` Linear layers from 0.30.0)."""
        if engine is not None and engine.engine != "vllm":
            return UnknownFormat(
                f"{self.config_key}: {engine.engine}'s loading of DeepSeek-V4's"
                f" {METHOD} checkpoints is not modelled",
                hint="check it against vLLM (`--engine vllm==0.33.0`)",
            )
        version = engine.version if engine is not None else None
        accepted = expert_dtypes(version)
        if accepted and self.expert_dtype not in accepted:
            return ConfigError(
                f"config.json: expert_dtype {self.expert_dtype!r} is refused by vLLM's"
                f" DeepseekV4FP8Config (\"Unsupported DeepSeek V4 expert_dtype\"; expected"
                f" one of {accepted})",
                hint="set expert_dtype to \"fp4\" (MXFP4 experts) or \"fp8\" (FP8 experts)",
            )
        if engine is not None and version is not None and version < CONFIG_SINCE:
            return UnknownFormat(
                f"{self.config_key}: {engine.label} has no DeepseekV4FP8Config (vLLM reads"
                f" DeepSeek-V4's fp8 configs with it from 0.20.0); what this release makes of"
                " the config is not modelled",
                hint="check against the vLLM release you serve it with, 0.20.0 or later",
            )
        if (self.block == (32, 32) and self.expert_dtype == "fp4"
                and (version is None or version >= MXFP8_LINEAR_SINCE)):
            return UnknownFormat(
                f"{self.config_key}: `weight_block_size: [32, 32]` with E8M0 scales builds"
                " every Linear layer MXFP8 (ModelOptLinearMethod, DeepSeek-V4.1's layout),"
                " which qscale does not model",
                hint="qscale checks DeepSeek-V4's [128, 128] block-FP8 layout",
            )
        if (self.expert_dtype != "fp4" and engine is not None and engine.version is not None
                and engine.version < EXPERT_DTYPE_SINCE):
            return UnknownFormat(
                f"config.json: expert_dtype {self.expert_dtype!r} is not checked for"
                f" {engine.label}: vLLM 0.20.0 ignores it (every expert MXFP4, E8M0"
                " scales); 0.20.1 reads it",
                hint="check against vLLM >= 0.20.1",
            )
        return None

    def resolve(self, module: ModuleInfo) -> Resolution:
        """Every Linear is block FP8 unless listed; the routed experts follow
        ``expert_dtype``."""
        if module.name in self.ignored:
            return Resolution(None, "listed in the config's ignored layers")
        if _EXPERT.search(module.name):
            scheme = self.expert_scheme(module.name, module.tensors.keys())
            if scheme in (NVFP4_EXPERTS, NVFP4_EXPERTS_SCALE):
                return Resolution(scheme, f"{METHOD} routed experts (moe_quant_algo NVFP4)")
            why = f"expert_dtype {self.expert_dtype}"
            if self.moe_quant_algo == "NVFP4" and self.expert_dtype == "fp4":
                why += (", moe_quant_algo NVFP4 not read before vLLM 0.22.0"
                        if not self._since(NVFP4_SINCE) else
                        ", kept MXFP4 by the config's `ignore`")
            return Resolution(scheme, f"{METHOD} routed experts ({why})")
        return Resolution(self.linear, f"{METHOD} (all Linear layers)")


def other_model(key: str, method: str, architecture: str | None) -> UnknownFormat:
    """QS102 for the config on a model other than ``DeepseekV4ForCausalLM``: the stored
    ``.scale`` names are that model's mapper's, so another model's are not known."""
    return UnknownFormat(
        f"{key}: quant_method {method!r} on {architecture or 'this model'} is loaded with"
        " vLLM's DeepseekV4FP8Config, which qscale models for DeepseekV4ForCausalLM only",
        hint="the tensor names it expects come from that model's weight mapper",
    )


def parse(qc: Mapping[str, Any], *, config_key: str = "config.json",
          expert_dtype: Any = "fp4") -> DeepseekV4Fp8Config:
    """Parse the config (``expert_dtype``: the hf_config field, default ``fp4``)."""
    base = fp8.parse(qc, config_key=config_key)  # Fp8Config.from_config's validation
    block = base.scheme.weights.block
    if block is None:
        raise UnknownFormat(
            f"{config_key}: a DeepSeek-V4 fp8 config without `weight_block_size` is not"
            " modelled (the release format is block FP8)",
            hint="DeepSeek-V4 checkpoints use weight_block_size [128, 128]",
        )
    algo = qc.get("moe_quant_algo") or ""
    if not isinstance(algo, str):
        raise ConfigError(f"{config_key}: quantization_config.moe_quant_algo must be a string")
    ignore = qc.get("ignore")
    dtype = expert_dtype if isinstance(expert_dtype, str) else repr(expert_dtype)
    return DeepseekV4Fp8Config(
        _linear(block, dtype),
        MXFP4_EXPERTS if dtype == "fp4" else _linear(block, "fp8"),
        base.ignored,
        dtype,
        algo.upper(),
        config_key,
        modelopt_ignore=tuple(p for p in ignore if isinstance(p, str))
        if isinstance(ignore, list) else (),
        block=(block[0], block[1]),
    )



def parse_for_model(qc: Mapping[str, Any], *, config_key: str = "config.json",
                    architecture: str | None = None,
                    hf_config: Mapping[str, Any] | None = None) -> DeepseekV4Fp8Config:
    """Parse a config vLLM hands to ``DeepseekV4FP8Config`` (:func:`applies`): on the model
    ``architecture`` of ``hf_config`` (config.json), whose ``expert_dtype`` it reads too; QS102
    on a model other than :data:`ARCHITECTURE`."""
    if architecture != ARCHITECTURE:
        raise other_model(config_key, str(qc.get("quant_method", METHOD)).lower(), architecture)
    return parse(qc, config_key=config_key,
                 expert_dtype=(hf_config or {}).get("expert_dtype", "fp4"))
