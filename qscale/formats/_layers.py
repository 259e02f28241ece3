"""Which engine layer a checkpoint module becomes, where that, not the config, decides whether
it is quantized.

A quantization config only reaches the layers the engine builds with it, and a method only
quantizes the layer classes its ``get_quant_method`` handles: vLLM's ``Fp8Config``,
``QuarkConfig`` and ``CompressedTensorsConfig`` (``vllm/model_executor/layers/quantization/
fp8.py``, ``quark/quark.py``, ``compressed_tensors/compressed_tensors.py``) return a linear
method for a ``LinearBase`` and a MoE method for a ``FusedMoE``, and None for anything else.

* Some Linear-shaped modules are built as a torch ``nn.Linear`` the engine catalogue does not
  see (it reads ``quant_config=None`` and the children a wrapper builds without the config —
  the family's ``never_quantized`` and ``unquantized_prefixes``): :func:`built_unquantized`
  lists those, per architecture, and resolution leaves them unquantized.
* ``lm_head`` (and DeepSeek's MTP ``shared_head.head``) is a ``ParallelLMHead``, a
  ``VocabParallelEmbedding``, not a ``LinearBase`` (:func:`is_lm_head`). Whether it is built
  quantized depends on the method and the engine release, so resolution keeps the config's
  scheme (how the exporter wrote it) and the rules judge the head against the engine profile
  (``qscale.rules._structure.head_built_unquantized``, QS206's table).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

#: (suffixes, prefixes, why) of checkpoint modules an architecture builds unquantized
_Rule = tuple[tuple[str, ...], tuple[str, ...], str]

#: DeepSeek MTP layers ``model.layers.<num_hidden_layers + k>``: ``eh_proj`` is a torch
#: ``nn.Linear`` (vLLM ``deepseek_mtp.py``, ``DeepSeekMultiTokenPredictorLayer.__init__``;
#: SGLang ``deepseek_nextn.py`` likewise), which no quantization method reaches
_DEEPSEEK_MTP: _Rule = (
    (".eh_proj",), (), "a torch nn.Linear in the engine (DeepSeek MTP `eh_proj`)"
)

#: DeepSeek-V4's ``embed`` (a ``VocabParallelEmbedding``) and ``head`` (a ``ParallelLMHead``
#: built with no quantization config): vLLM 0.33 ``vllm/models/deepseek_v4/nvidia/model.py``,
#: ``DeepseekV4ForCausalLM.__init__`` / ``DeepseekV4Model.__init__``; and the MTP layer's
#: ``mtp.<i>.head`` / ``mtp.<i>.emb.tok_emb`` (``nvidia/mtp.py`` renames them to
#: ``shared_head.head``, a ``ParallelLMHead``, and ``embed_tokens``). The release's names do
#: not read as an embedding or an ``lm_head``.
_DEEPSEEK_V4_ENDS: _Rule = (
    (".head", ".emb.tok_emb"), ("embed", "head"),
    "not a Linear in the engine (DeepSeek-V4 `embed` / `head`)",
)

BUILT_UNQUANTIZED: Mapping[str, tuple[_Rule, ...]] = {
    "DeepseekV2ForCausalLM": (_DEEPSEEK_MTP,),
    "DeepseekV3ForCausalLM": (_DEEPSEEK_MTP,),
    "DeepseekV4ForCausalLM": (_DEEPSEEK_V4_ENDS,),
}


def is_lm_head(name: str) -> bool:
    """Whether the engine builds this module as a ``ParallelLMHead``."""
    return name == "lm_head" or name.endswith((".lm_head", ".shared_head.head"))


def built_unquantized_texts(architecture: str | None) -> tuple[str, ...]:
    """Every suffix and prefix :func:`built_unquantized` matches module names against."""
    return tuple(t for r in BUILT_UNQUANTIZED.get(architecture or "", ()) for t in (*r[0], *r[1]))


def built_unquantized(architecture: str | None) -> Callable[[str], str | None] | None:
    """For an architecture with such modules: module name -> why the engine builds it
    unquantized (None: it does not); None when the architecture has none."""
    rules = BUILT_UNQUANTIZED.get(architecture or "")
    if not rules:
        return None
    suffixes = tuple(s for r in rules for s in r[0])
    prefixes = tuple(p for r in rules for p in r[1])

    def why(name: str) -> str | None:
        if not (name.endswith(suffixes) or name.startswith(prefixes)):
            return None  # almost every module: one test each
        return next(r[2] for r in rules if name.endswith(r[0]) or name.startswith(r[1]))

    return why
