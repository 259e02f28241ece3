"""``deepseek_v4_fp8`` (``quant_method: fp8`` of DeepSeek-V4): block-FP8 Linear, MXFP4/FP8 experts.

DeepSeek-V4's own release format (deepseek-ai/DeepSeek-V4-Flash, -Pro).

The checkpoints say ``quant_method: fp8`` (``weight_block_size: [128, 128]``,
``scale_fmt: ue8m0``); vLLM hands any ``fp8`` or ``deepseek_v4_fp8`` config of a
``model_type: deepseek_v4`` model to ``DeepseekV4FP8Config``
(``override_quantization_method``), a subclass of ``Fp8Config``. Facts from vLLM 0.33.0
``vllm/models/deepseek_v4/quant_config.py`` (0.26.0 and 0.32.0 read the same):

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
  F32 scales, renamed ``weight_scale_inv``). ``moe_quant_algo: NVFP4`` in the
  quantization config switches ``fp4`` experts to ModelOpt's NVFP4 MoE method: not modelled.
* vLLM 0.20.0 (the first release with DeepSeek-V4) has no ``expert_dtype``: its
  ``DeepseekV4FP8Config`` (``model_executor/models/deepseek_v4.py``) sets
  ``is_scale_e8m0 = True`` and builds every expert MXFP4. qscale knows 0.26.0 reads
  ``expert_dtype``; an ``fp8`` one is not checked for releases before that (QS102).

The released headers agree (as quoted in NVIDIA-NeMo/Automodel issue #2034): DeepSeek-V4-Flash
``w1.weight`` ``[2048, 2048]`` I8 (two E2M1 per byte), ``w1.scale`` ``[2048, 128]`` F8_E8M0;
Flash-Base ``w1.weight`` ``[2048, 4096]`` F8_E4M3, ``w1.scale`` ``[16, 32]`` F32. vLLM copies
the packed bytes into a uint8 parameter, so U8 is accepted too. ``.scale`` tensors are not among
the scale names whose values the deep scan reads.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from qscale.engines import EngineSpec
from qscale.errors import ConfigError, UnknownFormat
from qscale.formats import fp8
from qscale.formats._api import Resolution, SameInEveryRelease
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

METHOD = "deepseek_v4_fp8"
#: ``quant_method`` values vLLM hands to ``DeepseekV4FP8Config`` for ``model_type: deepseek_v4``
METHODS = frozenset({"fp8", METHOD})
#: the model type that override applies to, and the one model whose names are modelled
MODEL_TYPE = "deepseek_v4"
ARCHITECTURE = "DeepseekV4ForCausalLM"
#: ``_DEEPSEEK_V4_EXPERT_DTYPES`` (vLLM 0.33.0 ``quant_config.py``)
EXPERT_DTYPES = ("fp4", "fp8")
#: the oldest release known to read ``expert_dtype`` (0.20.0 does not)
EXPERT_DTYPE_SINCE = (0, 26, 0)
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


@dataclass(frozen=True, slots=True)
class DeepseekV4Fp8Config(SameInEveryRelease):
    """A DeepSeek-V4 ``fp8`` / ``deepseek_v4_fp8`` config as ``DeepseekV4FP8Config`` reads it."""

    linear: QuantScheme
    experts: QuantScheme
    ignored: frozenset[str]
    expert_dtype: str
    moe_quant_algo: str
    config_key: str = "config.json"
    method: str = METHOD

    def refusal(self, engine: EngineSpec | None) -> ConfigError | UnknownFormat | None:
        """vLLM's ValueError for an unknown ``expert_dtype``; QS102 for what is not modelled
        (NVFP4 experts, SGLang, ``fp8`` experts before 0.26.0)."""
        if engine is not None and engine.engine != "vllm":
            return UnknownFormat(
                f"{self.config_key}: {engine.engine}'s loading of DeepSeek-V4's"
                f" {METHOD} checkpoints is not modelled",
                hint="check it against vLLM (`--engine vllm==0.33.0`)",
            )
        if self.expert_dtype not in EXPERT_DTYPES:
            return ConfigError(
                f"config.json: expert_dtype {self.expert_dtype!r} is refused by vLLM's"
                f" DeepseekV4FP8Config (\"Unsupported DeepSeek V4 expert_dtype\"; expected"
                f" one of {EXPERT_DTYPES})",
                hint="set expert_dtype to \"fp4\" (MXFP4 experts) or \"fp8\" (FP8 experts)",
            )
        if self.expert_dtype == "fp4" and self.moe_quant_algo == "NVFP4":
            return UnknownFormat(
                f"{self.config_key}: `moe_quant_algo: NVFP4` builds DeepSeek-V4's experts"
                " with ModelOpt's NVFP4 MoE method, which qscale does not model here",
                hint="the FP8 Linear layers of such a checkpoint are not checked either",
            )
        if (self.expert_dtype != "fp4" and engine is not None and engine.version is not None
                and engine.version < EXPERT_DTYPE_SINCE):
            return UnknownFormat(
                f"config.json: expert_dtype {self.expert_dtype!r} is not checked for"
                f" {engine.label}: vLLM 0.20.0 ignores it (every expert MXFP4, E8M0"
                " scales) and qscale knows it read from 0.26.0",
                hint="check against vLLM >= 0.26.0",
            )
        return None

    def resolve(self, module: ModuleInfo) -> Resolution:
        """Every Linear is block FP8 unless listed; the routed experts follow
        ``expert_dtype``."""
        if module.name in self.ignored:
            return Resolution(None, "listed in the config's ignored layers")
        if _EXPERT.search(module.name):
            return Resolution(self.experts, f"{METHOD} routed experts (expert_dtype"
                                            f" {self.expert_dtype})")
        return Resolution(self.linear, f"{METHOD} (all Linear layers)")


def other_model(key: str, method: str, architecture: str | None) -> UnknownFormat:
    """QS102 for the config on a model other than ``DeepseekV4ForCausalLM``: the stored
    ``.scale`` names are that model's mapper's, so another model's are not known."""
    return UnknownFormat(
        f"{key}: quant_method {method!r} on {architecture or 'this model'} is loaded with"
        " vLLM's DeepseekV4FP8Config, which qscale models for DeepseekV4ForCausalLM only",
        hint="the tensor names it expects come from that model's weight mapper",
    )


def applies(method: str, model_type: str | None) -> bool:
    """Whether vLLM loads a config of ``method`` for ``model_type`` as ``deepseek_v4_fp8``."""
    return method == METHOD or (method in METHODS and model_type == MODEL_TYPE)


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
    dtype = expert_dtype if isinstance(expert_dtype, str) else repr(expert_dtype)
    return DeepseekV4Fp8Config(
        _linear(block, dtype),
        MXFP4_EXPERTS if dtype == "fp4" else _linear(block, "fp8"),
        base.ignored,
        dtype,
        algo.upper(),
        config_key,
    )
