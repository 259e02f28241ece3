"""DeepSeek-V2/V3: MLA ``fused_qkv_a_proj`` only when ``q_lora_rank`` is set.

Source: vLLM ``deepseek_v2.py`` (``DeepseekV2Model.load_weights``, a classic list even in
v0.33); docs/engine-loader-facts §2.2.
"""

from qscale.families._api import ExpertNames, Family, Stacked

DEEPSEEK_V2 = Family(
    name="deepseek_v2",
    architectures=("DeepseekV2ForCausalLM", "DeepseekV3ForCausalLM"),
    stacked=(
        Stacked("gate_up_proj", "gate_proj", 0),
        Stacked("gate_up_proj", "up_proj", 1),
        Stacked("fused_qkv_a_proj", "q_a_proj", 0),
        Stacked("fused_qkv_a_proj", "kv_a_proj_with_mqa", 1),
    ),
    partitions={"fused_qkv_a_proj": ("q_lora_rank", "kv_lora_rank+qk_rope_head_dim")},
    requires={"fused_qkv_a_proj": "q_lora_rank"},
    experts=ExpertNames(),
    shared_expert=".shared_experts.",
    never_quantized=(".mlp.gate",),  # ReplicatedLinear(..., quant_config=None)
)
