"""fp_quant fixtures (tests/fixtures/fp_quant/) and what real vLLM loads from them.

    make:   python fp_quant_oracle.py make OUT_DIR {exporter,no-backward,qkv-scales,nvfp4}
            (any venv with torch, safetensors, transformers; no GPU)
    golden: VLLM_TARGET_DEVICE=cpu <venv-vllm0330>/bin/python fp_quant_oracle.py golden \\
            CKPT_DIR TP OUT.json
            (vLLM 0.33.0 on CPU, load stage only, started with allow_deprecated_quantization:
            builds the model, runs load_weights at tensor parallel size TP (gloo processes)
            and records, per rank, every FP-Quant parameter of every decoder layer: shape,
            dtype, the value of the one-element global scales, which stored shard the
            Hadamard matrix equals, and whether qweight/scales equal the rank's slice of the
            stored shards; a load that raises is recorded with its exception)

NOT REAL-TOOL OUTPUT. The exporters (IST-DASLab FP-Quant ``model_quant.py``
``export_quantized_model``, and transformers' ``FPQuantConfig`` through the ``fp_quant``
package's ``FPQuantLinear``) need CUDA kernels (QuTLASS; ``pre_forward`` asserts the weight is
on CUDA or XPU), so ``make`` writes the layout their source writes, with random codes:

* per quantized Linear (every Linear but ``lm_head``): ``qweight`` U8 [out, in/2] (two FP4
  E2M1 codes a byte), ``scales`` U8 [out, in/32] (E8M0 bytes, MXFP4), ``weight_global_scale``
  and ``act_global_scale`` BF16 [1] (``FPQuantLinear`` registers them in the weight dtype;
  ``pre_forward`` sets 3.0 for ``abs_max``), ``forward_hadamard_matrix`` and
  ``backward_hadamard_matrix`` BF16 [32, 32] (``hadamard(32) / sqrt(32)``); fp_quant 0.3.2
  ``module/linear.py``, FP-Quant ``model_quant.py`` (the dict it saves per layer);
* ``config.json`` ``quantization_config`` as transformers' ``FPQuantConfig.to_dict`` writes
  it (5.24 ``utils/quantization_config.py``).

Variants: ``exporter`` (the layout above), ``no-backward`` (without
``backward_hadamard_matrix``, the parameter vLLM 0.33.0 no longer registers), ``qkv-scales``
(``no-backward`` with q/k/v and gate/up global scales that differ in layer 0), ``nvfp4``
(``no-backward`` as NVFP4: ``forward_dtype: nvfp4``, Hadamard group 16, ``scales`` U8
[out, in/16] holding E4M3 bytes, global scales 10.0 as ``pre_forward`` sets them).
"""

from __future__ import annotations

import json
import os
import sys
from typing import Any

HIDDEN, INTER, HEADS, KV_HEADS, HEAD_DIM, LAYERS, VOCAB, H = 64, 128, 4, 2, 16, 2, 128, 32
QCFG = {"quant_method": "fp_quant", "forward_dtype": "mxfp4", "forward_method": "abs_max",
        "backward_dtype": "bf16", "store_master_weights": False, "hadamard_group_size": H,
        "pseudoquantization": False, "transform_init": "hadamard",
        "modules_to_not_convert": ["lm_head"]}
#: (module under the layer, out, in)
LINEARS = (("self_attn.q_proj", HEADS * HEAD_DIM, HIDDEN),
           ("self_attn.k_proj", KV_HEADS * HEAD_DIM, HIDDEN),
           ("self_attn.v_proj", KV_HEADS * HEAD_DIM, HIDDEN),
           ("self_attn.o_proj", HIDDEN, HEADS * HEAD_DIM),
           ("mlp.gate_proj", INTER, HIDDEN), ("mlp.up_proj", INTER, HIDDEN),
           ("mlp.down_proj", HIDDEN, INTER))
#: qkv-scales: layer 0's global scales per shard (weight, act)
SHARD_SCALES = {"q_proj": (3.0, 3.0), "k_proj": (2.0, 2.5), "v_proj": (1.5, 2.0),
                "gate_proj": (3.0, 3.0), "up_proj": (4.0, 6.0)}


def make(out: str, kind: str) -> None:
    import numpy as np
    import torch
    from safetensors.torch import save_file

    torch.manual_seed(0)
    nv = kind == "nvfp4"
    h, g = (16, 16) if nv else (H, 32)
    had = torch.tensor(_hadamard(h) / h ** 0.5, dtype=torch.bfloat16)
    t: dict[str, torch.Tensor] = {
        "model.embed_tokens.weight": (torch.randn(VOCAB, HIDDEN) * 0.02).to(torch.bfloat16),
        "model.norm.weight": torch.ones(HIDDEN, dtype=torch.bfloat16),
        "lm_head.weight": (torch.randn(VOCAB, HIDDEN) * 0.02).to(torch.bfloat16),
    }
    for i in range(LAYERS):
        p = f"model.layers.{i}."
        t[p + "input_layernorm.weight"] = torch.ones(HIDDEN, dtype=torch.bfloat16)
        t[p + "post_attention_layernorm.weight"] = torch.ones(HIDDEN, dtype=torch.bfloat16)
        for name, o, n in LINEARS:
            m = p + name
            t[m + ".qweight"] = torch.randint(0, 256, (o, n // 2), dtype=torch.uint8)
            # E8M0 2^-9..2^0 (MXFP4); E4M3 bytes 0x30..0x3f, 0.5..1.875 (NVFP4)
            lo, hi = (0x30, 0x40) if nv else (118, 128)
            t[m + ".scales"] = torch.randint(lo, hi, (o, n // g), dtype=torch.uint8)
            w, a = (10.0, 10.0) if nv else (3.0, 3.0)
            leaf = name.rsplit(".", 1)[1]
            if kind == "qkv-scales" and i == 0 and leaf in SHARD_SCALES:
                w, a = SHARD_SCALES[leaf]
            t[m + ".weight_global_scale"] = torch.tensor([w], dtype=torch.bfloat16)
            t[m + ".act_global_scale"] = torch.tensor([a], dtype=torch.bfloat16)
            # each module its own matrix, so the golden can tell which shard vLLM kept
            sign = torch.tensor(np.where(np.arange(h) % 7 == (len(t) % 7), -1.0, 1.0),
                                dtype=torch.bfloat16)
            t[m + ".forward_hadamard_matrix"] = (had * sign).contiguous()
            if kind == "exporter":
                t[m + ".backward_hadamard_matrix"] = had.clone()
    os.makedirs(out, exist_ok=True)
    save_file(t, os.path.join(out, "model.safetensors"), metadata={"format": "pt"})
    cfg = {"architectures": ["LlamaForCausalLM"], "model_type": "llama",
           "hidden_size": HIDDEN, "intermediate_size": INTER, "num_hidden_layers": LAYERS,
           "num_attention_heads": HEADS, "num_key_value_heads": KV_HEADS,
           "head_dim": HEAD_DIM, "vocab_size": VOCAB, "max_position_embeddings": 64,
           "rms_norm_eps": 1e-5, "rope_theta": 10000.0, "hidden_act": "silu",
           "tie_word_embeddings": False, "torch_dtype": "bfloat16",
           "bos_token_id": 1, "eos_token_id": 2, "quantization_config": dict(QCFG)}
    if nv:
        cfg["quantization_config"].update(forward_dtype="nvfp4", hadamard_group_size=16)
    with open(os.path.join(out, "config.json"), "w") as fh:
        json.dump(cfg, fh, indent=2)
        fh.write("\n")


def _hadamard(n: int) -> Any:
    import numpy as np
    h = np.array([[1.0]])
    while h.shape[0] < n:
        h = np.block([[h, h], [h, -h]])
    return h


#: the merged (column-parallel) and row-parallel layers of a Llama decoder layer, and their shards
MERGED = {"self_attn.qkv_proj": ("self_attn", ["q_proj", "k_proj", "v_proj"], 0),
          "mlp.gate_up_proj": ("mlp", ["gate_proj", "up_proj"], 0),
          "self_attn.o_proj": ("self_attn", ["o_proj"], 1),
          "mlp.down_proj": ("mlp", ["down_proj"], 1)}


def _load_rank(rank: int, ckpt: str, init: str, tp: int) -> tuple[Any, dict, dict]:
    """This rank's model config, stored tensors and loaded parameters (``vllm_load.load_rank``),
    FP-Quant being deprecated in vLLM 0.33: started with ``allow_deprecated_quantization``."""
    from vllm_load import load_rank

    return load_rank(rank, ckpt, init, tp, allow_deprecated_quantization=True)


def _golden_rank(rank: int, ckpt: str, init: str, tp: int, out: str) -> None:
    import torch
    got: dict[str, object] = {}
    try:
        mc, stored, params = _load_rank(rank, ckpt, init, tp)
    except Exception as exc:  # the engine's refusal is the result
        got = {"load": "error", "exception": type(exc).__name__, "message": str(exc)[:600]}
        with open(f"{out}.rank{rank}", "w") as fh:
            json.dump(got, fh)
        return
    for layer in range(mc.hf_config.num_hidden_layers):
        for merged, (owner, parts, dim) in MERGED.items():
            base = f"model.layers.{layer}.{merged}"
            shard = [f"model.layers.{layer}.{owner}.{q}" for q in parts]
            for leaf in ("qweight", "scales", "weight_global_scale", "act_global_scale",
                         "forward_hadamard_matrix", "backward_hadamard_matrix"):
                p = params.get(f"{base}.{leaf}")
                if p is None:
                    got[f"{base}.{leaf}"] = None
                    continue
                entry: dict[str, object] = {"shape": list(p.shape),
                                            "dtype": str(p.dtype).removeprefix("torch.")}
                if p.numel() == 1:
                    entry["value"] = float(p.reshape(-1)[0])
                if leaf in ("qweight", "scales"):
                    want = torch.cat([stored[f"{s}.{leaf}"].chunk(tp, dim)[rank]
                                      for s in shard], 0)
                    entry["equal_to_stored_slice"] = bool(
                        p.shape == want.shape and torch.equal(p.data, want))
                else:
                    entry["equals_stored"] = [
                        s.rsplit(".", 1)[1] for s in shard if f"{s}.{leaf}" in stored
                        and torch.equal(p.data.to(torch.float32),
                                        stored[f"{s}.{leaf}"].to(torch.float32))]
                got[f"{base}.{leaf}"] = entry
    got = {"load": "ok", "params": got}
    with open(f"{out}.rank{rank}", "w") as fh:
        json.dump(got, fh)


def golden(ckpt: str, tp: int, out: str) -> None:
    """Write ``out``: what every rank's FP-Quant parameters hold after real vLLM's load."""
    import vllm
    from vllm_load import run_ranks

    ranks = run_ranks(_golden_rank, ckpt, tp, out)
    data = {"vllm_version": vllm.__version__, "checkpoint": f"fp_quant/{os.path.basename(ckpt)}",
            "allow_deprecated_quantization": True, "tp": tp, "ranks": ranks}
    with open(out, "w") as fh:
        json.dump(data, fh, indent=1, sort_keys=True)
        fh.write("\n")


if __name__ == "__main__":
    if sys.argv[1] == "make":
        make(sys.argv[2], sys.argv[3])
    elif sys.argv[1] == "golden":  # golden CKPT_DIR TP OUT.json
        golden(sys.argv[2], int(sys.argv[3]), sys.argv[4])
    else:
        raise SystemExit(__doc__)
