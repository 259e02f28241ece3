"""GLM-4.5 MoE: DeepSeek-style ``shared_experts``. Source: vLLM ``glm4_moe.py``."""

from qscale.engines.families._api import ExpertNames, Family, Stacked
from qscale.engines.families.qwen import GATE_UP, QKV

GLM4_MOE = Family(
    name="glm4_moe",
    architectures=("Glm4MoeForCausalLM",),
    stacked=QKV
    + GATE_UP
    + (
        Stacked(".shared_experts.gate_up_proj", ".shared_experts.gate_proj", 0),
        Stacked(".shared_experts.gate_up_proj", ".shared_experts.up_proj", 1),
    ),
    experts=ExpertNames(),
    shared_expert=".shared_experts.",
    never_quantized=(".mlp.gate",),
)
