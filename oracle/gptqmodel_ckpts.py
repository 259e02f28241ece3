#!/usr/bin/env python3
"""Tiny GPTQ checkpoints made by the real GPTQModel on CPU, with and without act order
(``desc_act``), for the vLLM oracle of small_ckpts.py (issue #12).

Tool versions (venv ``venv-gptq``, see oracle/README.md "GPTQModel act-order goldens"):
GPTQModel 7.6.0 (the newest release whose Requires-Dist accepts torch 2.13: ``torch>=2.8.0``;
its setup.py builds no extension, kernels are JIT), transformers 5.17.0, torch 2.13.0+cpu.

    venv-gptq/bin/python oracle/gptqmodel_ckpts.py base     -> $QS_CKPT_ROOT/base/llama_g
    venv-gptq/bin/python oracle/gptqmodel_ckpts.py quant    -> $QS_CKPT_ROOT/gptqmodel/llama-<job>
    python3 oracle/gptqmodel_ckpts.py neg        -> .../llama-desc_act-NEG-config-false (golden)
    python3 oracle/gptqmodel_ckpts.py fixtures   -> tests/fixtures/real/gptqmodel-llama-<job>
    venv-vllm/bin/python oracle/small_ckpts.py oracle_fork gptqmodel-   (goldens: see README)

Model: Llama, hidden 256, intermediate 512, 4 heads of 64, 2 KV heads, 2 layers, vocab 256
(bf16, seed 1234). Quantization: 4 bits, sym, group_size 32, real GPTQ (Hessian from 8
random calibration rows of 32 tokens, seeded), ``desc_act`` True (``act_group_aware``
False, which GPTQModel requires with it) or False (GPTQModel's default ``act_group_aware``
True).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from wna16_ckpts import copy_fixture  # noqa: E402  (the oracle scripts' shared copy)

HERE = Path(__file__).resolve()
REPO = HERE.parent.parent
ROOT = Path(os.environ.get("QS_CKPT_ROOT", "/work/oracle-work/ckpts"))
FIXTURE_DIR = REPO / "tests" / "fixtures" / "real"
V = 256
SEED = 1234
#: GPTQModel sizes its CPU pool as (cores + 1) // 2 and then asks for 2 loader workers,
#: which fails on a 2-core box ("requests 2 workers but parent 'cpu' only has 1")
os.environ.setdefault("GPTQMODEL_CPU_WORKERS", "2")
BASE = "llama_g"
LLAMA = {"vocab_size": V, "hidden_size": 256, "intermediate_size": 512,
         "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 2,
         "head_dim": 64, "max_position_embeddings": 256, "tie_word_embeddings": False,
         "pad_token_id": 0, "bos_token_id": 1, "eos_token_id": 2}
#: job -> QuantizeConfig keyword arguments
JOBS = {
    "desc_act": {"bits": 4, "group_size": 32, "sym": True, "desc_act": True,
                 "act_group_aware": False},
    "no_desc_act": {"bits": 4, "group_size": 32, "sym": True, "desc_act": False},
}
KEEP = ("config.json", "quantize_config.json", "quantization_config.json")


def build_base():
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    sys.path.insert(0, str(HERE.parent))
    from wna16_ckpts import _tokenizer

    out = ROOT / "base" / BASE
    torch.manual_seed(SEED)
    model = AutoModelForCausalLM.from_config(AutoConfig.for_model("llama", **LLAMA),
                                             dtype=torch.bfloat16)
    model.save_pretrained(out)
    _tokenizer(out)
    size = sum(f.stat().st_size for f in out.glob("*.safetensors"))
    print(f"[base] {out.name}: {type(model).__name__} {size/1e3:.0f} kB", flush=True)


def run_quant(sel=None):
    for job in JOBS:
        if sel and job not in sel:
            continue
        # cwd: GPTQModel writes logs/gptq_log_*.log into the working directory
        ROOT.mkdir(parents=True, exist_ok=True)
        subprocess.run([sys.executable, str(HERE), "quant1", job], check=False, cwd=ROOT)


def run_quant1(job):
    """One GPTQModel quantization (own process: GPTQModel keeps global state)."""
    import torch
    from gptqmodel import GPTQModel, QuantizeConfig

    src = ROOT / "base" / BASE
    out = ROOT / "gptqmodel" / f"llama-{job}"
    shutil.rmtree(out, ignore_errors=True)
    t0 = time.time()
    torch.manual_seed(SEED)
    g = torch.Generator().manual_seed(SEED)
    calib = [{"input_ids": ids.tolist(), "attention_mask": [1] * len(ids)}
             for ids in torch.randint(4, V, (8, 32), generator=g)]
    # offload_to_disk off: it would write a random /tmp path into the saved config
    cfg = QuantizeConfig(**JOBS[job], offload_to_disk=False)
    model = GPTQModel.load(str(src), cfg, device="cpu", dtype=torch.bfloat16)
    model.quantize(calib, batch_size=1)
    model.save(str(out))
    size = sum(f.stat().st_size for f in out.glob("*.safetensors"))
    qc = json.loads((out / "config.json").read_text()).get("quantization_config", {})
    print(f"[quant] {out.name}: {size/1e3:.0f} kB quant_method={qc.get('quant_method')} "
          f"desc_act={qc.get('desc_act')} ({time.time()-t0:.1f}s)", flush=True)


def run_neg():
    """llama-desc_act with ``desc_act: false`` in its config (golden only; the test rebuilds
    it): act-order weights and a permuted ``g_idx`` that the engine will not read."""
    src = ROOT / "gptqmodel" / "llama-desc_act"
    dst = ROOT / "gptqmodel" / "llama-desc_act-NEG-config-false"
    shutil.rmtree(dst, ignore_errors=True)
    shutil.copytree(src, dst)
    for name in ("config.json", "quantize_config.json"):
        cfg = json.loads((dst / name).read_text())
        qc = cfg["quantization_config"] if name == "config.json" else cfg
        qc["desc_act"] = False
        (dst / name).write_text(json.dumps(cfg, indent=2) + "\n")
    print(f"[neg] {dst}")


def run_fixtures(sel=None):
    total = 0
    for job in JOBS:
        if sel and job not in sel:
            continue
        src = ROOT / "gptqmodel" / f"llama-{job}"
        if not src.exists():
            print(f"[fixtures] MISSING {src}")
            continue
        total += copy_fixture(src, FIXTURE_DIR / f"gptqmodel-llama-{job}", KEEP)
    print(f"[fixtures] total {total/1e6:.2f} MB")


def main():
    cmd, args = (sys.argv[1] if len(sys.argv) > 1 else "base"), sys.argv[2:]
    if cmd == "base":
        return build_base()
    if cmd == "quant":
        return run_quant(args or None)
    if cmd == "quant1":
        return run_quant1(*args)
    if cmd == "neg":
        return run_neg()
    if cmd == "fixtures":
        return run_fixtures(args or None)
    sys.exit(f"unknown command {cmd}")


if __name__ == "__main__":
    main()
