"""gpt-oss: q/k/v stacking; experts stored fused per layer and renamed by suffix.

Source: vLLM ``gpt_oss.py`` (``GptOssForCausalLM.hf_to_vllm_mapper``).
"""

from qscale.engines.families._api import ExpertNames, Family
from qscale.engines.families.qwen import QKV

#: ``GptOssForCausalLM.hf_to_vllm_mapper.orig_to_new_suffix`` (vLLM 0.32/0.33), minus the
#: entries that end in a per-expert leaf (``.down_proj.weight`` …), which qscale maps through
#: the expert mapping for per-expert (llm-compressor) layouts
SUFFIXES = (
    (".embed_tokens.weight", ".embedding.weight"),
    (".gate_up_proj_blocks", ".w13_weight"),
    (".down_proj_blocks", ".w2_weight"),
    (".gate_up_proj_scales", ".w13_weight_scale"),
    (".down_proj_scales", ".w2_weight_scale"),
    (".experts.gate_up_proj", ".experts.w13_weight"),
    (".experts.down_proj", ".experts.w2_weight"),
    (".gate_up_proj_bias", ".w13_bias"),
    (".down_proj_bias", ".w2_bias"),
)

GPT_OSS = Family(
    name="gpt_oss",
    architectures=("GptOssForCausalLM",),
    stacked=QKV,
    substr_map=((".self_attn.", ".attn."),),
    suffix_map=SUFFIXES,
    experts=ExpertNames(),
    never_quantized=(".mlp.router",),  # a plain torch.nn.Linear
)
