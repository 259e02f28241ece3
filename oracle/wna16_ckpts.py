#!/usr/bin/env python3
"""Tiny GPTQ / AWQ / AutoRound (integer) checkpoints made by the real AutoRound tool on CPU
(issue #12 item 3), for the vLLM oracle of small_ckpts.py.

Tool versions (venv ``venv-ar``, see oracle/README.md "WNA16 goldens"): auto-round 0.15.1,
transformers 5.17.0, torch 2.13.0+cpu. AutoRound runs RTN (``iters=0``,
``disable_opt_rtn=True``): no calibration data, no download.

    venv-ar/bin/python oracle/wna16_ckpts.py base          -> $QS_CKPT_ROOT/base/<model>_w
    venv-ar/bin/python oracle/wna16_ckpts.py quant [jobs]  -> $QS_CKPT_ROOT/autoround/<model>-<fmt>
    venv-ar/bin/python oracle/wna16_ckpts.py neg           -> .../llama-auto_gptq-NEG-no-qzeros
    python3 oracle/wna16_ckpts.py fixtures                 -> tests/fixtures/real/autoround-<...>
    venv-vllm/bin/python oracle/small_ckpts.py oracle_fork autoround-   (goldens: see README)

Models: Llama (hidden 128, intermediate 256 so down_proj has two groups of 128, 4 heads of
32, 2 KV heads, 2 layers, vocab 256) and Qwen3-MoE (hidden 128, 4 experts top-2,
moe_intermediate 128, 2 layers). Every Linear in-feature is a multiple of 128 (group 128).
Deterministic (seed 1234).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve()
REPO = HERE.parent.parent
ROOT = Path(os.environ.get("QS_CKPT_ROOT", "/work/oracle-work/ckpts"))
FIXTURE_DIR = REPO / "tests" / "fixtures" / "real"
V = 256
SEED = 1234

_DENSE = dict(vocab_size=V, hidden_size=128, intermediate_size=256, num_hidden_layers=2,
              num_attention_heads=4, num_key_value_heads=2, head_dim=32,
              max_position_embeddings=256, tie_word_embeddings=False, pad_token_id=0,
              bos_token_id=1, eos_token_id=2)
MODELS = {
    "llama": ("llama", _DENSE),
    "qwen3_moe": ("qwen3_moe", {**_DENSE, "num_experts": 4, "num_experts_per_tok": 2,
                                "moe_intermediate_size": 128, "decoder_sparse_step": 1,
                                "mlp_only_layers": [], "norm_topk_prob": True}),
}
#: (model, export format); the folder is <model>-<format> (':' -> '-')
JOBS = [("llama", "auto_gptq"), ("llama", "auto_awq"), ("llama", "auto_round"),
        ("llama", "auto_round:auto_awq"), ("qwen3_moe", "auto_gptq"), ("qwen3_moe", "auto_awq"),
        ("qwen3_moe", "auto_round")]
KEEP = ("config.json", "quantize_config.json", "quantization_config.json")


def build_base(sel=None):
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    for name, (mt, kw) in MODELS.items():
        if sel and name not in sel:
            continue
        out = ROOT / "base" / f"{name}_w"
        torch.manual_seed(SEED)
        model = AutoModelForCausalLM.from_config(AutoConfig.for_model(mt, **kw),
                                                 dtype=torch.bfloat16)
        model.save_pretrained(out)
        _tokenizer(out)
        size = sum(f.stat().st_size for f in out.glob("*.safetensors"))
        print(f"[base] {out.name}: {type(model).__name__} {size/1e3:.0f} kB", flush=True)


def _tokenizer(out):
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {f"t{i}": i for i in range(V)}
    vocab["<unk>"] = 0
    tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="<unk>", pad_token="t1",
                            eos_token="t2", bos_token="t3").save_pretrained(out)


def run_quant(sel=None):
    for name, fmt in JOBS:
        tag = f"{name}-{fmt}"
        if sel and not any(s in tag for s in sel):
            continue
        subprocess.run([sys.executable, str(HERE), "quant1", name, fmt])


def run_quant1(name, fmt):
    """One AutoRound RTN export (own process: AutoRound keeps global state)."""
    import torch
    from auto_round import AutoRound
    from transformers import AutoModelForCausalLM, AutoTokenizer

    src = ROOT / "base" / f"{name}_w"
    out = ROOT / "autoround" / f"{name}-{fmt.replace(':', '-')}"
    shutil.rmtree(out, ignore_errors=True)
    t0 = time.time()
    torch.manual_seed(SEED)
    model = AutoModelForCausalLM.from_pretrained(src, dtype=torch.bfloat16)
    tok = AutoTokenizer.from_pretrained(src)
    try:
        ar = AutoRound(model, tokenizer=tok, scheme="W4A16", bits=4, group_size=128, sym=True,
                       iters=0, disable_opt_rtn=True, nsamples=2, seqlen=16,
                       dataset=["t4 t5 t6 t7 t8 t9 t10 t11 t12 t13 t14 t15 t16 t17 t18"] * 4,
                       device_map="cpu")
        ar.quantize_and_save(output_dir=str(out), format=fmt)
    except Exception as e:
        import traceback
        traceback.print_exc()
        print(f"[quant] {out.name}: FAILED {type(e).__name__}: {str(e)[:300]}", flush=True)
        return
    # AutoRound may write into a sub-folder named after the format
    subs = [d for d in out.iterdir() if d.is_dir() and any(d.glob("*.safetensors"))]
    if not any(out.glob("*.safetensors")) and len(subs) == 1:
        for f in subs[0].iterdir():
            shutil.move(str(f), out / f.name)
        subs[0].rmdir()
    size = sum(f.stat().st_size for f in out.glob("*.safetensors"))
    qc = json.loads((out / "config.json").read_text()).get("quantization_config", {})
    print(f"[quant] {out.name}: {size/1e3:.0f} kB quant_method={qc.get('quant_method')} "
          f"({time.time()-t0:.1f}s)", flush=True)


def run_neg():
    """llama-auto_gptq without layer 1's k_proj.qzeros (golden only; the test rebuilds it)."""
    from safetensors.torch import load_file, save_file

    src = ROOT / "autoround" / "llama-auto_gptq"
    dst = ROOT / "autoround" / "llama-auto_gptq-NEG-no-qzeros"
    shutil.rmtree(dst, ignore_errors=True)
    shutil.copytree(src, dst)
    t = load_file(src / "model.safetensors")
    del t["model.layers.1.self_attn.k_proj.qzeros"]
    save_file(t, dst / "model.safetensors", metadata={"format": "pt"})
    print(f"[neg] {dst}")


def run_fixtures(sel=None):
    total = 0
    for name, fmt in JOBS:
        rel = f"autoround/{name}-{fmt.replace(':', '-')}"
        if sel and not any(s in rel for s in sel):
            continue
        src = ROOT / rel
        if not src.exists():
            print(f"[fixtures] MISSING {rel}")
            continue
        total += copy_fixture(src, FIXTURE_DIR / rel.replace("/", "-", 1))
    print(f"[fixtures] total {total/1e6:.2f} MB")


def copy_fixture(src, dst, keep=None):
    """Copy a checkpoint's safetensors, index and config files (``keep``: the config file
    names, default KEEP) into a fresh fixture folder ``dst``; returns its size in bytes."""
    keep = KEEP if keep is None else keep
    shutil.rmtree(dst, ignore_errors=True)
    dst.mkdir(parents=True)
    for f in sorted(src.iterdir()):
        if f.name in keep or f.name.endswith(".safetensors") or \
                f.name.endswith(".safetensors.index.json"):
            shutil.copy2(f, dst / f.name)
    size = sum(f.stat().st_size for f in dst.iterdir())
    print(f"[fixtures] {dst.name:40s} {size/1e6:6.3f} MB")
    return size


def main():
    cmd, args = (sys.argv[1] if len(sys.argv) > 1 else "base"), sys.argv[2:]
    if cmd == "base":
        return build_base(args or None)
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
