"""vLLM 0.33's quantization registry as data: every ``quant_method`` it lists, the config class
it maps the name to, whether checkpoints carry the name, and, for the names qscale does not
model, why (the QS102 message says it; ``docs/methods.md`` tabulates it).

Source: vLLM 0.33.0 ``vllm/model_executor/layers/quantization/__init__.py``
(``QuantizationMethods``, ``get_quantization_config``), ``vllm/config/quantization.py``
(``_ONLINE_SHORTHANDS``), ``vllm/config/model.py`` (``_verify_quantization``: the override
order and ``DEPRECATED_QUANTIZATION_METHODS``), and each config's ``from_config`` /
``override_quantization_method``. "Written by" names the tools whose exports carry the name
(transformers' ``QuantizationMethod`` enum, 5.17, for the transformers-integrated ones).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

_Q = "model_executor/layers/quantization/"


class Use(Enum):
    """Whether a ``quant_method`` name appears in checkpoints."""

    CHECKPOINT = "checkpoint format"
    ALIAS = "alias"  #: another spelling of a checkpoint format
    SERVE_TIME = "serve-time method"  #: picked with --quantization over another format
    RUNTIME = "runtime method"  #: quantizes an unquantized checkpoint while loading


@dataclass(frozen=True, slots=True)
class Method:
    """One name in vLLM 0.33's ``QUANTIZATION_METHODS`` (or taken over by an override)."""

    name: str
    config: str  #: the class ``get_quantization_config`` returns for it
    source: str  #: the file that class lives in, under vllm/
    use: Use
    written_by: str = ""  #: the tools whose checkpoints carry the name
    #: why qscale stops at QS102 (only for names no qscale parser takes)
    why_not: str = ""


_RUNTIME = ("runtime method, not a checkpoint format: vLLM 0.33 maps it to"
            " OnlineQuantizationConfig, which quantizes an unquantized checkpoint while it loads"
            " and whose from_config refuses a checkpoint config (\"OnlineQuantizationConfig does"
            " not support loading from a checkpoint config\")")

VLLM_0_33: tuple[Method, ...] = (
    Method("awq", "AutoAWQConfig", f"{_Q}auto_awq.py", Use.CHECKPOINT,
           "AutoAWQ, GPTQModel, AutoRound (auto_awq export)"),
    Method("auto_awq", "AutoAWQConfig", f"{_Q}auto_awq.py", Use.ALIAS),
    Method("awq_marlin", "AutoAWQConfig", f"{_Q}auto_awq.py", Use.ALIAS),
    Method("fp8", "Fp8Config", f"{_Q}fp8.py", Use.CHECKPOINT,
           "DeepSeek / Qwen official FP8, transformers FineGrainedFP8Config"),
    Method("fbgemm_fp8", "FBGEMMFp8Config", f"{_Q}fbgemm_fp8.py", Use.CHECKPOINT,
           "transformers FbgemmFp8Config (Meta's Llama-3.1 FP8); deprecated in vLLM 0.33"),
    Method("fp_quant", "FPQuantConfig", f"{_Q}fp_quant.py", Use.CHECKPOINT,
           "transformers FPQuantConfig, IST-DASLab FP-Quant (MXFP4 / NVFP4 behind a Hadamard"
           " rotation); deprecated in vLLM 0.33"),
    Method("modelopt", "ModelOptFp8Config", f"{_Q}modelopt.py", Use.CHECKPOINT,
           "NVIDIA ModelOpt (hf_quant_config.json or inline)"),
    Method("modelopt_fp4", "ModelOptNvFp4Config", f"{_Q}modelopt.py", Use.CHECKPOINT,
           "NVIDIA ModelOpt NVFP4"),
    Method("modelopt_mxfp8", "ModelOptMxFp8Config", f"{_Q}modelopt.py", Use.CHECKPOINT,
           "NVIDIA ModelOpt MXFP8"),
    Method("modelopt_mixed", "ModelOptMixedPrecisionConfig", f"{_Q}modelopt.py",
           Use.CHECKPOINT, "NVIDIA ModelOpt mixed precision"),
    Method("mxfp8", "ModelOptMxFp8Config", f"{_Q}modelopt.py", Use.CHECKPOINT,
           "MiniMax-style MXFP8 exports (also an online shorthand, for --quantization only)"),
    Method("gptq", "AutoGPTQConfig", f"{_Q}auto_gptq.py", Use.CHECKPOINT,
           "AutoGPTQ, GPTQModel, AutoRound (auto_gptq export)"),
    Method("auto_gptq", "AutoGPTQConfig", f"{_Q}auto_gptq.py", Use.ALIAS),
    Method("gptq_marlin", "AutoGPTQConfig", f"{_Q}auto_gptq.py", Use.ALIAS),
    Method("humming", "HummingConfig", f"{_Q}humming.py", Use.SERVE_TIME, "",
           "a serve-time kernel backend (--quantization humming, chosen over the checkpoint's"
           " own GPTQ / AWQ / compressed-tensors / ModelOpt config); a config whose"
           " quant_method is 'humming' goes to the weight schemas of the separate humming"
           " package (BaseWeightSchema.from_config, through vllm/utils/humming.py), which"
           " qscale has not read; no checkpoint tool qscale knows writes it"),
    Method("compressed-tensors", "CompressedTensorsConfig",
           f"{_Q}compressed_tensors/compressed_tensors.py", Use.CHECKPOINT,
           "llm-compressor, compressed-tensors"),
    Method("experts_int8", "ExpertsInt8Config", f"{_Q}experts_int8.py", Use.RUNTIME,
           "an unquantized checkpoint tagged for load-time INT8 experts"),
    Method("quark", "QuarkConfig", f"{_Q}quark/quark.py", Use.CHECKPOINT, "AMD Quark"),
    Method("moe_wna16", "MoeWNA16Config", f"{_Q}moe_wna16.py", Use.SERVE_TIME,
           "none (picked with --quantization over a GPTQ / AWQ checkpoint)"),
    Method("torchao", "TorchAOConfig", f"{_Q}torchao.py", Use.CHECKPOINT,
           "transformers TorchAoConfig (safetensors holding torchao's flattened tensor"
           " subclasses): the pytorch/* Hub org's -INT4 (Int4WeightOnlyConfig, tile-packed,"
           " HQQ), -FP8 (Float8DynamicActivationFloat8WeightConfig, per row), -INT8-INT4"
           " (Int8DynamicActivationIntxWeightConfig) and -AWQ-INT4 (AWQConfig over plain"
           " Int4WeightOnlyConfig) checkpoints"),
    Method("inc", "INCConfig", f"{_Q}inc/inc.py", Use.ALIAS,
           "none known (INCConfig's own name; AutoRound writes auto-round)"),
    Method("auto-round", "INCConfig", f"{_Q}inc/inc.py", Use.CHECKPOINT,
           "Intel AutoRound (not in the list: INCConfig.override_quantization_method takes it)"),
    Method("mxfp4", "Mxfp4Config", f"{_Q}mxfp4.py", Use.CHECKPOINT,
           "gpt-oss official, transformers Mxfp4Config"),
    Method("gpt_oss_mxfp4", "GptOssMxfp4Config", f"{_Q}mxfp4.py", Use.ALIAS),
    Method("deepseek_v4_fp8", "DeepseekV4FP8Config", "models/deepseek_v4/quant_config.py",
           Use.CHECKPOINT, "DeepSeek-V4 official (quant_method fp8 with model_type deepseek_v4)"),
    Method("online", "OnlineQuantizationConfig", f"{_Q}online/base.py", Use.RUNTIME),
    Method("fp8_per_tensor", "OnlineQuantizationConfig", f"{_Q}online/fp8.py", Use.RUNTIME),
    Method("fp8_per_block", "OnlineQuantizationConfig", f"{_Q}online/fp8.py", Use.RUNTIME),
    Method("fp8_per_channel", "OnlineQuantizationConfig", f"{_Q}online/fp8.py", Use.RUNTIME),
    Method("int8_per_channel_weight_only", "OnlineQuantizationConfig", f"{_Q}online/int8.py",
           Use.RUNTIME),
    Method("nvfp4_per_token", "OnlineQuantizationConfig", f"{_Q}online/nvfp4.py",
           Use.RUNTIME),
)
BY_NAME = {m.name: m for m in VLLM_0_33}
#: the online names that no checkpoint may carry (vLLM 0.33 refuses them in a config)
RUNTIME_ONLY = tuple(m.name for m in VLLM_0_33
                     if m.config == "OnlineQuantizationConfig")
RUNTIME_REASON = _RUNTIME
