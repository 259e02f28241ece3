"""DeepSeek-V2/V3: MLA ``fused_qkv_a_proj`` only when ``q_lora_rank`` is set.

Sources: vLLM ``deepseek_v2.py`` (``DeepseekV2Model.load_weights``, a classic list even in
v0.33); docs/engine-loader-facts §2.2. SGLang (facts §2.5;
``models/deepseek_common/deepseek_weight_loader.py``, ``DeepseekV2WeightLoaderMixin``): no
stacked entry for the A projections; ``q_a_proj`` and ``kv_a_proj_with_mqa`` are held back
until both arrived, concatenated along dim 0 and loaded whole into the ``ReplicatedLinear``
``fused_qkv_a_proj_with_mqa``; when both tensors are 0-d, the ``q_a_proj`` one is loaded alone.
SGLang added this fusion in PR #5619 (April 2025); qscale's single SGLang profile applies it to
every version, so releases older than that are modelled with it too.
"""

from qscale.families._api import ExpertNames, Family, Stacked

_GATE_UP = (Stacked("gate_up_proj", "gate_proj", 0), Stacked("gate_up_proj", "up_proj", 1))

DEEPSEEK_V2 = Family(
    name="deepseek_v2",
    architectures=("DeepseekV2ForCausalLM", "DeepseekV3ForCausalLM"),
    stacked=(
        *_GATE_UP,
        Stacked("fused_qkv_a_proj", "q_a_proj", 0),
        Stacked("fused_qkv_a_proj", "kv_a_proj_with_mqa", 1),
    ),
    partitions={"fused_qkv_a_proj": ("q_lora_rank", "kv_lora_rank+qk_rope_head_dim")},
    requires={"fused_qkv_a_proj": "q_lora_rank"},
    experts=ExpertNames(),
    shared_expert=".shared_experts.",
    never_quantized=(".mlp.gate",),  # ReplicatedLinear(..., quant_config=None)
    # DeepseekV2Model.load_weights: `get_spec_layer_idx_from_weight_name` -> continue (MTP
    # layers `model.layers.<num_hidden_layers + i>` load into the draft model only; 0.18–0.33)
    draft_layers_from="num_hidden_layers",
    engines={
        "sglang": {
            "stacked": (
                *_GATE_UP,
                Stacked("fused_qkv_a_proj_with_mqa", "q_a_proj", 0),
                Stacked("fused_qkv_a_proj_with_mqa", "kv_a_proj_with_mqa", 1),
            ),
            "partitions": {
                "fused_qkv_a_proj_with_mqa": ("q_lora_rank", "kv_lora_rank+qk_rope_head_dim")
            },
            "requires": {"fused_qkv_a_proj_with_mqa": "q_lora_rank"},
            "concatenated": ("fused_qkv_a_proj_with_mqa",),
        }
    },
)
