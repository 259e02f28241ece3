"""Qwen2-MoE, Qwen3-MoE, Qwen3-Next and Qwen3.5 (dense and MoE; text-only and VL classes).

Source: vLLM ``qwen2_moe.py``, ``qwen3_moe.py``, ``qwen3_next.py``, ``qwen3_5.py``
(``hf_to_vllm_mapper`` / ``stacked_params_mapping``); see docs/engine-loader-facts §2.2–2.3.
"""

from dataclasses import replace
from typing import Any

from qscale.engines.families._api import ExpertNames, Family, Stacked

QKV = (
    Stacked(".qkv_proj", ".q_proj", "q"),
    Stacked(".qkv_proj", ".k_proj", "k"),
    Stacked(".qkv_proj", ".v_proj", "v"),
)
GATE_UP = (Stacked(".gate_up_proj", ".gate_proj", 0), Stacked(".gate_up_proj", ".up_proj", 1))
#: Qwen3.5 GDN: in_proj_qkv fills three partitions at once (tuple shard id)
GDN = (
    Stacked(".in_proj_qkvz", ".in_proj_qkv", (0, 1, 2)),
    Stacked(".in_proj_qkvz", ".in_proj_z", 3),
    Stacked(".in_proj_ba", ".in_proj_b", 0),
    Stacked(".in_proj_ba", ".in_proj_a", 1),
)

KEY_DIM = "linear_num_key_heads*linear_key_head_dim"
VALUE_DIM = "linear_num_value_heads*linear_value_head_dim"

#: vLLM builds MoE routers and the shared-expert gate as ReplicatedLinear(quant_config=None)
ROUTERS = (".mlp.gate", ".shared_expert_gate")

QWEN2_MOE = Family(
    never_quantized=ROUTERS,
    name="qwen2_moe",
    architectures=("Qwen2MoeForCausalLM",),
    stacked=QKV + GATE_UP,
    experts=ExpertNames(),
    shared_expert=".shared_expert.",
)

#: Qwen3-MoE: the same loader (and name, for the advisories), but vLLM builds the router with
#: the model's quantization config: ``self.gate = GateLinear(..., quant_config=quant_config)``
#: in ``Qwen3MoeSparseMoeBlock`` (vLLM 0.33.0 ``qwen3_moe.py``; the generated catalogue lists
#: only ``shared_expert_gate`` unquantized from 0.18.0 to 0.33.0), so whether it is quantized
#: is the config's call (GPTQ ``modules_in_block_to_quantize`` or the stored dtypes). SGLang
#: keeps the old rule (not re-read here).
QWEN3_MOE = replace(
    QWEN2_MOE,
    architectures=("Qwen3MoeForCausalLM",),
    never_quantized=(".shared_expert_gate",),
    engines={"sglang": {"never_quantized": ROUTERS}},
)

QWEN3_NEXT = Family(
    never_quantized=ROUTERS,
    name="qwen3_next",
    architectures=("Qwen3NextForCausalLM",),
    stacked=QKV + GATE_UP,  # in_proj_qkvz / in_proj_ba are fused on disk: one slot each
    skip_prefixes=("mtp.",),
    experts=ExpertNames(),
    shared_expert=".shared_expert.",
)

_QWEN3_5: dict[str, Any] = {
    "stacked": QKV + GATE_UP + GDN,
    "partitions": {
        "in_proj_qkvz": (KEY_DIM, KEY_DIM, VALUE_DIM, VALUE_DIM),
        "in_proj_ba": ("linear_num_value_heads", "linear_num_value_heads"),
    },
    "skip_prefixes": ("mtp.",),
    "experts": ExpertNames(),
    "shared_expert": ".shared_expert.",
    "never_quantized": ROUTERS,
}

QWEN3_5_TEXT = Family(
    name="qwen3_5",
    architectures=("Qwen3_5ForCausalLM", "Qwen3_5MoeForCausalLM"),
    prefix_map=(("model.language_model.", "model."),),
    **_QWEN3_5,
)

QWEN3_5_VL = Family(
    name="qwen3_5_vl",
    architectures=("Qwen3_5ForConditionalGeneration", "Qwen3_5MoeForConditionalGeneration"),
    prefix_map=(
        ("model.language_model.", "language_model.model."),
        ("lm_head.", "language_model.lm_head."),
        ("model.visual.", "visual."),
    ),
    **_QWEN3_5,
)

FAMILIES = (QWEN2_MOE, QWEN3_MOE, QWEN3_NEXT, QWEN3_5_TEXT, QWEN3_5_VL)
