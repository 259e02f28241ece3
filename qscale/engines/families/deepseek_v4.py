"""DeepSeek-V4 (``DeepseekV4ForCausalLM``): the names of DeepSeek's own release format.

Sources, vLLM 0.33.0 (the same in 0.32.0; ``vllm/models/deepseek_v4/``):

* ``__init__.py`` picks the model class per platform; this family is the CUDA one
  (``nvidia/model.py``), which the ``else`` branch imports. The committed catalogue was
  generated when ``qscale.engines.extract`` read the first branch (``amd/model.py``) and
  could not evaluate the mapper ``_make_deepseek_v4_weights_mapper(expert_dtype)`` builds
  under an ``if``. The extractor now reads both (on the 0.33.0 wheel it yields this mapper
  and these stacked entries), but what it extracts is not enough to plan the model: it takes
  the stacked loop's ``if ".experts." in name: continue`` for a skip of every expert, and
  does not see the compressors' and the indexer's ``quant_config=None``, the TP splits or the
  MoE layer's checkpoint names by release. This override is written by hand.
* ``nvidia/model.py`` ``_make_deepseek_v4_weights_mapper("fp4")`` (the class attribute
  ``hf_to_vllm_mapper``; ``__init__`` rebuilds it only for ``expert_dtype != "fp4"``):
  regex ``(\\.experts\\.\\d+\\.w[123])\\.scale$`` -> ``\\1.weight_scale`` and ``\\.scale$`` ->
  ``.weight_scale_inv``; substrings ``.shared_experts.w2`` -> ``.shared_experts.down_proj``
  and ``mtp.`` -> None (the MTP layers load into the draft model, ``nvidia/mtp.py``);
  prefixes ``layers.``/``embed.``/``norm.``/``hc_head``/``mtp.`` -> under ``model.``;
  suffixes ``head.weight`` -> ``lm_head.weight``, ``embed.weight`` -> ``embed_tokens.weight``,
  ``.ffn.gate.bias`` -> ``.ffn.gate.e_score_correction_bias``.
* ``DeepseekV4Model.load_weights``: ``stacked_params_mapping`` (below); names holding
  ``.experts.`` go through ``get_expert_mapping`` (``ckpt_gate_proj_name="w1"``,
  ``ckpt_down_proj_name="w2"``, ``ckpt_up_proj_name="w3"``).
* Built without a quantization config: the router ``ffn.gate`` (``GateLinear``), the
  compressors' ``fused_wkv_wgate`` (``compressor.py``, ``quant_config=None``) and the
  indexer's ``weights_proj`` (``attention.py`` ``DeepseekV4Indexer``). Built with it:
  ``attn.fused_wqa_wkv`` (``MergedColumnParallelLinear`` of ``[q_lora_rank, head_dim]``,
  replicated), ``attn.wq_b``, ``attn.wo_a``, ``attn.wo_b``, ``attn.indexer.wq_b``, the shared
  experts' ``gate_up_proj``/``down_proj`` (``DeepseekV4MLP``) and the routed experts.

The suffix renames are written here as regexes anchored at the end, composed with the prefix
rename that vLLM applies before them (``embed.weight`` -> ``model.embed_tokens.weight``): a
hand-written family stops at its first prefix rule and treats a suffix rename as final.
"""

from __future__ import annotations

from qscale.engines.families._api import ConfigRead, ExpertNames, Family, Stacked

DEEPSEEK_V4 = Family(
    name="deepseek_v4",
    architectures=("DeepseekV4ForCausalLM",),
    # DeepseekV4Attention.__init__ reads config.quantization_config["scale_fmt"] in 0.20.0-0.21.0
    # (vllm/model_executor/models/deepseek_v4.py) and 0.22.0-0.22.1
    # (vllm/models/deepseek_v4/nvidia/model.py); from 0.23.0 attention.py sets "ue8m0" itself
    # (read in every wheel from 0.20.0 to 0.33.0)
    reads_quant_config=(ConfigRead("scale_fmt", (0, 20, 0), (0, 23, 0),
                                   "DeepSeek-V4's attention (DeepseekV4Attention.__init__)",
                                   "ue8m0"),),
    stacked=(
        # DeepseekV4Model.load_weights, in its order (first match wins)
        Stacked("gate_up_proj", "w1", 0),
        Stacked("gate_up_proj", "w3", 1),
        Stacked("attn.fused_wqa_wkv", "attn.wq_a", 0),
        Stacked("attn.fused_wqa_wkv", "attn.wkv", 1),
        Stacked("compressor.fused_wkv_wgate", "compressor.wkv", 0),
        Stacked("compressor.fused_wkv_wgate", "compressor.wgate", 1),
    ),
    partitions={
        "fused_wqa_wkv": ("q_lora_rank", "head_dim"),
        "gate_up_proj": ("moe_intermediate_size*n_shared_experts",
                         "moe_intermediate_size*n_shared_experts"),
    },
    regex_map=(
        (r"(\.experts\.\d+\.w[123])\.scale$", r"\1.weight_scale"),
        (r"\.scale$", ".weight_scale_inv"),
        (r"^head\.weight$", "lm_head.weight"),
        (r"^embed\.weight$", "model.embed_tokens.weight"),
        (r"\.ffn\.gate\.bias$", ".ffn.gate.e_score_correction_bias"),
    ),
    substr_map=((".shared_experts.w2", ".shared_experts.down_proj"),),
    prefix_map=(
        ("layers.", "model.layers."),
        ("embed.", "model.embed."),
        ("norm.", "model.norm."),
        ("hc_head", "model.hc_head"),
    ),
    # ``mtp.`` -> None in the mapper: the draft model's layers, not the main model's
    skip_prefixes=("mtp.",),
    packed={"fused_wqa_wkv": 2, "gate_up_proj": 2, "fused_wkv_wgate": 2},
    experts=ExpertNames(gate="w1", down="w2", up="w3"),
    shared_expert=".shared_experts.",
    never_quantized=(".ffn.gate", ".compressor.wkv", ".compressor.wgate",
                     ".indexer.weights_proj"),
    # attention.py: ``fused_wqa_wkv`` and the compressors' ``fused_wkv_wgate`` are
    # ``disable_tp=True``, the indexer's ``wq_b`` and ``weights_proj`` ``ReplicatedLinear``,
    # ``wo_b`` a ``RowParallelLinear`` (``wq_b``, ``wo_a``: ``ColumnParallelLinear``)
    tp_splits={".attn.fused_wqa_wkv": "replicated", ".fused_wkv_wgate": "replicated",
               ".indexer.wq_b": "replicated", ".indexer.weights_proj": "replicated",
               ".attn.wo_b": "row"},
    # 0.32.0 builds the routed experts with ``ckpt_names=("w1", "w2", "w3")``
    # (``DeepseekV4MoE._init_fused_moe_experts``); 0.20.0 to 0.31.0 with FusedMoE's default
    # names, which compressed-tensors then probes (``experts.0.gate_proj``)
    moe_layer_names_before=((0, 32, 0), ExpertNames()),
    # real vLLM 0.32.0 and 0.33.0 on CPU build this class's routed experts with
    # UnquantizedFusedMoEMethod under RedHatAI/DeepSeek-V4-Flash-NVFP4-FP8's targets
    # (oracle/dsv4_moe_oracle.py, tests/fixtures/vllm_golden/dsv4/)
    moe_layer_built_by="vllm/models/deepseek_v4/nvidia/model.py,"
                       " `DeepseekV4MoE._init_fused_moe_experts`",
    read_from=("vllm",),  # SGLang's DeepSeek-V4 loader is not read
)

#: architectures qscale cannot plan although the generated catalogue would compose them, and
#: why: the VL wrapper's mapper is built at run time from the text model's (re-rooted under
#: ``language_model.``, ``vision.``/``aligner.``/``image_`` dropped without images), which the
#: generator does not see (``vllm/models/deepseek_v4/common/vl_model.py``, vLLM 0.33.0).
#:
#: ``DeepseekV41ForCausalLM`` (registered from 0.30.0, ``vllm.models.deepseek_v41``) is not
#: DeepSeek-V4's loader under another name. On CUDA its class is the vision-language wrapper
#: of ``deepseek_v41/nvidia/vl_model.py`` (0.33.0): ``__init__`` builds its mapper with
#: ``_make_deepseek_v4_vl_weights_mapper(expert_dtype, _linear_scale_param_name(...))``,
#: which re-roots every name under ``language_model.model.`` and renames ``.scale`` to the
#: parameter name of the Linear method it picks at run time (MXFP8 ``[32, 32]`` Linear layers
#: through ``ModelOptLinearMethod`` in ``deepseek_v41/quant_config.py``); the text model
#: (``deepseek_v41/nvidia/model.py``) adds Engram modules (``common/engram.py``, with an FP8
#: ``engram.embed`` table whose ``.scale`` is routed by its own rule) that DeepSeek-V4 lacks.
NOT_PLANNED = {
    "DeepseekV4ForConditionalGeneration": (
        "its hf_to_vllm_mapper is built at run time from DeepseekV4ForCausalLM's"
        " (_make_deepseek_v4_vl_weights_mapper in vllm/models/deepseek_v4/common/vl_model.py),"
        " which qscale does not model"
    ),
    "DeepseekV41ForCausalLM": (
        "its loader is not DeepSeek-V4's: the class is a vision-language wrapper whose"
        " hf_to_vllm_mapper is built at run time, re-rooted under language_model.model. and"
        " renaming `.scale` to the name of the Linear method it picks (MXFP8 [32, 32] via"
        " ModelOptLinearMethod), and the text model adds Engram modules"
        " (vllm/models/deepseek_v41/nvidia/vl_model.py, nvidia/model.py, common/engram.py),"
        " which qscale does not model"
    ),
}
