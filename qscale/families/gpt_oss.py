"""gpt-oss: q/k/v stacking; experts stored fused per layer and renamed by suffix.

Source: vLLM ``gpt_oss.py`` (``GptOssForCausalLM.hf_to_vllm_mapper``).
"""

from qscale.families._api import Family
from qscale.families.qwen import QKV

GPT_OSS = Family(
    name="gpt_oss",
    architectures=("GptOssForCausalLM",),
    stacked=QKV,
    never_quantized=(".mlp.router",),  # a plain torch.nn.Linear
)
