#!/usr/bin/env python3
"""Tiny real checkpoints for ~30 vLLM architectures (issue #11 item 4).

Each architecture gets a tiny BF16 model built by transformers (``AutoConfig.for_model`` +
``from_config`` + ``save_pretrained``: 2 decoder layers, 4 experts top-2, vocab 256), then
quantized by llm-compressor: static per-tensor FP8 (scheme "FP8", hidden 64) for every
architecture, and W4A16 (group 128, hidden 128) for the MoE and fused-on-disk ones.
The shared oracle of small_ckpts.py then loads them in real vLLM (see README.md).

    venv/bin/python oracle/arch_ckpts.py base [names]      -> $QS_CKPT_ROOT/base/<name>[-h128]
    venv/bin/python oracle/arch_ckpts.py llmc [names]      -> $QS_CKPT_ROOT/llmc/<name>-<scheme>
    venv/bin/python oracle/arch_ckpts.py list              names, schemes
    venv/bin/python oracle/arch_ckpts.py hand              -> $QS_CKPT_ROOT/hand/step3_text-FP8
    python3 oracle/arch_ckpts.py fixtures                  -> tests/fixtures/arch/<tool>-<name>-<scheme>

Checkpoints are deterministic (seed 1234 per model).
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
FIXTURE_DIR = REPO / "tests" / "fixtures" / "arch"
V = 256
SEED = 1234
SECOND = "W4A16"  # the second scheme (group 128: needs hidden 128)


def _dense(H):
    """Common dense-decoder fields. head_dim 32 (CPU attention backends accept 32)."""
    return dict(vocab_size=V, hidden_size=H, intermediate_size=H, num_hidden_layers=2,
                num_attention_heads=H // 32, num_key_value_heads=H // 64, head_dim=32,
                max_position_embeddings=256, tie_word_embeddings=False, pad_token_id=0,
                bos_token_id=1, eos_token_id=2)


def _mla(H):
    # q_lora_rank set: vLLM fuses q_a_proj + kv_a_proj_with_mqa into fused_qkv_a_proj
    return dict(q_lora_rank=H, kv_lora_rank=128, qk_rope_head_dim=64, qk_nope_head_dim=64,
                v_head_dim=64)


def _vis_qwen(H, **kw):
    return dict(depth=1, hidden_size=32, intermediate_size=64, num_heads=2, out_hidden_size=H,
                patch_size=8, spatial_merge_size=2, temporal_patch_size=2, **kw)


def configs(H):
    """name -> (model_type, auto class, kwargs, has second scheme). H = 64 or 128."""
    d = _dense(H)
    M = dict(moe_intermediate_size=H, num_experts_per_tok=2)
    c = {}
    c["llama"] = ("llama", "causal", d, False)
    c["mistral"] = ("mistral", "causal", d, False)
    c["qwen2"] = ("qwen2", "causal", {k: v for k, v in d.items() if k != "head_dim"}, False)
    c["qwen3"] = ("qwen3", "causal", d, False)
    c["glm4"] = ("glm4", "causal", d, False)
    c["cohere"] = ("cohere", "causal", {**d, "tie_word_embeddings": True}, False)
    c["exaone4"] = ("exaone4", "causal", {**d, "sliding_window": 64, "layer_types":
                                         ["sliding_attention", "full_attention"]}, False)
    c["gemma3_text"] = ("gemma3_text", "causal", {**d, "sliding_window": 64,
                                                 "query_pre_attn_scalar": 32}, False)
    c["gemma4_text"] = ("gemma4_text", "causal", {**d, "sliding_window": 64,
                                                 "vocab_size_per_layer_input": V,
                                                 "hidden_size_per_layer_input": 32,
                                                 "layer_types": ["sliding_attention",
                                                                 "full_attention"]}, False)
    c["phi3"] = ("phi3", "causal", {k: v for k, v in d.items() if k != "head_dim"}, True)
    c["mixtral"] = ("mixtral", "causal", {**d, "num_local_experts": 4,
                                         "num_experts_per_tok": 2}, True)
    # "_h64": the names qwen2_moe-* / gpt_oss-* are taken by small_ckpts.py's (hidden 128)
    # checkpoints; their W4A16 fixtures in tests/fixtures/real serve as the second scheme
    c["qwen2_moe_h64"] = ("qwen2_moe", "causal", {
        **{k: v for k, v in d.items() if k != "head_dim"}, **M, "num_experts": 4,
        "shared_expert_intermediate_size": H}, False)
    c["gpt_oss_h64"] = ("gpt_oss", "causal", {**d, "num_local_experts": 4,
                                             "num_experts_per_tok": 2, "sliding_window": 64,
                                             "layer_types": ["sliding_attention",
                                                             "full_attention"]}, False)
    c["qwen3_moe"] = ("qwen3_moe", "causal", {**d, **M, "num_experts": 4}, True)
    c["olmoe"] = ("olmoe", "causal", {k: v for k, v in {**d, "num_experts": 4,
                                                       "num_experts_per_tok": 2}.items()
                                      if k != "head_dim"}, True)
    c["granitemoe"] = ("granitemoe", "causal", {k: v for k, v in {
        **d, "num_local_experts": 4, "num_experts_per_tok": 2}.items() if k != "head_dim"}, True)
    c["ernie4_5_moe"] = ("ernie4_5_moe", "causal", {
        **{k: v for k, v in d.items() if k != "head_dim"}, "moe_intermediate_size": H,
        "moe_k": 2, "moe_num_experts": 4, "moe_num_shared_experts": 1,
        "moe_layer_start_index": 1}, True)
    c["hunyuan_v1_moe"] = ("hunyuan_v1_moe", "causal", {**d, "num_experts": 4, "moe_topk": 2,
                                                       "moe_intermediate_size": H,
                                                       "num_shared_expert": 1,
                                                       "use_qk_norm": True}, True)
    c["minimax_m2"] = ("minimax_m2", "causal", {**d, "num_local_experts": 4,
                                               "num_experts_per_tok": 2, "rotary_dim": 16,
                                               "use_qk_norm": True, "qk_norm_type": "per_layer",
                                               "scoring_func": "sigmoid",
                                               "use_routing_bias": True}, True)
    c["llama4_text"] = ("llama4_text", "causal", {**d, "intermediate_size_mlp": H,
                                                 "num_local_experts": 4,
                                                 "num_experts_per_tok": 1,
                                                 "interleave_moe_layer_step": 1}, True)
    c["glm4_moe"] = ("glm4_moe", "causal", {**d, **M, "n_routed_experts": 4,
                                           "n_shared_experts": 1, "first_k_dense_replace": 1,
                                           "n_group": 1, "topk_group": 1}, True)
    ds = {**{k: v for k, v in d.items() if k != "head_dim"}, **M, **_mla(H),
          "num_key_value_heads": H // 32, "n_routed_experts": 4, "n_shared_experts": 1,
          "first_k_dense_replace": 1, "n_group": 1, "topk_group": 1}
    # the official DeepSeek-V3/R1 and Kimi-K2.5 configs say noaux_tc/sigmoid; transformers'
    # config omits them, and vLLM then builds no e_score_correction_bias (KeyError on load)
    v3 = {**ds, "topk_method": "noaux_tc", "scoring_func": "sigmoid"}
    c["deepseek_v3"] = ("deepseek_v3", "causal", v3, True)
    c["glm4_moe_lite"] = ("glm4_moe_lite", "causal", ds, True)
    c["deepseek_v32"] = ("deepseek_v32", "causal", {**v3, "index_topk": 16, "index_head_dim": 64,
                                                   "index_n_heads": 2, "head_dim": 64}, False)
    c["longcat_flash"] = ("longcat_flash", "causal", {
        **{k: v for k, v in ds.items() if k not in ("moe_intermediate_size", "n_shared_experts",
                                                   "first_k_dense_replace", "n_group",
                                                   "topk_group", "num_experts_per_tok",
                                                   "num_hidden_layers")},
        "num_layers": 1, "num_hidden_layers": 2, "ffn_hidden_size": H, "moe_topk": 2,
        "zero_expert_num": 2, "expert_ffn_hidden_size": H,
        "mla_scale_q_lora": True, "mla_scale_kv_lora": True,  # as the official config
        "zero_expert_type": "identity"}, False)  # W4A16: llmc leaves the experts BF16 (930 kB)
    # VL
    c["qwen2_5_vl"] = ("qwen2_5_vl", "vl", dict(
        text_config={**{k: v for k, v in d.items() if k != "head_dim"}, "rope_parameters": {
            "rope_type": "default", "rope_theta": 10000.0, "mrope_section": [4, 6, 6]}},
        vision_config=_vis_qwen(H, window_size=16, fullatt_block_indexes=[0]),
        tie_word_embeddings=False), False)
    c["qwen3_vl"] = ("qwen3_vl", "vl", dict(
        text_config=d, vision_config=_vis_qwen(H, num_position_embeddings=16,
                                               deepstack_visual_indexes=[0]),
        tie_word_embeddings=False), False)
    c["qwen3_vl_moe"] = ("qwen3_vl_moe", "vl", dict(
        text_config={**d, **M, "num_experts": 4, "norm_topk_prob": True},  # as official
        vision_config=_vis_qwen(H, num_position_embeddings=16, deepstack_visual_indexes=[0]),
        tie_word_embeddings=False), True)
    lin = dict(linear_num_key_heads=1, linear_num_value_heads=2, linear_key_head_dim=32,
               linear_value_head_dim=32, linear_conv_kernel_dim=4)
    c["qwen3_5"] = ("qwen3_5", "vl", dict(
        text_config={**d, **lin, "layer_types": ["linear_attention", "full_attention"]},
        vision_config=_vis_qwen(H, num_position_embeddings=16), tie_word_embeddings=False), False)
    c["kimi_k25"] = ("kimi_k25", "vl", dict(
        text_config={**v3, "model_type": "deepseek_v3"},
        vision_config=dict(patch_size=14, num_attention_heads=2, num_hidden_layers=1,
                           hidden_size=32, intermediate_size=64, pos_emb_height=8,
                           pos_emb_width=8, pos_emb_time=2),
        projection_hidden_size=32, tie_word_embeddings=False), False)  # W4A16: size
    return c


#: names whose checkpoints are post-processed by hand after quantization
MTP = {"deepseek_v3"}  # + one MTP layer past num_hidden_layers (num_nextn_predict_layers=1)


def names():
    return list(configs(64))


def build_base(sel=None):
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM, AutoModelForImageTextToText

    for H in (64, 128):
        for name, (mt, auto, kw, second) in configs(H).items():
            if sel and name not in sel:
                continue
            if H == 128 and not second:
                continue
            out = ROOT / "base" / (name if H == 64 else f"{name}-h128")
            torch.manual_seed(SEED)
            t0 = time.time()
            try:
                cfg = AutoConfig.for_model(mt, **kw)
                cls = AutoModelForImageTextToText if auto == "vl" else AutoModelForCausalLM
                model = cls.from_config(cfg, dtype=torch.bfloat16)
                model.save_pretrained(out)
                _tokenizer(out)
                size = sum(f.stat().st_size for f in out.glob("*.safetensors"))
                print(f"[base] {out.name}: {type(model).__name__} {size/1e3:.0f} kB "
                      f"({time.time()-t0:.1f}s)", flush=True)
            except Exception as e:
                print(f"[base] {out.name}: FAILED {type(e).__name__}: {str(e)[:300]}", flush=True)


def _tokenizer(out):
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {f"t{i}": i for i in range(V)}
    vocab["<unk>"] = 0
    tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="<unk>", pad_token="t1",
                            eos_token="t2", bos_token="t3").save_pretrained(out)


IGNORE = ["lm_head", "re:.*mlp.gate$", "re:.*shared_expert_gate$", "re:.*router$",
          "re:.*visual.*", "re:.*vision_tower.*", "re:.*mm_projector.*", "re:.*in_proj_a$",
          "re:.*in_proj_b$", "re:.*in_proj_ba$", "re:.*moe.gate$", "re:.*feed_forward.router$",
          "re:.*mlp.router.*", "re:.*block_sparse_moe.gate$", "re:.*indexer.*",
          "re:.*per_layer.*", "re:.*model.visual.*", "re:.*multi_modal_projector.*",
          "re:.*mlp.gate.wg$"]


def jobs(sel=None):
    out = []
    for name, (_, _, _, second) in configs(64).items():
        if sel and name not in sel:
            continue
        out.append((name, "FP8"))
        if second:
            out.append((name, SECOND))
    return out


def run_llmc(sel=None):
    for name, scheme in jobs(sel):
        subprocess.run([sys.executable, str(HERE), "llmc1", name, scheme])


def run_llmc1(name, scheme):
    import torch
    from llmcompressor import oneshot
    from llmcompressor.modifiers.quantization import QuantizationModifier
    from transformers import AutoModelForCausalLM, AutoModelForImageTextToText, AutoTokenizer

    sys.path.insert(0, str(HERE.parent))
    from datasets import Dataset

    src = ROOT / "base" / (name if scheme == "FP8" else f"{name}-h128")
    out = ROOT / "llmc" / f"{name}-{scheme}"
    t0 = time.time()
    try:
        auto = configs(64)[name][1]
        cls = AutoModelForImageTextToText if auto == "vl" else AutoModelForCausalLM
        model = cls.from_pretrained(src, dtype=torch.bfloat16)
        tok = AutoTokenizer.from_pretrained(src)
        g = torch.Generator().manual_seed(SEED)
        ids = torch.randint(4, V, (8, 32), generator=g).tolist()
        ds = Dataset.from_dict({"input_ids": ids, "attention_mask": [[1] * 32] * 8})
        recipe = QuantizationModifier(targets="Linear", scheme=scheme, ignore=IGNORE)
        selfref = not hasattr(model.config, "text_config")
        if selfref:  # llm-compressor's Llama4 MoE replacement reads config.text_config
            model.config.text_config = model.config
        oneshot(model=model, processor=tok, dataset=ds, recipe=recipe,
                num_calibration_samples=8, max_seq_length=32)
        if selfref:
            del model.config.text_config
        if out.exists():
            shutil.rmtree(out)
        model.save_pretrained(out, save_compressed=True)
        tok.save_pretrained(out)
        if name in MTP and scheme == "FP8":  # (W4A16 without it: fixture size)
            add_mtp_layer(out)
        if name == "kimi_k25":
            kimi_official_names(out)
        if name == "longcat_flash":
            longcat_drop_zero_experts(out)
        size = sum(f.stat().st_size for f in out.glob("*.safetensors"))
        print(f"[llmc] {name} {scheme}: OK {size/1e3:.0f} kB ({time.time()-t0:.1f}s)", flush=True)
    except Exception as e:
        import traceback

        traceback.print_exc()
        print(f"[llmc] {name} {scheme}: FAILED {type(e).__name__}: {str(e)[:300]}", flush=True)


def add_mtp_layer(out):
    """DeepSeek-V3's MTP layer as the official checkpoints carry it: model.layers.<L> (L =
    num_hidden_layers) = a full decoder layer (copied from the last one, quantized tensors and
    scales included) + enorm, hnorm, eh_proj, shared_head.{norm,head}, embed_tokens; config
    num_nextn_predict_layers = 1. vLLM's main model skips these tensors."""
    import torch
    from safetensors.torch import load_file, save_file

    cfgp = out / "config.json"
    cfg = json.loads(cfgp.read_text())
    L = cfg["num_hidden_layers"]
    H = cfg["hidden_size"]
    files = sorted(out.glob("*.safetensors"))
    assert len(files) == 1, files
    t = load_file(str(files[0]))
    src = f"model.layers.{L - 1}."
    dst = f"model.layers.{L}."
    for k in [k for k in t if k.startswith(src)]:
        t[dst + k[len(src):]] = t[k].clone()
    g = torch.Generator().manual_seed(SEED)
    t[dst + "enorm.weight"] = torch.ones(H, dtype=torch.bfloat16)
    t[dst + "hnorm.weight"] = torch.ones(H, dtype=torch.bfloat16)
    t[dst + "eh_proj.weight"] = (torch.randn(H, 2 * H, generator=g) * 0.02).bfloat16()
    t[dst + "shared_head.norm.weight"] = torch.ones(H, dtype=torch.bfloat16)
    t[dst + "shared_head.head.weight"] = t["lm_head.weight"].clone()
    t[dst + "embed_tokens.weight"] = t["model.embed_tokens.weight"].clone()
    save_file(t, str(files[0]), metadata={"format": "pt"})
    cfg["num_nextn_predict_layers"] = 1
    cfgp.write_text(json.dumps(cfg, indent=2) + "\n")


def kimi_official_names(out):
    """transformers 5.17 saves Kimi-K2.5 with `language_model.model.blocks.N` and
    `model.mm_projector.*`, `vision_tower.encoder.patch_embed.*` and the architecture `Kimi_K25ForConditionalGeneration`; the
    official checkpoint (and vLLM's kimi_k25.py) use `language_model.model.layers.N`,
    `mm_projector.*`, `vision_tower.patch_embed.*` and `KimiK25ForConditionalGeneration`. Rename by hand."""
    from safetensors.torch import load_file, save_file

    cfgp = out / "config.json"
    cfg = json.loads(cfgp.read_text())
    cfg["architectures"] = ["KimiK25ForConditionalGeneration"]
    cfgp.write_text(json.dumps(cfg, indent=2) + "\n")
    (f,) = sorted(out.glob("*.safetensors"))
    t = load_file(str(f))
    ren = {}
    for k, v in t.items():
        k2 = k.replace("language_model.model.blocks.", "language_model.model.layers.", 1)
        k2 = k2.replace("vision_tower.encoder.patch_embed.", "vision_tower.patch_embed.", 1)
        if k2.startswith("model.mm_projector."):
            k2 = k2[len("model."):]
        ren[k2] = v
    save_file(ren, str(f), metadata={"format": "pt"})


def longcat_drop_zero_experts(out):
    """transformers 5.17 saves LongCat's fused experts split into n_routed_experts +
    zero_expert_num per-expert entries (experts.4.gate_proj/up_proj here); the zero (identity)
    experts have no weights in the official checkpoint and vLLM has no parameter for them
    (KeyError). Drop them by hand."""
    import re

    from safetensors.torch import load_file, save_file

    n = json.loads((out / "config.json").read_text())["n_routed_experts"]
    (f,) = sorted(out.glob("*.safetensors"))
    t = load_file(str(f))
    keep = {k: v for k, v in t.items()
            if not ((m := re.search(r"\.experts\.(\d+)\.", k)) and int(m.group(1)) >= n)}
    save_file(keep, str(f), metadata={"format": "pt"})


def hand_step3(out):
    """Step3TextForCausalLM (vLLM step3_text.py; transformers has no such model): config.json
    and safetensors written by hand with the names vLLM's loader reads (q_proj/k_proj/v_proj
    copied into a ReplicatedLinear qkv_proj, inter_norm + wq, `moe.{gate,up,down}_proj` packed
    3-D experts, `moe.gate` router, `share_expert`). Linear layers are static per-tensor FP8
    in the compressed-tensors layout llm-compressor writes (weight F8_E4M3 + weight_scale [1]
    + input_scale [1], float32); router and packed experts stay BF16 (ignored)."""
    import torch
    from safetensors.torch import save_file

    H, V_, E, D = 64, V, 4, 32
    cfg = {"architectures": ["Step3TextForCausalLM"], "model_type": "step3_text",
           "hidden_size": H, "intermediate_size": H, "num_attention_heads": 2,
           "num_attention_groups": 1, "num_hidden_layers": 2, "max_seq_len": 256,
           "vocab_size": V_, "rms_norm_eps": 1e-5, "moe_intermediate_size": H,
           "moe_num_experts": E, "moe_top_k": 2, "max_position_embedding": 256,
           "share_expert_dim": H, "share_q_dim": H, "head_dim": D, "norm_expert_weight": False,
           "moe_layers_enum": "1", "torch_dtype": "bfloat16", "tie_word_embeddings": False,
           "rope_parameters": {"rope_type": "default", "rope_theta": 500000.0},
           "quantization_config": {
               "quant_method": "compressed-tensors", "format": "float-quantized",
               "quantization_status": "compressed", "version": "0.19.0",
               "ignore": ["lm_head", "re:.*moe\\.gate$", "re:.*moe\\.experts.*"],
               "config_groups": {"group_0": {
                   "targets": ["Linear"], "format": "float-quantized",
                   "weights": {"num_bits": 8, "type": "float", "strategy": "tensor",
                               "dynamic": False, "symmetric": True},
                   "input_activations": {"num_bits": 8, "type": "float",
                                         "strategy": "tensor", "dynamic": False,
                                         "symmetric": True}}}}}
    g = torch.Generator().manual_seed(SEED)
    t = {}

    def bf(*shape):
        return (torch.randn(*shape, generator=g) * 0.02).bfloat16()

    def fp8(name, rows, cols):
        w = torch.randn(rows, cols, generator=g) * 0.02
        s = w.abs().max() / 448.0
        t[f"{name}.weight"] = (w / s).to(torch.float8_e4m3fn)
        t[f"{name}.weight_scale"] = s.reshape(1).float()
        t[f"{name}.input_scale"] = torch.tensor([0.01 + 0.001 * len(t)], dtype=torch.float32)

    t["model.embed_tokens.weight"] = bf(V_, H)
    t["model.norm.weight"] = torch.ones(H, dtype=torch.bfloat16)
    t["lm_head.weight"] = bf(V_, H)
    for L in range(2):
        p = f"model.layers.{L}."
        t[p + "input_layernorm.weight"] = torch.ones(H, dtype=torch.bfloat16)
        t[p + "post_attention_layernorm.weight"] = torch.ones(H, dtype=torch.bfloat16)
        fp8(p + "self_attn.q_proj", H, H)
        fp8(p + "self_attn.k_proj", D, H)
        fp8(p + "self_attn.v_proj", D, H)
        t[p + "self_attn.inter_norm.weight"] = torch.ones(H, dtype=torch.bfloat16)
        fp8(p + "self_attn.wq", 2 * D, H)
        fp8(p + "self_attn.o_proj", H, 2 * D)
        mlp = "mlp" if L == 0 else "share_expert"
        fp8(p + f"{mlp}.gate_proj", H, H)
        fp8(p + f"{mlp}.up_proj", H, H)
        fp8(p + f"{mlp}.down_proj", H, H)
        if L == 1:
            t[p + "moe.gate.weight"] = bf(E, H)
            t[p + "moe.gate_proj.weight"] = bf(E, H, H)
            t[p + "moe.up_proj.weight"] = bf(E, H, H)
            t[p + "moe.down_proj.weight"] = bf(E, H, H)
    out.mkdir(parents=True, exist_ok=True)
    save_file(t, str(out / "model.safetensors"), metadata={"format": "pt"})
    (out / "config.json").write_text(json.dumps(cfg, indent=2) + "\n")
    print(f"[hand] step3_text-FP8 -> {out}")


KEEP = ("config.json", "recipe.yaml")


def run_fixtures(sel=None):
    total = 0
    for name, scheme in jobs(sel):
        src = ROOT / "llmc" / f"{name}-{scheme}"
        if not (src / "config.json").exists():
            print(f"[fixtures] MISSING {src}")
            continue
        dst = FIXTURE_DIR / f"llmc-{name}-{scheme}"
        if dst.exists():
            shutil.rmtree(dst)
        dst.mkdir(parents=True)
        for f in sorted(src.iterdir()):
            if f.name in KEEP or f.name.endswith((".safetensors", ".safetensors.index.json")):
                shutil.copy2(f, dst / f.name)
        size = sum(f.stat().st_size for f in dst.iterdir())
        total += size
        print(f"[fixtures] {dst.name:40s} {size/1e3:7.0f} kB")
    for src in sorted((ROOT / "hand").glob("*")):  # hand-written (see hand_step3)
        dst = FIXTURE_DIR / f"hand-{src.name}"
        if dst.exists():
            shutil.rmtree(dst)
        shutil.copytree(src, dst)
        total += sum(f.stat().st_size for f in dst.iterdir())
        print(f"[fixtures] {dst.name:40s}")
    print(f"[fixtures] total {total/1e6:.2f} MB")


def main():
    cmd, args = sys.argv[1], sys.argv[2:]
    if cmd == "base":
        return build_base(args or None)
    if cmd == "llmc":
        return run_llmc(args or None)
    if cmd == "llmc1":
        return run_llmc1(*args)
    if cmd == "fixtures":
        return run_fixtures(args or None)
    if cmd == "hand":
        return hand_step3(ROOT / "hand" / "step3_text-FP8")
    if cmd == "list":
        for j in jobs():
            print(*j)
        return None
    sys.exit(f"unknown command {cmd}")


if __name__ == "__main__":
    main()
