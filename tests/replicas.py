"""Full-scale sparse replicas of published quantized checkpoints, built from their real configs.

    from replicas import build
    build("deepseek-r1", out)             # all 91,991 tensors in 163 files, next to no disk
    build("deepseek-r1", out, layers=4)   # 3 dense layers, 1 MoE layer, and the MTP layer

A replica is what the official exporter wrote, less the weights: every tensor's name, dtype and
shape, the files they are split into and ``model.safetensors.index.json``, and ``config.json``
(plus ``hf_quant_config.json``) verbatim from ``/work/shared/realworld/<source>/`` (SOURCES.md
there says where each file was copied from). Each safetensors file gets the header the
``safetensors`` writer emits (tensors ordered by dtype alignment, then name; contiguous
offsets; space padding to 8 bytes), is extended to its full size with ``ftruncate`` so that
the weights are holes that read as zeros, and only scale tensors get real bytes: plausible
values, per-tensor scales equal across the shards an engine fuses (``q/k/v``, ``gate/up``), as
the exporters write them, and ``weight_shape`` the logical shape. A scale tensor larger than
``VALUE_CAP`` bytes (NVFP4 and INT4 per-group scales) stays a hole: writing them would cost
real disk. qscale's deep scan of scale values reads such holes as zero scales (QS303), so a
replica is checked ``header_only`` (``--header-only``), which decodes tensors of at most 64
elements only.

``layers=N`` truncates the model to its first N decoder layers and says so consistently:
``num_hidden_layers`` (and ``layer_types``) in the config, per-layer entries of the ignore or
exclude lists that name a dropped layer removed, and the parts outside the layer stack kept —
DeepSeek's MTP layer (renumbered to ``model.layers.<N>``), Qwen3.5's ``mtp.*`` and vision tower,
Kimi-K2.5's vision tower and projector.

This module imports nothing from qscale: it is a second, independent account of the formats,
shared by tests/ and bench/. Each replica's docstring says where its naming facts come from.
No file was read from the Hugging Face Hub; facts beyond the saved configs come from the
exporters' and engines' source as known to the author (cited by file and class), from the
real-tool fixtures under tests/fixtures/real/ (ModelOpt, llm-compressor, Quark naming), and
from the one real weight map saved (gpt-oss-20b). What is inferred rather than seen is marked.
"""

from __future__ import annotations

import copy
import fnmatch
import json
import math
import os
import re
import shutil
import zlib
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

REALWORLD = Path("/work/shared/realworld")
INDEX = "model.safetensors.index.json"
#: scale tensors larger than this (bytes) are left as holes
VALUE_CAP = 64 * 1024
#: transformers ``save_pretrained``'s default ``max_shard_size`` ("5GB", decimal)
HF_SHARD = 5 * 10**9

Tensor = tuple[str, str, tuple[int, ...]]  #: name, safetensors dtype, shape
JSON = dict[str, Any]

BITS = {
    "BOOL": 8, "U8": 8, "I8": 8, "F8_E4M3": 8, "F8_E5M2": 8, "F8_E8M0": 8,
    "I16": 16, "U16": 16, "F16": 16, "BF16": 16,
    "I32": 32, "U32": 32, "F32": 32, "I64": 64, "U64": 64, "F64": 64,
}
#: the ``Dtype`` enum order of safetensors (Rust); ``serialize`` writes tensors by descending
#: dtype, then by name (checked against safetensors 0.8.0's ``save_file``)
_DTYPE_ORDER = (
    "BOOL", "F4", "F6_E2M3", "F6_E3M2", "U8", "I8", "F8_E5M2", "F8_E4M3", "F8_E8M0",
    "I16", "U16", "F16", "BF16", "I32", "U32", "F32", "F64", "I64", "U64",
)
_RANK = {d: i for i, d in enumerate(_DTYPE_ORDER)}


def nbytes(dtype: str, shape: tuple[int, ...]) -> int:
    """Bytes of one tensor."""
    return (math.prod(shape) * BITS[dtype] + 7) // 8


# --------------------------------------------------------------------------- linear formats

#: One quantized Linear as its exporter writes it: (module, out, in) -> tensors.
Emit = Callable[[str, int, int], list[Tensor]]


def bf16(m: str, o: int, i: int) -> list[Tensor]:
    """An unquantized Linear."""
    return [(f"{m}.weight", "BF16", (o, i))]


def fp8_block(scale_dtype: str, bn: int = 128, bk: int = 128) -> Emit:
    """``quant_method: fp8`` block FP8 (DeepSeek-V3's ``fp8_cast_bf16.py`` reads it back the
    same way; vLLM ``Fp8LinearMethod`` registers ``weight_scale_inv``
    ``[ceil(out/bn), ceil(in/bk)]``). DeepSeek stores the scales in F32, Qwen in BF16."""

    def emit(m: str, o: int, i: int) -> list[Tensor]:
        return [(f"{m}.weight", "F8_E4M3", (o, i)),
                (f"{m}.weight_scale_inv", scale_dtype, (-(-o // bn), -(-i // bk)))]

    return emit


def ct_pack_quantized(bits: int, group: int) -> Emit:
    """compressed-tensors ``pack-quantized`` (``PackedQuantizationCompressor``): ``weight_packed``
    I32 ``[out, in*bits/32]``, ``weight_scale`` in the model dtype ``[out, in/group]``,
    ``weight_shape`` I64 ``[2]`` (names and dtypes as in tests/fixtures/real/llmc-*-W4A16)."""
    per_int = 32 // bits

    def emit(m: str, o: int, i: int) -> list[Tensor]:
        return [(f"{m}.weight_packed", "I32", (o, -(-i // per_int))),
                (f"{m}.weight_scale", "BF16", (o, -(-i // group))),
                (f"{m}.weight_shape", "I64", (2,))]

    return emit


def modelopt_fp8(m: str, o: int, i: int) -> list[Tensor]:
    """ModelOpt FP8 (per-tensor, static activations): 0-d F32 ``weight_scale`` and
    ``input_scale`` (tests/fixtures/real/modelopt-*-FP8)."""
    return [(f"{m}.weight", "F8_E4M3", (o, i)), (f"{m}.weight_scale", "F32", ()),
            (f"{m}.input_scale", "F32", ())]


def modelopt_nvfp4(m: str, o: int, i: int) -> list[Tensor]:
    """ModelOpt NVFP4: packed U8 ``weight [out, in/2]``, F8_E4M3 ``weight_scale [out, in/16]``,
    0-d F32 ``weight_scale_2`` and ``input_scale`` (tests/fixtures/real/modelopt-*-NVFP4)."""
    return [(f"{m}.weight", "U8", (o, i // 2)), (f"{m}.weight_scale", "F8_E4M3", (o, i // 16)),
            (f"{m}.weight_scale_2", "F32", ()), (f"{m}.input_scale", "F32", ())]


def modelopt_w4a16_nvfp4(m: str, o: int, i: int) -> list[Tensor]:
    """ModelOpt W4A16_NVFP4 (weight-only NVFP4): the NVFP4 weight, ``weight_scale`` and
    ``weight_scale_2``, and no ``input_scale`` (modelopt 0.47.0
    ``export/unified_export_hf.py`` ``_export_quantized_weight``: ``input_scale`` is registered
    only for an enabled input quantizer, ``weight_scale_2`` for every NVFP4 format)."""
    return modelopt_nvfp4(m, o, i)[:3]


def ct_fp8_block(m: str, o: int, i: int) -> list[Tensor]:
    """compressed-tensors ``float-quantized`` block FP8 (``FP8_BLOCK``, 128x128):
    F8_E4M3 ``weight``, ``weight_scale`` in the model dtype ``[ceil(out/128), ceil(in/128)]``
    (vLLM ``CompressedTensorsW8A8Fp8`` block scheme's ``BlockQuantScaleParameter``)."""
    return [(f"{m}.weight", "F8_E4M3", (o, i)),
            (f"{m}.weight_scale", "BF16", (-(-o // 128), -(-i // 128)))]


def ct_nvfp4(m: str, o: int, i: int) -> list[Tensor]:
    """compressed-tensors ``nvfp4-pack-quantized`` (``NVFP4``, W4A4): U8 ``weight_packed``
    ``[out, in/2]``, F8_E4M3 ``weight_scale`` ``[out, in/16]``, F32 ``weight_global_scale``
    and ``input_global_scale`` ``[1]`` (``NVFP4PackedCompressor``; vLLM
    ``CompressedTensorsW4A4Fp4`` / its MoE method)."""
    return [(f"{m}.weight_packed", "U8", (o, i // 2)),
            (f"{m}.weight_scale", "F8_E4M3", (o, i // 16)),
            (f"{m}.weight_global_scale", "F32", (1,)),
            (f"{m}.input_global_scale", "F32", (1,))]


class Builder:
    """Collects a checkpoint's tensors in export order; a Linear is written by ``emit`` when
    ``quantized(module)`` says the exporter quantized it, else as a BF16 ``weight``."""

    def __init__(self, emit: Emit = bf16, quantized: Callable[[str], bool] = lambda m: False):
        self.emit = emit
        self.quantized = quantized
        self.tensors: list[Tensor] = []
        self.values: dict[str, np.ndarray] = {}  #: exact values of some tensors

    def add(self, name: str, dtype: str, *shape: int) -> None:
        self.tensors.append((name, dtype, tuple(shape)))

    def linear(self, module: str, out: int, inp: int, *, bias: bool = False) -> None:
        if self.quantized(module):
            ts = self.emit(module, out, inp)
            for name, _, _ in ts:
                if name.endswith(".weight_shape"):
                    self.values[name] = np.array([out, inp], dtype="<i8")
            self.tensors += ts
        else:
            self.add(f"{module}.weight", "BF16", out, inp)
        if bias:
            self.add(f"{module}.bias", "BF16", out)

    def norm(self, module: str, dim: int, *, bias: bool = False) -> None:
        self.add(f"{module}.weight", "BF16", dim)
        if bias:
            self.add(f"{module}.bias", "BF16", dim)


def excluded_by(patterns: Iterable[str]) -> Callable[[str], bool]:
    """ModelOpt's ``exclude_modules`` / ``ignore`` as its exporter writes them: exact names,
    dotted prefixes, or fnmatch wildcards for the modules it left unquantized."""
    exact, prefixes, globs = set(), [], []
    for p in patterns:
        if any(c in p for c in "*?["):
            globs.append(p)
        else:
            exact.add(p)
            prefixes.append(p + ".")
    pre = tuple(prefixes)
    return lambda m: m in exact or m.startswith(pre) or any(fnmatch.fnmatchcase(m, g)
                                                            for g in globs)


# --------------------------------------------------------------------------- architectures


def _attention(b: Builder, p: str, tc: JSON, *, qk_norm: bool, bias: bool = False) -> None:
    """Llama / Qwen3 / gpt-oss attention (``{q,k,v,o}_proj``; Qwen3's ``q_norm``/``k_norm``)."""
    h, nh, nkv = tc["hidden_size"], tc["num_attention_heads"], tc["num_key_value_heads"]
    hd = tc.get("head_dim") or h // nh
    b.linear(f"{p}.self_attn.q_proj", nh * hd, h, bias=bias)
    b.linear(f"{p}.self_attn.k_proj", nkv * hd, h, bias=bias)
    b.linear(f"{p}.self_attn.v_proj", nkv * hd, h, bias=bias)
    b.linear(f"{p}.self_attn.o_proj", h, nh * hd, bias=bias)
    if qk_norm:
        b.norm(f"{p}.self_attn.q_norm", hd)
        b.norm(f"{p}.self_attn.k_norm", hd)


def _mlp(b: Builder, p: str, h: int, inter: int) -> None:
    b.linear(f"{p}.gate_proj", inter, h)
    b.linear(f"{p}.up_proj", inter, h)
    b.linear(f"{p}.down_proj", h, inter)


def _kv_scales(b: Builder, p: str) -> None:
    """ModelOpt's FP8 KV-cache scales: 0-d F32 ``self_attn.k_proj.k_scale`` and
    ``v_proj.v_scale`` (the spelling vLLM's ``maybe_remap_kv_scale_name`` names ModelOpt's)."""
    b.add(f"{p}.self_attn.k_proj.k_scale", "F32")
    b.add(f"{p}.self_attn.v_proj.v_scale", "F32")


def llama_like(b: Builder, tc: JSON, *, qk_norm: bool, moe: bool = False,
               kv_scales: bool = False) -> None:
    """Llama / Qwen3 / Qwen3-MoE in transformers' module order (``LlamaDecoderLayer``,
    ``Qwen3DecoderLayer``, ``Qwen3MoeDecoderLayer``: attention, MLP, the two norms)."""
    h = tc["hidden_size"]
    b.add("model.embed_tokens.weight", "BF16", tc["vocab_size"], h)
    for i in range(tc["num_hidden_layers"]):
        p = f"model.layers.{i}"
        _attention(b, p, tc, qk_norm=qk_norm)
        if kv_scales:
            _kv_scales(b, p)
        if moe:
            b.linear(f"{p}.mlp.gate", tc["num_experts"], h)  # Qwen3MoeSparseMoeBlock: nn.Linear
            for e in range(tc["num_experts"]):
                _mlp(b, f"{p}.mlp.experts.{e}", h, tc["moe_intermediate_size"])
        else:
            _mlp(b, f"{p}.mlp", h, tc["intermediate_size"])
        b.norm(f"{p}.input_layernorm", h)
        b.norm(f"{p}.post_attention_layernorm", h)
    b.norm("model.norm", h)
    b.linear("lm_head", tc["vocab_size"], h)


def _mla(b: Builder, p: str, tc: JSON) -> None:
    """DeepSeek-V3 MLA attention (``DeepseekV3Attention``, q_lora_rank set)."""
    h, nh = tc["hidden_size"], tc["num_attention_heads"]
    qk = tc["qk_nope_head_dim"] + tc["qk_rope_head_dim"]
    a = f"{p}.self_attn"
    b.linear(f"{a}.q_a_proj", tc["q_lora_rank"], h)
    b.norm(f"{a}.q_a_layernorm", tc["q_lora_rank"])
    b.linear(f"{a}.q_b_proj", nh * qk, tc["q_lora_rank"])
    b.linear(f"{a}.kv_a_proj_with_mqa", tc["kv_lora_rank"] + tc["qk_rope_head_dim"], h)
    b.norm(f"{a}.kv_a_layernorm", tc["kv_lora_rank"])
    b.linear(f"{a}.kv_b_proj", nh * (tc["qk_nope_head_dim"] + tc["v_head_dim"]),
             tc["kv_lora_rank"])
    b.linear(f"{a}.o_proj", h, nh * tc["v_head_dim"])


def _deepseek_layer(b: Builder, p: str, i: int, tc: JSON) -> None:
    """One ``DeepseekV3DecoderLayer``: MLA, then a dense MLP (``i < first_k_dense_replace``)
    or the MoE (``experts``, the router ``gate`` with its F32 ``e_score_correction_bias``,
    ``shared_experts``), then the two norms."""
    h = tc["hidden_size"]
    _mla(b, p, tc)
    if i < tc["first_k_dense_replace"]:
        _mlp(b, f"{p}.mlp", h, tc["intermediate_size"])
    else:
        n = tc["n_routed_experts"]
        for e in range(n):
            _mlp(b, f"{p}.mlp.experts.{e}", h, tc["moe_intermediate_size"])
        b.linear(f"{p}.mlp.gate", n, h)
        b.add(f"{p}.mlp.gate.e_score_correction_bias", "F32", n)
        _mlp(b, f"{p}.mlp.shared_experts", h, tc["moe_intermediate_size"] * tc["n_shared_experts"])
    b.norm(f"{p}.input_layernorm", h)
    b.norm(f"{p}.post_attention_layernorm", h)


def deepseek_v3(b: Builder, tc: JSON, lm: str = "model", head: str = "lm_head") -> None:
    """DeepSeek-V3 text model, and its ``num_nextn_predict_layers`` MTP layers stored as
    ``model.layers.<num_hidden_layers + k>`` with ``embed_tokens``, ``enorm``, ``hnorm``,
    ``eh_proj`` (BF16 ``[hidden, 2*hidden]``), ``shared_head.norm`` and ``shared_head.head``
    (DeepSeek-V3 README_WEIGHTS.md; vLLM ``deepseek_mtp.py``, ``DeepSeekMultiTokenPredictorLayer``
    builds ``eh_proj`` as a torch ``nn.Linear``, ``SharedHead.head`` as a ``ParallelLMHead``)."""
    h, v = tc["hidden_size"], tc["vocab_size"]
    n = tc["num_hidden_layers"]
    b.add(f"{lm}.embed_tokens.weight", "BF16", v, h)
    for i in range(n):
        _deepseek_layer(b, f"{lm}.layers.{i}", i, tc)
    b.norm(f"{lm}.norm", h)
    b.linear(head, v, h)
    for k in range(tc.get("num_nextn_predict_layers") or 0):
        p = f"{lm}.layers.{n + k}"
        b.add(f"{p}.embed_tokens.weight", "BF16", v, h)
        b.norm(f"{p}.enorm", h)
        b.norm(f"{p}.hnorm", h)
        b.linear(f"{p}.eh_proj", h, 2 * h)
        _deepseek_layer(b, p, n + k, tc)
        b.norm(f"{p}.shared_head.norm", h)
        b.linear(f"{p}.shared_head.head", v, h)


def _dsv4_compressor(b: Builder, p: str, h: int, dim: int, ratio: int) -> None:
    """A KV compressor (vLLM ``DeepseekCompressor``: ``wkv``/``wgate`` fused, built with
    ``quant_config=None``; ``ape`` F32 ``[ratio, coff*dim]``, ``coff = 1 + (ratio == 4)``)."""
    coff = 1 + (ratio == 4)
    b.add(f"{p}.wkv.weight", "BF16", coff * dim, h)
    b.add(f"{p}.wgate.weight", "BF16", coff * dim, h)
    b.add(f"{p}.ape", "F32", ratio, coff * dim)
    b.norm(f"{p}.norm", dim)


def _dsv4_layer(b: Builder, p: str, i: int, tc: JSON) -> None:
    """One DeepSeek-V4 block in DeepSeek's own names (vLLM ``DeepseekV4DecoderLayer``,
    ``DeepseekV4Attention``, ``DeepseekV4MoE``; ``vllm/models/deepseek_v4/``): the attention
    ``attn.{wq_a, wkv, wq_b, wo_a, wo_b}`` (+ ``q_norm``, ``kv_norm``, F32 ``attn_sink``), a
    compressor where ``compress_ratios[i]`` is set and an indexer where it is 4, the MoE
    ``ffn.experts.<e>.w{1,2,3}``, ``ffn.shared_experts.w{1,2,3}`` and the router ``ffn.gate``
    (F32 ``bias`` on learned-routing layers, I32 ``tid2eid`` on the first
    ``num_hash_layers``), the norms and the hyper-connection parameters (F32)."""
    h, nh, hd = tc["hidden_size"], tc["num_attention_heads"], tc["head_dim"]
    q, ng, ol = tc["q_lora_rank"], tc["o_groups"], tc["o_lora_rank"]
    a = f"{p}.attn"
    b.linear(f"{a}.wq_a", q, h)
    b.linear(f"{a}.wkv", hd, h)
    b.norm(f"{a}.q_norm", q)
    b.norm(f"{a}.kv_norm", hd)
    b.linear(f"{a}.wq_b", nh * hd, q)
    b.linear(f"{a}.wo_a", ng * ol, nh * hd // ng)
    b.linear(f"{a}.wo_b", h, ng * ol)
    b.add(f"{a}.attn_sink", "F32", nh)
    ratio = tc["compress_ratios"][i]
    if ratio:
        _dsv4_compressor(b, f"{a}.compressor", h, hd, ratio)
    if ratio == 4:
        ih, inh = tc["index_head_dim"], tc["index_n_heads"]
        b.linear(f"{a}.indexer.wq_b", inh * ih, q)
        b.add(f"{a}.indexer.weights_proj.weight", "BF16", inh, h)
        _dsv4_compressor(b, f"{a}.indexer.compressor", h, ih, ratio)
    f, n, inter = f"{p}.ffn", tc["n_routed_experts"], tc["moe_intermediate_size"]
    for e in range(n):
        b.linear(f"{f}.experts.{e}.w1", inter, h)
        b.linear(f"{f}.experts.{e}.w2", h, inter)
        b.linear(f"{f}.experts.{e}.w3", inter, h)
    si = inter * tc["n_shared_experts"]
    b.linear(f"{f}.shared_experts.w1", si, h)
    b.linear(f"{f}.shared_experts.w2", h, si)
    b.linear(f"{f}.shared_experts.w3", si, h)
    b.add(f"{f}.gate.weight", "BF16", n, h)
    if i < tc["num_hash_layers"]:
        b.add(f"{f}.gate.tid2eid", "I32", tc["vocab_size"], tc["num_experts_per_tok"])
    else:
        b.add(f"{f}.gate.bias", "F32", n)
    b.norm(f"{p}.attn_norm", h)
    b.norm(f"{p}.ffn_norm", h)
    hc = tc["hc_mult"]
    for part in ("attn", "ffn"):
        b.add(f"{p}.hc_{part}_fn", "F32", (2 + hc) * hc, hc * h)
        b.add(f"{p}.hc_{part}_base", "F32", (2 + hc) * hc)
        b.add(f"{p}.hc_{part}_scale", "F32", 3)


def deepseek_v4(b: Builder, tc: JSON) -> None:
    """DeepSeek-V4 text model in its release naming: ``embed``, ``layers.<i>``, ``norm``,
    ``head`` and the ``hc_head_{fn,base,scale}`` parameters. No ``mtp.*``: the MTP layer is
    not written (see :func:`r_redhat_deepseek_v4`).

    Evidence for the names (no header of a DeepSeek-V4 release was read):

    * transformers 5.19.0 ``transformers/conversion_mapping.py``, entry ``deepseek_v4``: the
      checkpoint-side patterns it renames on load and writes back on save are exactly these
      (``^embed.weight``, ``^head.weight``, ``^hc_head_{fn,base,scale}``, ``.attn.``,
      ``.ffn.``, ``.attn_norm.``, ``.ffn_norm.``, ``.hc_{attn,ffn}_{fn,base,scale}``,
      ``.attn_sink``, ``.wq_a.``, ``.wq_b.``, ``.wkv.``, ``.wo_a.``, ``.wo_b.``, ``.wgate.``,
      ``.q_norm.``, ``.norm.``, ``.ape``, ``.indexer.compressor.``, ``.indexer.wq_b.``,
      ``.indexer.weights_proj.``, ``.gate.bias``, ``.shared_experts.w{1,2,3}.``,
      ``.experts.*.w{1,3,2}.weight``), no ``model.`` prefix;
    * vLLM 0.33.0 ``vllm/models/deepseek_v4/nvidia/model.py`` takes no other input names:
      ``_make_deepseek_v4_weights_mapper`` (prefixes ``layers.``/``embed.``/``norm.``/
      ``hc_head``/``mtp.``), ``DeepseekV4Model.load_weights``'s ``stacked_params_mapping``
      (``w1``/``w3``, ``attn.wq_a``/``attn.wkv``, ``compressor.wkv``/``compressor.wgate``)
      and expert mapping (``get_expert_mapping``: ``experts.<e>.w1``/``w2``/``w3``); a
      routed-expert tensor under another name matches no mapping entry and loads nowhere;
    * nvidia/DeepSeek-V4-Flash-NVFP4's ``hf_quant_config.json`` (not replicated; vendored by
      ai-dynamo/aiconfigurator @ ``1808d648``,
      ``model_configs/nvidia--DeepSeek-V4-Flash-NVFP4_hf_quant_config.json``) names its
      modules so: ``quantized_layers`` ``layers.<i>.ffn.experts``, ``exclude_modules``
      ``*.attn.*``, ``*.ffn.shared_experts.*``, ``head``, ``mtp.*``;
    * the official DeepSeek-V4.1-Flash index (not replicated: its class is not planned),
      read by a third party (github.com/EfficientMoE/MoE-Infinity/pull/210, comment of
      2026-09-12, revision ``dba1be0a40aa45a94ad051997016db3960a90277``, 96,085 keys):
      ``layers.<L>.ffn.experts.<E>.w{1,2,3}.{weight,scale}``,
      ``layers.<L>.ffn.shared_experts.w{1,2,3}.{weight,scale}``, ``mtp.<M>.ffn.experts…``."""
    h, v, hc = tc["hidden_size"], tc["vocab_size"], tc["hc_mult"]
    b.add("embed.weight", "BF16", v, h)
    for i in range(tc["num_hidden_layers"]):
        _dsv4_layer(b, f"layers.{i}", i, tc)
    b.norm("norm", h)
    b.add("head.weight", "BF16", v, h)
    b.add("hc_head_fn", "F32", hc, hc * h)
    b.add("hc_head_base", "F32", hc)
    b.add("hc_head_scale", "F32", 1)


def moonvit(b: Builder, vc: JSON) -> None:
    """Kimi-K2.5's MoonViT3d tower and patch-merger projector (HF ``modeling_kimi_k25.py`` as
    remembered; vLLM ``kimi_k25.py`` maps ``mm_projector.proj.0/2`` to ``linear_1/2``):
    ``vision_tower.patch_embed.{proj (Conv2d 3->vt_hidden, patch x patch), pos_emb [H, W, d]}``,
    ``vision_tower.encoder.blocks.<i>.{norm0, norm1, wqkv, wo, mlp.fc0, mlp.fc1}`` (LayerNorms
    and Linears with biases), ``vision_tower.encoder.final_layernorm``, and
    ``mm_projector.{pre_norm, proj.0, proj.2}`` over ``mm_hidden * merge_h * merge_w`` inputs.
    The divided-fixed time embedding is a buffer, not stored. UNVERIFIED against the real
    index (not available here): names, biases and the pos_emb layout are from memory."""
    d, inter = vc["vt_hidden_size"], vc["vt_intermediate_size"]
    ps = vc["patch_size"]
    t = "vision_tower"
    b.add(f"{t}.patch_embed.proj.weight", "BF16", d, 3, ps, ps)
    b.add(f"{t}.patch_embed.proj.bias", "BF16", d)
    b.add(f"{t}.patch_embed.pos_emb.weight", "BF16", vc["init_pos_emb_height"],
          vc["init_pos_emb_width"], d)
    for i in range(vc["vt_num_hidden_layers"]):
        p = f"{t}.encoder.blocks.{i}"
        b.norm(f"{p}.norm0", d, bias=True)
        b.norm(f"{p}.norm1", d, bias=True)
        b.linear(f"{p}.wqkv", 3 * d, d, bias=True)
        b.linear(f"{p}.wo", d, d, bias=True)
        b.linear(f"{p}.mlp.fc0", inter, d, bias=True)
        b.linear(f"{p}.mlp.fc1", d, inter, bias=True)
    b.norm(f"{t}.encoder.final_layernorm", d, bias=True)
    mh, mw = vc["merge_kernel_size"]
    merged = vc["mm_hidden_size"] * mh * mw
    b.norm("mm_projector.pre_norm", vc["mm_hidden_size"], bias=True)
    b.linear("mm_projector.proj.0", merged, merged, bias=True)
    b.linear("mm_projector.proj.2", vc["text_hidden_size"], merged, bias=True)


# Qwen3.5 (from bench/bench_read.py, where it was written first) ----------------------------


def _qwen3_5_full_attention(b: Builder, p: str, tc: JSON) -> None:
    h, nh, nkv, hd = (tc["hidden_size"], tc["num_attention_heads"], tc["num_key_value_heads"],
                      tc["head_dim"])
    gate = 2 if tc.get("attn_output_gate") else 1  # q_proj also yields the output gate
    b.linear(f"{p}.self_attn.q_proj", gate * nh * hd, h)
    b.linear(f"{p}.self_attn.k_proj", nkv * hd, h)
    b.linear(f"{p}.self_attn.v_proj", nkv * hd, h)
    b.linear(f"{p}.self_attn.o_proj", h, nh * hd)
    b.norm(f"{p}.self_attn.q_norm", hd)
    b.norm(f"{p}.self_attn.k_norm", hd)


def _qwen3_5_linear_attention(b: Builder, p: str, tc: JSON) -> None:
    h = tc["hidden_size"]
    nk, dk = tc["linear_num_key_heads"], tc["linear_key_head_dim"]
    nv, dv = tc["linear_num_value_heads"], tc["linear_value_head_dim"]
    key_dim, value_dim = nk * dk, nv * dv
    conv_dim = 2 * key_dim + value_dim
    a = f"{p}.linear_attn"
    b.linear(f"{a}.in_proj_qkv", conv_dim, h)
    b.linear(f"{a}.in_proj_z", value_dim, h)
    b.linear(f"{a}.in_proj_b", nv, h)
    b.linear(f"{a}.in_proj_a", nv, h)
    b.linear(f"{a}.out_proj", h, value_dim)
    b.add(f"{a}.conv1d.weight", "BF16", conv_dim, 1, tc["linear_conv_kernel_dim"])
    b.add(f"{a}.A_log", "F32", nv)
    b.add(f"{a}.dt_bias", "BF16", nv)
    b.norm(f"{a}.norm", dv)


def _qwen3_5_moe(b: Builder, p: str, tc: JSON) -> None:
    h, inter, shared = (tc["hidden_size"], tc["moe_intermediate_size"],
                        tc["shared_expert_intermediate_size"])
    m = f"{p}.mlp"
    for e in range(tc["num_experts"]):
        _mlp(b, f"{m}.experts.{e}", h, inter)
    _mlp(b, f"{m}.shared_expert", h, shared)
    b.linear(f"{m}.shared_expert_gate", 1, h)
    b.linear(f"{m}.gate", tc["num_experts"], h)


def _qwen3_5_layer(b: Builder, p: str, kind: str, tc: JSON, kv_scales: bool) -> None:
    """One decoder layer; the dense Qwen3.5 (no ``num_experts``) has a plain
    ``mlp.{gate,up,down}_proj`` of ``intermediate_size`` (vLLM 0.33.0 ``qwen3_5.py``,
    ``Qwen3_5DecoderLayer``: ``Qwen3NextMLP`` unless the model type is MoE)."""
    h = tc["hidden_size"]
    b.norm(f"{p}.input_layernorm", h)
    b.norm(f"{p}.post_attention_layernorm", h)
    if kind == "linear_attention":
        _qwen3_5_linear_attention(b, p, tc)
    else:
        _qwen3_5_full_attention(b, p, tc)
        if kv_scales:
            _kv_scales(b, p)
    if "num_experts" in tc:
        _qwen3_5_moe(b, p, tc)
    else:
        _mlp(b, f"{p}.mlp", h, tc["intermediate_size"])


def _qwen3_5_visual(b: Builder, vc: JSON) -> None:
    v, inter, out = vc["hidden_size"], vc["intermediate_size"], vc["out_hidden_size"]
    merged = v * vc["spatial_merge_size"] ** 2
    ps, tps = vc["patch_size"], vc["temporal_patch_size"]
    b.add("model.visual.patch_embed.proj.weight", "BF16", v, vc["in_channels"], tps, ps, ps)
    b.add("model.visual.patch_embed.proj.bias", "BF16", v)
    b.add("model.visual.pos_embed.weight", "BF16", vc["num_position_embeddings"], v)
    for i in range(vc["depth"]):
        p = f"model.visual.blocks.{i}"
        b.norm(f"{p}.norm1", v, bias=True)
        b.norm(f"{p}.norm2", v, bias=True)
        b.linear(f"{p}.attn.qkv", 3 * v, v, bias=True)
        b.linear(f"{p}.attn.proj", v, v, bias=True)
        b.linear(f"{p}.mlp.linear_fc1", inter, v, bias=True)
        b.linear(f"{p}.mlp.linear_fc2", v, inter, bias=True)
    b.norm("model.visual.merger.norm", v, bias=True)
    b.linear("model.visual.merger.linear_fc1", merged, merged, bias=True)
    b.linear("model.visual.merger.linear_fc2", out, merged, bias=True)


def qwen3_5(b: Builder, config: JSON, *, kv_scales: bool = False,
            mtp_kv_scales: bool = True) -> None:
    """Qwen3.5-MoE (``Qwen3_5MoeForConditionalGeneration``), names as in the official release:
    ``model.language_model.layers.<i>`` following ``layer_types`` (``linear_attn.{in_proj_qkv,
    in_proj_z, in_proj_b, in_proj_a, out_proj, conv1d, A_log, dt_bias, norm}`` or
    ``self_attn.{q,k,v,o}_proj, q_norm, k_norm``; ``q_proj`` doubled by ``attn_output_gate``),
    per-expert ``mlp.experts.<e>.{gate,up,down}_proj``, ``mlp.shared_expert.*``,
    ``mlp.shared_expert_gate``, ``mlp.gate``; ``lm_head``; the MTP block ``mtp.{fc,
    pre_fc_norm_embedding, pre_fc_norm_hidden, norm, layers.0}``; ``model.visual.*``.
    The dense Qwen3.5 (``Qwen3_5ForConditionalGeneration``) has ``mlp.{gate,up,down}_proj``
    in place of the MoE block. ``mtp_kv_scales``: the MTP layer carries KV-cache scales too.
    Sources: the names Qwen's ``modules_to_not_convert`` lists (397B/122B FP8 configs), the
    scale names in SOURCES.md's issue quotes (``…mlp.gate_proj.weight_scale_inv``), the ModelOpt
    fixtures under tests/fixtures/real/ (per-expert names), transformers' ``Qwen3VL`` vision
    module names for ``model.visual``."""
    tc = config["text_config"]
    lm = "model.language_model"
    h = tc["hidden_size"]
    b.add(f"{lm}.embed_tokens.weight", "BF16", tc["vocab_size"], h)
    for i, kind in enumerate(tc["layer_types"]):
        _qwen3_5_layer(b, f"{lm}.layers.{i}", kind, tc, kv_scales)
    b.norm(f"{lm}.norm", h)
    b.linear("lm_head", tc["vocab_size"], h)
    b.linear("mtp.fc", h, 2 * h)
    b.norm("mtp.pre_fc_norm_embedding", h)
    b.norm("mtp.pre_fc_norm_hidden", h)
    b.norm("mtp.norm", h)
    for i in range(tc.get("mtp_num_hidden_layers", 0)):
        _qwen3_5_layer(b, f"mtp.layers.{i}", "full_attention", tc, kv_scales and mtp_kv_scales)
    if "vision_config" in config:
        _qwen3_5_visual(b, config["vision_config"])


def gpt_oss(b: Builder, config: JSON) -> None:
    """gpt-oss in the order and spelling of the real gpt-oss-20b weight map (saved in
    /work/shared/realworld/gpt-oss-20b): per layer ``input_layernorm``, ``self_attn.{o,q,k,v}_proj``
    with biases, ``self_attn.sinks``, ``mlp.router`` (weight and bias), fused experts
    ``mlp.experts.{gate_up,down}_proj_{bias,blocks,scales}``, ``post_attention_layernorm``;
    layers in string order (0, 1, 10, …), then ``embed_tokens``, ``norm``, ``lm_head``. dtypes
    from original/dtypes.json: FP4 blocks and UE8 scales are U8 in the HF files, everything else
    BF16; blocks ``[E, out, in/32, 16]``, scales ``[E, out, in/32]`` (vLLM ``Mxfp4MoEMethod``)."""
    h, inter = config["hidden_size"], config["intermediate_size"]
    n_exp = config["num_local_experts"]
    nh, nkv, hd = config["num_attention_heads"], config["num_key_value_heads"], config["head_dim"]
    for i in sorted(range(config["num_hidden_layers"]), key=str):
        p = f"model.layers.{i}"
        b.norm(f"{p}.input_layernorm", h)
        a = f"{p}.self_attn"
        b.add(f"{a}.o_proj.bias", "BF16", h)
        b.add(f"{a}.o_proj.weight", "BF16", h, nh * hd)
        b.add(f"{a}.q_proj.bias", "BF16", nh * hd)
        b.add(f"{a}.k_proj.bias", "BF16", nkv * hd)
        b.add(f"{a}.v_proj.bias", "BF16", nkv * hd)
        b.add(f"{a}.q_proj.weight", "BF16", nh * hd, h)
        b.add(f"{a}.k_proj.weight", "BF16", nkv * hd, h)
        b.add(f"{a}.v_proj.weight", "BF16", nkv * hd, h)
        b.add(f"{a}.sinks", "BF16", nh)
        b.add(f"{p}.mlp.router.bias", "BF16", n_exp)
        b.add(f"{p}.mlp.router.weight", "BF16", n_exp, h)
        x = f"{p}.mlp.experts"
        b.add(f"{x}.gate_up_proj_bias", "BF16", n_exp, 2 * inter)
        b.add(f"{x}.gate_up_proj_blocks", "U8", n_exp, 2 * inter, h // 32, 16)
        b.add(f"{x}.gate_up_proj_scales", "U8", n_exp, 2 * inter, h // 32)
        b.add(f"{x}.down_proj_bias", "BF16", n_exp, h)
        b.add(f"{x}.down_proj_blocks", "U8", n_exp, h, inter // 32, 16)
        b.add(f"{x}.down_proj_scales", "U8", n_exp, h, inter // 32)
        b.norm(f"{p}.post_attention_layernorm", h)
    b.add("model.embed_tokens.weight", "BF16", config["vocab_size"], h)
    b.norm("model.norm", h)
    b.add("lm_head.weight", "BF16", config["vocab_size"], h)


# --------------------------------------------------------------------------- values

#: per-tensor scale ranges by parameter (multipliers, except compressed-tensors' divisors)
_PER_TENSOR = {
    "weight_scale": (2e-4, 2e-3),
    "weight_scale_2": (1e-5, 1e-4),
    "input_scale": (2e-3, 2e-2),
    "k_scale": (0.02, 0.1),
    "v_scale": (0.02, 0.1),
    # NVFP4 global scales (448 * 6 / amax): of weights ~1e3..3e4, of activations ~1e2..1e3
    "weight_global_scale": (1e3, 3e4),
    "input_global_scale": (1e2, 1e3),
}
#: names an engine fuses into one parameter: their per-tensor scales share a value
_FUSED = (
    (re.compile(r"\.(?:q|k|v)_proj\."), ".qkv_proj."),
    (re.compile(r"\.(?:gate|up)_proj\."), ".gate_up_proj."),
    (re.compile(r"\.in_proj_(?:qkv|z)\."), ".in_proj_qkvz."),
    (re.compile(r"\.in_proj_(?:a|b)\."), ".in_proj_ba."),
    (re.compile(r"\.(?:q_a_proj|kv_a_proj_with_mqa)\."), ".fused_qkv_a_proj."),
    (re.compile(r"\.w[13]\."), ".w13."),  # DeepSeek-V4's gate/up (experts, shared experts)
)
SCALE_LEAVES = frozenset({"weight_scale", "weight_scale_inv", "weight_scale_2", "input_scale",
                          "k_scale", "v_scale", "gate_up_proj_scales", "down_proj_scales",
                          "weight_global_scale", "input_global_scale"})


def _unit(seed: int, key: str) -> float:
    return zlib.crc32(f"{seed}:{key}".encode()) / 2**32


def _bf16(x: np.ndarray) -> bytes:
    return (x.astype("<f4").view("<u4") >> 16).astype("<u2").tobytes()


def scale_bytes(name: str, dtype: str, shape: tuple[int, ...], seed: int,
                rng: np.random.Generator) -> bytes | None:
    """Plausible bytes for a scale tensor, or None (not a scale, or larger than VALUE_CAP)."""
    leaf = name.rsplit(".", 1)[-1]
    if leaf not in SCALE_LEAVES or nbytes(dtype, shape) > VALUE_CAP:
        return None
    n = math.prod(shape)
    if dtype == "U8":  # E8M0 exponents: 2^-9 .. 2^-3
        return rng.integers(118, 125, n, dtype=np.uint8).tobytes()
    if dtype == "F8_E4M3":  # codes of 0.25 .. 2.0
        return rng.integers(0x28, 0x41, n, dtype=np.uint8).tobytes()
    if n == 1 and leaf in _PER_TENSOR:
        key = name
        for pattern, fused in _FUSED:
            key = pattern.sub(fused, key)
        lo, hi = _PER_TENSOR[leaf]
        vals = np.full(1, lo + (hi - lo) * _unit(seed, key), dtype="<f4")
    else:
        vals = rng.uniform(1e-4, 2e-3, n).astype("<f4")
    return vals.tobytes() if dtype == "F32" else _bf16(vals)


# --------------------------------------------------------------------------- layout & files


@dataclass
class Layout:
    """A replica's tensors and how they are split into files."""

    tensors: list[Tensor]  #: in export order
    #: the files, in order: (file name, the names of its tensors)
    files: list[tuple[str, list[str]]]
    values: dict[str, np.ndarray] = field(default_factory=dict)
    #: "transformers": ``json.dumps(index, indent=2, sort_keys=True)`` (save_pretrained);
    #: "ordered": one line, the weight map in export order (gpt-oss's own writer);
    #: "file-order": indented, the weight map in the files' order (bench/bench_read.py)
    index_style: str = "transformers"
    #: the header's ``__metadata__`` (None: the writer stored none)
    metadata: dict[str, str] | None = field(default_factory=lambda: {"format": "pt"})


def replace_module(layout: Layout, module: str, tensors: list[Tensor]) -> None:
    """Store ``module`` as ``tensors`` instead (in the file that held its first tensor): for
    tests that break one thing in a replica."""
    mine = {t[0] for t in layout.tensors if t[0].startswith(module + ".")}
    assert mine, f"no tensor of {module}"
    layout.tensors = [t for t in layout.tensors if t[0] not in mine] + tensors
    for k, (fname, names) in enumerate(layout.files):
        if mine & set(names):
            layout.files[k] = (fname, [n for n in names if n not in mine] + [t[0] for t in tensors])
            break
    for name, _, _ in tensors:
        if name.endswith(".weight_shape"):
            layout.values[name] = np.array([0, 0], dtype="<i8")


def hf_shards(tensors: list[Tensor], max_bytes: int = HF_SHARD) -> list[list[Tensor]]:
    """huggingface_hub ``split_state_dict_into_shards_factory``: in state-dict order, a new
    shard when the next tensor would tip the current one over ``max_bytes``; a tensor larger
    than that gets a shard of its own."""
    shards: list[list[Tensor]] = []
    cur: list[Tensor] = []
    size = 0
    for t in tensors:
        n = nbytes(t[1], t[2])
        if n > max_bytes:
            shards.append([t])
            continue
        if cur and size + n > max_bytes:
            shards.append(cur)
            cur, size = [], 0
        cur.append(t)
        size += n
    if cur:
        shards.append(cur)
    return shards


def even_shards(tensors: list[Tensor], n_files: int) -> list[list[Tensor]]:
    """Split in export order into ``n_files`` files of about equal logical size."""
    total = sum(nbytes(d, s) for _, d, s in tensors)
    shards: list[list[Tensor]] = [[] for _ in range(n_files)]
    pos = 0
    for t in tensors:
        shards[min(n_files - 1, pos * n_files // total)].append(t)
        pos += nbytes(t[1], t[2])
    return [s for s in shards if s]


def named(shards: list[list[Tensor]], pattern: str = "model-{i:05d}-of-{n:05d}.safetensors",
          first: int = 1) -> list[tuple[str, list[str]]]:
    """File names for shards (``{i}``: 1-based unless ``first``; ``{n}``: the last number)."""
    n = len(shards) - 1 + first
    return [(pattern.format(i=k + first, n=n), [t[0] for t in s]) for k, s in enumerate(shards)]


def header(
    tensors: list[Tensor], metadata: Mapping[str, str] | None = None
) -> tuple[bytes, list[tuple[str, str, tuple[int, ...], int]]]:
    """The file's 8-byte length and JSON header as the ``safetensors`` writer emits it, and
    (name, dtype, shape, begin) of each tensor in data order."""
    ordered = sorted(tensors, key=lambda t: (-_RANK[t[1]], t[0]))
    parts = [] if metadata is None else [
        '"__metadata__":' + json.dumps(dict(metadata), separators=(",", ":"))]
    spans = []
    pos = 0
    for name, dtype, shape in ordered:
        n = nbytes(dtype, shape)
        parts.append(f"{json.dumps(name)}:{{\"dtype\":\"{dtype}\",\"shape\":"
                     f"[{','.join(map(str, shape))}],\"data_offsets\":[{pos},{pos + n}]}}")
        spans.append((name, dtype, shape, pos))
        pos += n
    raw = ("{" + ",".join(parts) + "}").encode()
    raw += b" " * (-len(raw) % 8)
    return len(raw).to_bytes(8, "little") + raw, spans


def write_layout(layout: Layout, out: Path, configs: Mapping[str, JSON | bytes],
                 seed: int = 0) -> dict[str, Any]:
    """Write the replica into ``out`` (replaced): configs, sparse files, index."""
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    for fname, doc in configs.items():
        data = doc if isinstance(doc, bytes) else (json.dumps(doc, indent=2) + "\n").encode()
        (out / fname).write_bytes(data)
    by_name = {t[0]: t for t in layout.tensors}
    assert len(by_name) == len(layout.tensors), "duplicate tensor names"
    placed = [n for _, names in layout.files for n in names]
    assert sorted(placed) == sorted(by_name), "every tensor in exactly one file"
    rng = np.random.default_rng(seed)
    weight_map: dict[str, str] = {}
    total = 0
    for fname, names in layout.files:
        head, spans = header([by_name[n] for n in names], layout.metadata)
        end = spans[-1][3] + nbytes(spans[-1][1], spans[-1][2])
        fd = os.open(out / fname, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        try:
            os.write(fd, head)
            os.ftruncate(fd, len(head) + end)  # full logical size, all holes
            for name, dtype, shape, begin in spans:
                if name in layout.values:
                    data = layout.values[name].tobytes()
                else:
                    data = scale_bytes(name, dtype, shape, seed, rng) or b""
                if data:
                    assert len(data) == nbytes(dtype, shape), name
                    os.pwrite(fd, data, len(head) + begin)
        finally:
            os.close(fd)
        for n in names:
            weight_map[n] = fname
        total += end
    index = {"metadata": {"total_size": total}, "weight_map": weight_map}
    if layout.index_style == "transformers":
        text = json.dumps(index, indent=2, sort_keys=True) + "\n"
    elif layout.index_style == "file-order":
        text = json.dumps(index, indent=2)
    else:
        text = json.dumps(index)
    (out / INDEX).write_text(text)
    return {"files": len(layout.files), "tensors": len(by_name), "total_size": total}


# --------------------------------------------------------------------------- truncation

_LAYER_REF = re.compile(r"layers\.(\d+)(?:\.|\*|$)")


def _keeps(entry: str, n: int) -> bool:
    m = _LAYER_REF.search(entry)
    return m is None or entry.startswith("mtp") or int(m.group(1)) < n


def truncate(config: JSON, extra: dict[str, JSON], n: int) -> tuple[JSON, dict[str, JSON]]:
    """The configs of the model cut to its first ``n`` decoder layers (see the module doc)."""
    config, extra = copy.deepcopy(config), copy.deepcopy(extra)
    tc = config.get("text_config", config)
    if n > tc["num_hidden_layers"]:
        raise ValueError(f"the model has {tc['num_hidden_layers']} layers, not {n}")
    tc["num_hidden_layers"] = n
    for c in (config, tc):
        if isinstance(c.get("layer_types"), list):
            c["layer_types"] = c["layer_types"][:n]
    for qc in (config.get("quantization_config"), tc.get("quantization_config"),
               *(e.get("quantization", e) for e in extra.values())):
        if not isinstance(qc, dict):
            continue
        for key in ("modules_to_not_convert", "ignore", "exclude_modules", "ignored_layers"):
            if isinstance(qc.get(key), list):
                qc[key] = [e for e in qc[key] if _keeps(e, n)]
        if isinstance(qc.get("quantized_layers"), dict):  # ModelOpt MIXED_PRECISION
            qc["quantized_layers"] = {k: v for k, v in qc["quantized_layers"].items()
                                      if _keeps(k, n)}
        for group in (qc.get("config_groups") or {}).values():
            if isinstance(group, dict) and isinstance(group.get("targets"), list):
                group["targets"] = [t for t in group["targets"] if _keeps(t, n)]
    return config, extra


# --------------------------------------------------------------------------- the replicas


def qwen_fp8_builder(config: JSON, scale_dtype: str = "BF16") -> Builder:
    """Qwen's official FP8 export: every Linear block-FP8 with a ``weight_scale_inv`` (BF16)
    unless ``modules_to_not_convert`` names it; ``lm_head`` stays BF16 even where no list
    exists (Qwen3-32B-FP8)."""
    qc = config.get("quantization_config") or config["text_config"]["quantization_config"]
    keep = set(qc.get("modules_to_not_convert") or ()) | {"lm_head"}
    bn, bk = qc["weight_block_size"]
    return Builder(fp8_block(scale_dtype, bn, bk), lambda m: m not in keep)


def r_deepseek_r1(config: JSON, extra: dict[str, JSON]) -> Layout:
    """deepseek-ai/DeepSeek-R1: native block FP8 (``quant_method: fp8``, 128x128).

    Every Linear of the 61 main layers and of the MTP layer ``model.layers.61`` is F8_E4M3 with
    an F32 ``weight_scale_inv`` ``[ceil(out/128), ceil(in/128)]``, except the router
    ``mlp.gate`` (BF16, with an F32 ``e_score_correction_bias``), ``eh_proj``,
    ``shared_head.head`` and ``lm_head`` (BF16). DeepSeek-V3 ``inference/fp8_cast_bf16.py``
    pairs each ``weight`` with its ``weight_scale_inv``; the dtype list BF16/F8_E4M3/F32 and
    the MTP names are DeepSeek-V3's README_WEIGHTS.md; MLA shapes follow the config
    (``q_b_proj [heads*(nope+rope), q_lora_rank]``, ``kv_a_proj_with_mqa
    [kv_lora_rank+rope, hidden]``, ``kv_b_proj [heads*(nope+v), kv_lora_rank]``). 163 files
    named ``model-00001-of-000163.safetensors`` (the release's own 6-digit total, as
    remembered); the split between them is an even one by size (the real one is not known).
    Full scale: 91,991 tensors."""
    tc = config
    plain = (".mlp.gate", ".eh_proj", ".shared_head.head", "lm_head")
    b = Builder(fp8_block("F32"), lambda m: not m.endswith(plain))
    deepseek_v3(b, tc)
    n = 163 if tc["num_hidden_layers"] == 61 else max(2, tc["num_hidden_layers"])
    return Layout(b.tensors, named(even_shards(b.tensors, n),
                                   "model-{i:05d}-of-{n:06d}.safetensors"), b.values)


def r_kimi_k2_5(config: JSON, extra: dict[str, JSON]) -> Layout:
    """moonshotai/Kimi-K2.5 (``KimiK25ForConditionalGeneration``): a DeepSeek-V3 text model
    under ``language_model.`` (``language_model.model.layers.<i>``,
    ``language_model.lm_head``), the MoonViT tower ``vision_tower.*`` and ``mm_projector.*``.

    Quantization (``text_config.quantization_config``, compressed-tensors ``pack-quantized``
    INT4, symmetric, group 32, ``targets: ["Linear"]``): only the routed experts
    ``mlp.experts.<e>.{gate,up,down}_proj`` of the MoE layers are INT4 (``weight_packed`` I32
    ``[out, in/8]``, ``weight_scale`` BF16 ``[out, in/32]``, ``weight_shape`` I64 ``[2]``), as
    the model card's "native INT4 for the MoE components" says and the ignore list confirms
    (``self_attn``, ``shared_experts``, the dense layer's ``mlp.{gate,up,down}_proj`` and
    ``lm_head`` are listed). Everything else — attention, shared experts, the dense layer 0,
    routers ``mlp.gate`` (+ F32 ``e_score_correction_bias``), embeddings, ``lm_head``, the
    whole vision tower and projector — is BF16. The ignore list names only text modules; that
    the vision tower is BF16 all the same is the model card's "INT4 for the MoE components"
    (and 595 GB logical here, about the release's size) — not seen in a header. The router
    ``mlp.gate`` and the ``e_score_correction_bias`` dtype are DeepSeek-V3's. File names and
    split: transformers' default (5 GB), not known. Full scale: 208,550 tensors."""
    tc = config["text_config"]
    b = Builder(ct_pack_quantized(4, 32), lambda m: ".mlp.experts." in m)
    moonvit(b, config["vision_config"])
    deepseek_v3(b, tc, lm="language_model.model", head="language_model.lm_head")
    return Layout(b.tensors, named(hf_shards(b.tensors)), b.values)


def r_qwen3_dense_fp8(config: JSON, extra: dict[str, JSON]) -> Layout:
    """Qwen/Qwen3-32B-FP8 (``Qwen3ForCausalLM``): Qwen's block FP8, no
    ``modules_to_not_convert`` at all; every Linear of the 64 layers is F8_E4M3 with a BF16
    ``weight_scale_inv`` (BF16, F8_E4M3 are the dtypes the Qwen3 FP8 model pages list);
    embeddings, norms (incl. ``q_norm``/``k_norm``) and ``lm_head`` BF16. Module order:
    transformers ``Qwen3DecoderLayer``. Files: save_pretrained's 5 GB split (the real count is
    not known). Full scale: 1,155 tensors (tests run it whole)."""
    b = qwen_fp8_builder(config)
    llama_like(b, config, qk_norm=True)
    return Layout(b.tensors, named(hf_shards(b.tensors)), b.values)


def r_qwen3_moe_fp8(config: JSON, extra: dict[str, JSON]) -> Layout:
    """Qwen/Qwen3-30B-A3B-FP8 and Qwen3-235B-A22B-FP8 (``Qwen3MoeForCausalLM``): as the dense
    FP8 release, per-expert ``mlp.experts.<e>.{gate,up,down}_proj`` and a BF16 router
    ``mlp.gate`` (``modules_to_not_convert`` lists ``lm_head``, each ``mlp.gate`` and the
    layernorms). Full scale: 37,491 (30B) / 73,417 (235B) tensors."""
    b = qwen_fp8_builder(config)
    llama_like(b, config, qk_norm=True, moe=True)
    return Layout(b.tensors, named(hf_shards(b.tensors)), b.values)


def r_qwen3_5_fp8(config: JSON, extra: dict[str, JSON]) -> Layout:
    """Qwen/Qwen3.5-122B-A10B-FP8 and -397B-A17B-FP8: :func:`qwen3_5` under Qwen's block FP8,
    every Linear F8_E4M3 + BF16 ``weight_scale_inv`` unless ``modules_to_not_convert`` (321 /
    372 entries: routers, shared-expert gates, ``linear_attn.{conv1d,in_proj_a,in_proj_b}``,
    the vision tower, ``mtp.fc``) names it. BF16 scales: a third-party model page (SOURCES.md)
    and the Qwen3 FP8 releases; not verified against a header dump. Full scale: 76,656
    (122B) / 189,042 (397B) tensors."""
    b = qwen_fp8_builder(config)
    qwen3_5(b, config)
    return Layout(b.tensors, named(hf_shards(b.tensors)), b.values)


def _modelopt(extra: dict[str, JSON], config: JSON) -> tuple[str, Callable[[str], bool], bool]:
    q = extra["hf_quant_config.json"]["quantization"]
    inline = config.get("quantization_config") or {}
    excluded = excluded_by(inline.get("ignore") or q.get("exclude_modules") or ())
    return q["quant_algo"], excluded, bool(q.get("kv_cache_quant_algo"))


def r_modelopt_llama_like(config: JSON, extra: dict[str, JSON]) -> Layout:
    """NVIDIA ModelOpt exports of Llama-3.1-70B-Instruct (FP8) and Qwen3-32B / Qwen3-30B-A3B /
    Qwen3-235B-A22B (NVFP4), from ``hf_quant_config.json``: every Linear not in
    ``exclude_modules`` is quantized (FP8: F8_E4M3 weight, 0-d F32 ``weight_scale`` and
    ``input_scale``; NVFP4: U8 weight ``[out, in/2]``, F8_E4M3 ``weight_scale [out, in/16]``,
    0-d F32 ``weight_scale_2``, ``input_scale``), names as in the ModelOpt fixtures under
    tests/fixtures/real/; ``kv_cache_quant_algo: FP8`` adds 0-d ``self_attn.k_proj.k_scale``
    and ``v_proj.v_scale``. ``lm_head`` and the routers (``mlp.gate``) are excluded in the real
    lists. config.json of the Qwen3-32B and 30B-A3B NVFP4 releases was not saved: the Qwen
    FP8 release's architecture config (same model) stands in, without its
    ``quantization_config``. Files: save_pretrained's 5 GB split. Full scale: 2,003 (Llama
    70B), 2,179 (Qwen3-32B), 74,835 (30B-A3B), 146,549 (235B) tensors."""
    algo, excluded, kv = _modelopt(extra, config)
    emit = {"FP8": modelopt_fp8, "NVFP4": modelopt_nvfp4}[algo]
    b = Builder(emit, lambda m: not excluded(m))
    is_qwen = config["model_type"].startswith("qwen3")
    llama_like(b, config, qk_norm=is_qwen, moe="num_experts" in config, kv_scales=kv)
    return Layout(b.tensors, named(hf_shards(b.tensors)), b.values)


def r_modelopt_qwen3_5(config: JSON, extra: dict[str, JSON]) -> Layout:
    """nvidia/Qwen3.5-397B-A17B-NVFP4 and -122B-A10B-NVFP4: :func:`qwen3_5` under ModelOpt
    NVFP4 (inline ``quant_method: modelopt`` whose ``ignore`` equals ``hf_quant_config.json``'s
    ``exclude_modules``). The lists exclude every ``linear_attn*``, every full-attention
    ``self_attn*``, the shared experts and their gates, ``model.visual*``, ``mtp.layers.0*``
    (and ``mtp*`` for 122B), ``lm_head``: only the routed experts are NVFP4. The routers
    ``mlp.gate`` are not listed but stay BF16 (transformers' Qwen3.5 router is not an
    ``nn.Linear``, which is all ModelOpt quantizes). ``mtp.fc``, not excluded by the 397B
    list, is stored BF16 too: the MTP weights are carried over from the BF16 release
    (transformers builds no MTP module to quantize) — inferred, not seen. FP8 KV cache:
    0-d ``k_proj.k_scale``/``v_proj.v_scale`` on the full-attention layers. Full scale:
    371,476 (397B) / 149,335 (122B) tensors."""
    _, excluded, kv = _modelopt(extra, config)
    b = Builder(modelopt_nvfp4,
                lambda m: not (excluded(m) or m.endswith(".mlp.gate") or m.startswith("mtp.")))
    qwen3_5(b, config, kv_scales=kv)
    return Layout(b.tensors, named(hf_shards(b.tensors)), b.values)


def _mixed_algo(layers: Mapping[str, JSON], module: str) -> str | None:
    """The ``quant_algo`` ModelOpt's MIXED_PRECISION export recorded for ``module``: its own
    ``quantized_layers`` entry, or that of the fused-experts module it was split from
    (``mlp.experts`` stands for every ``mlp.experts.<e>.<proj>``)."""
    for key in (module, module.rsplit(".", 2)[0]):
        if key in layers:
            return str(layers[key]["quant_algo"]).upper()
    return None


def r_modelopt_qwen3_6_mixed(config: JSON, extra: dict[str, JSON]) -> Layout:
    """nvidia/Qwen3.6-27B-NVFP4 (dense) and -35B-A3B-NVFP4 (MoE): :func:`qwen3_5` under ModelOpt
    ``quant_algo: MIXED_PRECISION``. Each module's format is its ``quantized_layers`` entry
    (the inline one, which vLLM prefers; it equals ``hf_quant_config.json``'s): ``FP8`` for
    every ``self_attn.{q,k,v,o}_proj`` and ``linear_attn.{in_proj_qkv,in_proj_z,out_proj}``
    (F8_E4M3 weight, 0-d F32 ``weight_scale`` and ``input_scale``), ``W4A16_NVFP4`` for the
    MLP (27B: ``mlp.{gate,up,down}_proj``; 35B: ``mlp.experts``, i.e. every routed expert,
    and ``mlp.shared_expert.*``) and for ``lm_head`` (NVFP4 weight, ``weight_scale``,
    ``weight_scale_2``, no ``input_scale``). A module the map does not name is BF16:
    ``linear_attn.{in_proj_a,in_proj_b}``, the routers ``mlp.gate`` and
    ``shared_expert_gate``, the vision tower, embeddings; ``mtp*`` is excluded. The routed
    experts are stored one Linear each (``mlp.experts.<e>.{gate,up,down}_proj``): modelopt
    0.47.0 ``export/moe_utils.py`` ``_export_fused_experts`` splits transformers' fused
    3-D experts into those names on export. FP8 KV cache (``kv_cache_quant_algo``): 0-d
    ``k_proj.k_scale``/``v_proj.v_scale`` on the full-attention layers; the MTP layer, carried
    over from the BF16 release as for the Qwen3.5 NVFP4 exports (inferred, not seen), has
    none. Full scale: 2,033 (27B) / 94,413 (35B-A3B) tensors."""
    inline = config.get("quantization_config") or {}
    q = extra["hf_quant_config.json"]["quantization"]
    layers = inline.get("quantized_layers") or q["quantized_layers"]
    excluded = excluded_by(inline.get("ignore") or q.get("exclude_modules") or ())
    emits: dict[str, Emit] = {"FP8": modelopt_fp8, "W4A16_NVFP4": modelopt_w4a16_nvfp4}

    def emit(m: str, o: int, i: int) -> list[Tensor]:
        return emits[_mixed_algo(layers, m) or ""](m, o, i)

    b = Builder(emit, lambda m: not excluded(m) and _mixed_algo(layers, m) is not None)
    qwen3_5(b, config, kv_scales=bool(q.get("kv_cache_quant_algo")), mtp_kv_scales=False)
    return Layout(b.tensors, named(hf_shards(b.tensors)), b.values)


#: what vLLM builds quantized under RedHatAI/DeepSeek-V4-Flash-NVFP4-FP8's config, in the
#: checkpoint's names: ``config_groups.group_0`` (``re:.*attn.*(fused_wqa_wkv|wq_b|wo_a|
#: wo_b)$``, FP8 block) reaches ``fused_wqa_wkv`` (``wq_a`` + ``wkv``), ``wq_b`` (the
#: indexer's too), ``wo_a`` and ``wo_b``; ``group_1`` (``re:.*ffn.*(gate|up|down)_proj$``,
#: NVFP4) the shared experts' ``gate_up_proj`` / ``down_proj`` and the routed experts through
#: the probe ``experts.0.gate_proj`` (vLLM <= 0.31.0)
_RH_FP8 = re.compile(r"\.attn\.(?:wq_a|wkv|wq_b|wo_a|wo_b|indexer\.wq_b)$")
_RH_NVFP4 = re.compile(r"\.ffn\.(?:experts\.\d+|shared_experts)\.w[123]$")


def r_redhat_deepseek_v4(config: JSON, extra: dict[str, JSON]) -> Layout:
    """RedHatAI/DeepSeek-V4-Flash-NVFP4-FP8 (compressed-tensors ``mixed-precision``): a
    DeepSeek-V4-Flash (:func:`deepseek_v4`, 43 layers, 256 experts) with block-FP8 attention
    (:func:`ct_fp8_block`) and NVFP4 experts, routed and shared (:func:`ct_nvfp4`).

    Inferred, not seen: no header or index of the release was found. The names are DeepSeek's
    own (``layers.<i>.attn.wq_a``, ``ffn.experts.<e>.w1``; evidence in :func:`deepseek_v4`):

    * the release is served by vLLM (third-party evaluations on vLLM compare against
      "RedHat (no MTP)": the canada-quant/DeepSeek-V4-Flash-NVFP4-FP8-MTP model card), and
      vLLM's DeepSeek-V4 loader maps no other names (:func:`deepseek_v4`): a checkpoint in
      transformers' module names (``model.layers.<i>.self_attn.q_a_proj``,
      ``mlp.experts.<e>.gate_proj``) would not load;
    * it was written by llm-compressor through transformers' ``DeepseekV4ForCausalLM`` with
      the experts linearized (vllm-project/llm-compressor
      ``examples/quantizing_moe/deepseek_v4_example.py``; the card above names that example
      as RedHat's recipe), and llm-compressor's save mapping for it
      (``src/llmcompressor/modeling/moe/deepseek_v4.py`` @ ``31c27dc8``,
      ``modify_save_with_linearized_experts_deepseek_v4``) renames the per-expert modules
      ``mlp.experts.<e>.gate_proj``/``up_proj``/``down_proj`` back to ``w1``/``w3``/``w2``,
      the rest through transformers' ``deepseek_v4`` conversion mapping.

    The config's targets name vLLM's modules (``fused_wqa_wkv`` exists only there). Which
    modules are quantized is what vLLM <= 0.31.0 builds quantized under the config (see
    ``_RH_FP8``/``_RH_NVFP4``): a checkpoint that loads there must store those and only
    those. The shared experts under NVFP4 follow from ``group_1`` matching
    ``shared_experts.gate_up_proj``. The MTP layer is absent: transformers'
    ``DeepseekV4PreTrainedModel._keys_to_ignore_on_load_unexpected`` matches every ``mtp.*``
    key (5.19.0 ``models/deepseek_v4/modeling_deepseek_v4.py``), so the calibration load
    drops them, and the card above says RedHat's release has none. File names
    and split: transformers' 5 GB default. Full scale: 133,918 tensors."""
    tc = config

    def emit(m: str, o: int, i: int) -> list[Tensor]:
        return ct_fp8_block(m, o, i) if _RH_FP8.search(m) else ct_nvfp4(m, o, i)

    b = Builder(emit, lambda m: bool(_RH_FP8.search(m) or _RH_NVFP4.search(m)))
    deepseek_v4(b, tc)
    return Layout(b.tensors, named(hf_shards(b.tensors)), b.values)


def r_qwen3_5_bf16(config: JSON, extra: dict[str, JSON]) -> Layout:
    """Qwen/Qwen3.5-27B (dense) and Qwen/Qwen3.6-35B-A3B (MoE), the unquantized BF16 releases:
    :func:`qwen3_5` with every tensor BF16 (``A_log`` F32) and no quantization config. Files:
    save_pretrained's 5 GB split (the real count is not known). Full scale: 1,199 (27B) /
    32,451 (35B-A3B) tensors."""
    b = Builder()
    qwen3_5(b, config)
    return Layout(b.tensors, named(hf_shards(b.tensors)), b.values)


#: the shard limit of gpt-oss's writer: 20b's first file holds 4,792,250,240 bytes of data and
#: did not take the next tensor (23.6 MB), its second 4,798,679,872 bytes: the limit lies in
#: [4,798,679,872, 4,815,843,200); 4.8 GB reproduces the real weight map
GPT_OSS_SHARD = 4_800_000_000


def r_gpt_oss(config: JSON, extra: dict[str, JSON]) -> Layout:
    """openai/gpt-oss-20b and gpt-oss-120b (``quant_method: mxfp4``): :func:`gpt_oss`, split
    greedily at ``GPT_OSS_SHARD`` into 0-based ``model-00000-of-0000N`` files, the index one
    line in export order. For 20b this reproduces the real weight map tensor for tensor (the
    build checks it and then writes the real index verbatim), and the files come out at the
    exact byte sizes of the real ones (their git-LFS pointers, saved), which pins every name,
    dtype and shape and says the headers carry no ``__metadata__``. 120b is the same writer
    on its own config. Full scale: 459 (20b) / 687 (120b) tensors."""
    b = Builder()
    gpt_oss(b, config)
    placed = named(hf_shards(b.tensors, GPT_OSS_SHARD), first=0)
    return Layout(b.tensors, placed, b.values, index_style="ordered", metadata=None)


@dataclass(frozen=True)
class Replica:
    """One published checkpoint the builder can replicate."""

    name: str
    source: str  #: the folder under /work/shared/realworld
    make: Callable[[JSON, dict[str, JSON]], Layout]
    #: layers kept in tests (None: the whole model; it is small enough)
    test_layers: int | None = None
    #: the folder config.json comes from when ``source`` has none (its quantization_config
    #: dropped): the same architecture, released in another format
    config_from: str | None = None
    #: the release the replica is checked clean on where vLLM 0.33 does not load it (what
    #: 0.33 makes of it is tests/test_replicas.py's to say)
    loads_on: str | None = None

    @property
    def doc(self) -> str:
        return self.make.__doc__ or ""


REPLICAS: dict[str, Replica] = {
    r.name: r
    for r in (
        Replica("deepseek-r1", "deepseek-r1", r_deepseek_r1, test_layers=4),
        Replica("kimi-k2.5", "kimi-k2.5", r_kimi_k2_5, test_layers=2),
        Replica("qwen3-32b-fp8", "qwen3-32b-fp8", r_qwen3_dense_fp8),
        Replica("qwen3-30b-a3b-fp8", "qwen3-30b-a3b-fp8", r_qwen3_moe_fp8, test_layers=2),
        Replica("qwen3-235b-a22b-fp8", "qwen3-235b-a22b-fp8", r_qwen3_moe_fp8, test_layers=2),
        Replica("qwen3.5-122b-a10b-fp8", "qwen3.5-122b-a10b-fp8", r_qwen3_5_fp8, test_layers=4),
        Replica("qwen3.5-397b-a17b-fp8", "qwen3.5-397b-a17b-fp8", r_qwen3_5_fp8, test_layers=4),
        Replica("gpt-oss-20b", "gpt-oss-20b", r_gpt_oss),
        Replica("gpt-oss-120b", "gpt-oss-120b", r_gpt_oss),
        Replica("nvidia-llama-3.1-70b-instruct-fp8", "nvidia-llama-3.1-70b-instruct-fp8",
                r_modelopt_llama_like),
        Replica("nvidia-qwen3-32b-nvfp4", "nvidia-qwen3-32b-nvfp4", r_modelopt_llama_like,
                config_from="qwen3-32b-fp8"),
        Replica("nvidia-qwen3-30b-a3b-nvfp4", "nvidia-qwen3-30b-a3b-nvfp4",
                r_modelopt_llama_like, test_layers=2, config_from="qwen3-30b-a3b-fp8"),
        Replica("nvidia-qwen3-235b-a22b-nvfp4", "nvidia-qwen3-235b-a22b-nvfp4",
                r_modelopt_llama_like, test_layers=2),
        Replica("nvidia-qwen3.5-122b-a10b-nvfp4", "nvidia-qwen3.5-122b-a10b-nvfp4",
                r_modelopt_qwen3_5, test_layers=4),
        Replica("nvidia-qwen3.5-397b-a17b-nvfp4", "nvidia-qwen3.5-397b-a17b-nvfp4",
                r_modelopt_qwen3_5, test_layers=4),
        Replica("nvidia-qwen3.6-27b-nvfp4", "nvidia-qwen3.6-27b-nvfp4",
                r_modelopt_qwen3_6_mixed, test_layers=4),
        Replica("nvidia-qwen3.6-35b-a3b-nvfp4", "nvidia-qwen3.6-35b-a3b-nvfp4",
                r_modelopt_qwen3_6_mixed, test_layers=4),
        Replica("qwen3.5-27b", "qwen3.5-27b", r_qwen3_5_bf16, test_layers=4),
        Replica("qwen3.6-35b-a3b", "qwen3.6-35b-a3b", r_qwen3_5_bf16, test_layers=4),
        Replica("redhatai-deepseek-v4-flash-nvfp4-fp8", "redhatai-deepseek-v4-flash-nvfp4-fp8",
                r_redhat_deepseek_v4, test_layers=4, loads_on="vllm==0.31.0"),
    )
}


def configs(replica: Replica) -> tuple[JSON, dict[str, JSON]]:
    """The replica's config.json and its other JSON config files, as saved."""
    src = REALWORLD / replica.source
    path = src / "config.json"
    if not path.is_file():
        assert replica.config_from is not None, f"{src} has no config.json"
        config = json.loads((REALWORLD / replica.config_from / "config.json").read_text())
        config.pop("quantization_config", None)
    else:
        config = json.loads(path.read_text())
    extra = {p.name: json.loads(p.read_text()) for p in sorted(src.glob("hf_quant_config.json"))}
    return config, extra


def layout(name: str, layers: int | None = None) -> tuple[Layout, JSON, dict[str, JSON]]:
    """The replica's layout and configs (``layers``: truncated to that many layers)."""
    replica = REPLICAS[name]
    config, extra = configs(replica)
    if layers is not None:
        config, extra = truncate(config, extra, layers)
    return replica.make(config, extra), config, extra


Edit = Callable[[Layout, JSON, dict[str, JSON]], None]


def build(name: str, out: Path, layers: int | None = None, seed: int = 0, *,
          edit: Edit | None = None) -> Path:
    """Write the replica ``name`` into ``out`` (replaced) and return ``out``. ``edit`` may
    change the layout and the configs in place before they are written (see
    :func:`replace_module`)."""
    replica = REPLICAS[name]
    lay, config, extra = layout(name, layers)
    if edit is not None:
        edit(lay, config, extra)
    files: dict[str, JSON | bytes] = dict(extra)
    src = REALWORLD / replica.source
    verbatim = layers is None and edit is None
    whole = verbatim and (src / "config.json").is_file()
    # verbatim bytes where the model is whole, so that key order and spacing are the release's
    files["config.json"] = (src / "config.json").read_bytes() if whole else config
    for fname in extra:
        files[fname] = (src / fname).read_bytes() if verbatim else extra[fname]
    write_layout(lay, out, files, seed)
    real_index = src / INDEX
    if whole and real_index.is_file():
        ours = json.loads((out / INDEX).read_text())
        theirs = json.loads(real_index.read_text())
        assert ours == theirs, f"{name}: the built index differs from the real one"
        shutil.copyfile(real_index, out / INDEX)
    return out
