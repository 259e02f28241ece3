"""Llama and its look-alikes. Source: vLLM ``llama.py`` (``LlamaModel``)."""

from qscale.engines.families._api import Family
from qscale.engines.families.qwen import GATE_UP, QKV

LLAMA = Family(
    name="llama",
    architectures=(
        "LlamaForCausalLM",
        "MistralForCausalLM",
        "Qwen2ForCausalLM",
        "Qwen3ForCausalLM",
    ),
    stacked=QKV + GATE_UP,
)
