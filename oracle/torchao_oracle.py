"""torchao fixtures (tests/fixtures/torchao/) and what real vLLM 0.33 loads from them.

    make:   python torchao_oracle.py make OUT_DIR {int8wo,fp8wo,intx4wo}
            (a venv with torch 2.13.0, torchao 0.18.0, transformers 5.17; CPU is enough:
            Int4WeightOnlyConfig needs CUDA kernels and fails on CPU)
    oracle: VLLM_TARGET_DEVICE=cpu PYTHONPATH=<unzipped torchao 0.18.0 wheel> \\
            <venv-vllm0330>/bin/python torchao_oracle.py {oracle,tp2,tp4} CKPT_DIR
            (vLLM 0.33.0 on CPU, load stage only: builds the model, runs load_weights, and
            compares every torchao piece of the merged qkv_proj / gate_up_proj and of
            o_proj / down_proj with the stored shards; tp2: the same at TP=2, two gloo
            processes, each rank's qkv_proj and o_proj against its slice of the shards)
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
"""

from __future__ import annotations

import sys
import tempfile
from typing import Any


def make(out: str, kind: str) -> None:
    import torch
    from torchao.quantization import (
        Float8WeightOnlyConfig,
        Int8WeightOnlyConfig,
        IntxWeightOnlyConfig,
        PerGroup,
    )
    from transformers import AutoModelForCausalLM, LlamaConfig, LlamaForCausalLM, TorchAoConfig

    torch.manual_seed(0)
    cfg = LlamaConfig(vocab_size=128, hidden_size=64, intermediate_size=128,
                      num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                      head_dim=16, max_position_embeddings=64, tie_word_embeddings=False)
    base = tempfile.mkdtemp()
    LlamaForCausalLM(cfg).to(torch.bfloat16).save_pretrained(base)
    ao = {"int8wo": Int8WeightOnlyConfig(), "fp8wo": Float8WeightOnlyConfig(),
          "intx4wo": IntxWeightOnlyConfig(weight_dtype=torch.int4, granularity=PerGroup(32)),
          }[kind]
    q = AutoModelForCausalLM.from_pretrained(base, dtype=torch.bfloat16,
                                             quantization_config=TorchAoConfig(ao))
    q.save_pretrained(out)


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
    after ``load_weights`` at tensor parallel size ``tp`` (CPU, gloo)."""
    import torch
    from safetensors import safe_open
    from vllm.config import set_current_vllm_config
    from vllm.distributed import init_distributed_environment, initialize_model_parallel
    from vllm.engine.arg_utils import EngineArgs
    from vllm.model_executor.model_loader import get_model_loader
    from vllm.model_executor.model_loader.utils import initialize_model
    from vllm.utils.torch_utils import set_default_torch_dtype

    extra = {"tensor_parallel_size": tp, "distributed_executor_backend": "mp"} if tp > 1 else {}
    cfg = EngineArgs(model=ckpt, enforce_eager=True, max_model_len=64, skip_tokenizer_init=True,
                     dtype="bfloat16", **extra).create_engine_config()
    mc = cfg.model_config
    with safe_open(f"{ckpt}/model.safetensors", "pt") as f:
        stored = {k: f.get_tensor(k) for k in f.keys()}  # noqa: SIM118
    with set_current_vllm_config(cfg):
        init_distributed_environment(world_size=tp, rank=rank, local_rank=rank, backend="gloo",
                                     distributed_init_method=init)
        initialize_model_parallel(tp, 1)
        with set_default_torch_dtype(mc.dtype), torch.device("cpu"):
            model = initialize_model(vllm_config=cfg, model_config=mc)
        get_model_loader(cfg.load_config).load_weights(model, mc)
        return mc, stored, dict(model.named_parameters())


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


def _golden_rank(rank: int, ckpt: str, init: str, tp: int, out: str) -> None:
    """One rank's torchao parameters: subclass, block_size, and every component's shape and
    dtype, with whether it equals this rank's slice of the stored shards."""
    import json

    import torch
    mc, stored, params = _load_rank(rank, ckpt, init, tp)
    got: dict[str, object] = {}
    for layer in range(mc.hf_config.num_hidden_layers):
        for merged, (owner, parts, dim) in LAYERS.items():
            name = f"model.layers.{layer}.{merged}.weight"
            w = params[name]
            entry: dict[str, object] = {"type": type(w).__name__,
                                        "block_size": list(getattr(w, "block_size", []))}
            pieces = {}
            for piece in ("qdata", "scale", "zero_point"):
                t = getattr(w, piece, None)
                if not isinstance(t, torch.Tensor):
                    continue
                shards = [stored.get(f"model.layers.{layer}.{owner}.{q}._weight_{piece}")
                          for q in parts]
                same = None
                if all(x is not None for x in shards):
                    if dim == 1 and piece != "qdata" and shards[0].shape[1] == 1:
                        want = shards[0]  # a per-row scale spans every rank's columns
                    else:
                        want = torch.cat([x.chunk(tp, dim)[rank] for x in shards], 0)
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

    import torch.multiprocessing as mp
    import vllm

    init = f"file://{tempfile.mkdtemp()}/pg"
    if tp == 1:
        _golden_rank(0, ckpt, init, 1, out)
    else:
        mp.spawn(_golden_rank, args=(ckpt, init, tp, out), nprocs=tp)
    ranks = []
    for r in range(tp):
        with open(f"{out}.rank{r}") as fh:
            ranks.append(json.load(fh))
        os.remove(f"{out}.rank{r}")
    data = {"vllm_version": vllm.__version__, "checkpoint": f"torchao/{os.path.basename(ckpt)}",
            "load": "ok", "tp": tp, "ranks": ranks}
    with open(out, "w") as fh:
        json.dump(data, fh, indent=1, sort_keys=True)
        fh.write("\n")


if __name__ == "__main__":
    if sys.argv[1] == "make":
        make(sys.argv[2], sys.argv[3])
    elif sys.argv[1] == "golden":  # golden CKPT_DIR TP OUT.json
        golden(sys.argv[2], int(sys.argv[3]), sys.argv[4])
    elif sys.argv[1].startswith("tp"):  # tp2, tp4: that many gloo ranks
        import torch.multiprocessing as mp

        n = int(sys.argv[1][2:])
        mp.spawn(_tp_rank, args=(sys.argv[2], f"file://{tempfile.mkdtemp()}/pg", n), nprocs=n)
    else:
        oracle(sys.argv[2])
