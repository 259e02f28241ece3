"""Real vLLM's compressed-tensors matching of targets and ignore entries on layer names.

Calls vLLM's own ``CompressedTensorsConfig.get_scheme_dict`` / ``get_quant_method`` on layer
names, with layers of the real classes made without ``__init__`` (the matching reads only
the layer's class name): no model is built, no weights are loaded, CPU only.

    VLLM_TARGET_DEVICE=cpu /work/oracle-work/venv-vllm0330/bin/python oracle/ct_match_oracle.py

Run on 2026-12-03 with vLLM 0.33.0 (compressed-tensors 0.17.0):

* a ``Linear`` W4A16 group plus a group targeting ``re:.*qkv_proj$`` (FP8 per-channel):
  ``model.layers.0.self_attn.qkv_proj`` -> float8 channel (the regex on vLLM's fused name
  wins over the ``Linear`` class), ``self_attn.o_proj`` and ``mlp.gate_up_proj`` -> int4 group;
  with ``re:.*self_attn\\.(q|k|v|o)_proj$`` added to the W4A16 group (the checkpoint's
  ``q_proj`` names), ``qkv_proj`` is still float8 channel: vLLM's own name is tried first;
* Kimi-K2.5's ``text_config.quantization_config`` (``targets: ["Linear"]``, ``ignore:
  ["lm_head", …]``): ``get_quant_method`` of a ``ParallelLMHead`` named
  ``language_model.lm_head`` is None (built unquantized; the entry ``lm_head`` does not match
  the name, and the ``Linear`` class target does not reach a ``ParallelLMHead``).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

KIMI = Path("/work/shared/realworld/kimi-k2.5/config.json")
W4 = {"num_bits": 4, "type": "int", "symmetric": True, "strategy": "group", "group_size": 128}
F8 = {"num_bits": 8, "type": "float", "symmetric": True, "strategy": "channel"}


def main() -> int:
    from vllm.model_executor.layers.linear import (
        MergedColumnParallelLinear,
        QKVParallelLinear,
        RowParallelLinear,
    )
    from vllm.model_executor.layers.quantization.compressed_tensors.compressed_tensors import (
        CompressedTensorsConfig,
    )
    from vllm.model_executor.layers.vocab_parallel_embedding import ParallelLMHead

    def scheme(cfg: CompressedTensorsConfig, cls: type, name: str) -> str | None:
        d = cfg.get_scheme_dict(object.__new__(cls), name)
        w = d.get("weights") if d else None
        return None if w is None else f"{w.type}{w.num_bits} {w.strategy}"

    qc = {
        "quant_method": "compressed-tensors", "format": "mixed-precision",
        "config_groups": {
            "group_0": {"targets": ["Linear"], "weights": W4, "format": "pack-quantized"},
            "group_1": {"targets": ["re:.*qkv_proj$"], "weights": F8,
                        "format": "float-quantized"},
        },
        "ignore": ["lm_head"],
    }
    cfg = CompressedTensorsConfig.from_config(qc)
    cfg.packed_modules_mapping = {"qkv_proj": ["q_proj", "k_proj", "v_proj"],
                                  "gate_up_proj": ["gate_proj", "up_proj"]}
    out: dict[str, object] = {}
    for cls, name in ((QKVParallelLinear, "model.layers.0.self_attn.qkv_proj"),
                      (RowParallelLinear, "model.layers.0.self_attn.o_proj"),
                      (MergedColumnParallelLinear, "model.layers.0.mlp.gate_up_proj")):
        out[name] = scheme(cfg, cls, name)
    # the checkpoint's q/k/v names match one group, vLLM's fused name another
    qc["config_groups"]["group_0"]["targets"] = [r"re:.*self_attn\.(q|k|v|o)_proj$", "Linear"]
    cfg = CompressedTensorsConfig.from_config(qc)
    cfg.packed_modules_mapping = {"qkv_proj": ["q_proj", "k_proj", "v_proj"]}
    out["shard-named group_0: model.layers.0.self_attn.qkv_proj"] = scheme(
        cfg, QKVParallelLinear, "model.layers.0.self_attn.qkv_proj")
    kimi = json.loads(KIMI.read_text())["text_config"]["quantization_config"]
    kc = CompressedTensorsConfig.from_config(kimi)
    head = object.__new__(ParallelLMHead)
    out["kimi language_model.lm_head get_quant_method"] = repr(
        kc.get_quant_method(head, "language_model.lm_head"))
    print(json.dumps(out, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
