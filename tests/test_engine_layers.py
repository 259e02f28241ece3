"""Modules the engine builds unquantized whatever the config's targets say, each with the
false error it removed and a near miss that must still be reported.

- ``lm_head`` and DeepSeek's MTP ``shared_head.head`` (``ParallelLMHead``) under
  ``quant_method: fp8`` and ``quark``, under a compressed-tensors ``Linear`` class target, and
  under a method the engine release does not apply to heads (rules/_structure.py,
  ``head_built_unquantized``: resolution keeps the config's scheme, which tells how a quantized
  head was written);
- DeepSeek's MTP ``eh_proj`` (a torch ``nn.Linear``): resolved unquantized
  (formats/_layers.py); Kimi-K2.5's vision tower, projector and routers (built without the
  quant config): resolved unquantized from the engine catalogue's family.
"""

from __future__ import annotations

import torch
from builders import CT_IGNORE, qwen3_5_moe
from replicas import build, replace_module
from rules.helpers import run

from qscale import CheckOptions, Finding, check, read_checkpoint, rules

ENGINE = "vllm==0.33.0"


def findings(path, *codes: str) -> list[Finding]:
    # the deep scan of scale values feeds QS303 alone: when the rules asked for do not read
    # it, it is skipped (on Kimi-K2.5 it reads ~1 GB of INT4 group-scale holes for nothing)
    header_only = bool(codes) and not any(rules.BY_CODE[c].reads_scan for c in codes)
    report = check(read_checkpoint(path, header_only=header_only),
                   CheckOptions(engine=ENGINE, select=list(codes)))
    assert not report.crashed, report.crashed
    return list(report.findings)


def errors(path) -> list[Finding]:
    return [f for f in findings(path) if f.severity.label == "error"]


# --------------------------------------------------------------------------- fp8: lm_head


def test_fp8_bf16_head_without_modules_to_not_convert(tmp_path):
    # Qwen3-32B-FP8 has no modules_to_not_convert; its BF16 head is what vLLM's Fp8Config
    # builds (a ParallelLMHead gets no quant method)
    assert findings(build("qwen3-32b-fp8", tmp_path), "QS202", "QS206") == []


def test_near_miss_fp8_head_stored_quantized(tmp_path):
    def fp8_head(lay, config, extra):
        replace_module(lay, "lm_head", [("lm_head.weight", "F8_E4M3", (151936, 5120)),
                                        ("lm_head.weight_scale_inv", "BF16", (1187, 40))])

    # one finding, with its fix (the head keeps its scheme: QS203 has nothing to add)
    [f] = findings(build("qwen3-32b-fp8", tmp_path, edit=fp8_head), "QS206", "QS203", "QS202")
    assert f.code == "QS206" and f.location.tensor.startswith("lm_head.")
    assert "stored quantized (weight F8_E4M3, weight_scale_inv)" in f.message
    assert "builds it unquantized for fp8 checkpoints" in f.message


def test_fp8_bf16_head_on_sglang(tmp_path):
    # SGLang's profile does not model heads, but no engine's Fp8Config quantizes one
    path = build("qwen3-32b-fp8", tmp_path)
    report = check(read_checkpoint(path), CheckOptions(engine="sglang==0.5.23", select=["QS202"]))
    assert report.findings == ()


def test_near_miss_fp8_bf16_linear_still_reported(tmp_path):
    def bf16_down(lay, config, extra):
        m = "model.layers.0.mlp.down_proj"
        replace_module(lay, m, [(f"{m}.weight", "BF16", (5120, 25600))])

    [f] = findings(build("qwen3-32b-fp8", tmp_path, edit=bf16_down), "QS202")
    assert f.location.tensor == "model.layers.0.mlp.down_proj.weight"


# --------------------------------------------------------------------------- DeepSeek MTP


def test_deepseek_mtp_eh_proj_and_shared_head_are_bf16(tmp_path):
    # DeepSeek-R1 cut to 4 layers: its MTP layer is model.layers.4
    assert errors(build("deepseek-r1", tmp_path, layers=4)) == []


def test_near_miss_mtp_block_linear_stored_bf16(tmp_path):
    m = "model.layers.4.self_attn.o_proj"

    def bf16_o(lay, config, extra):
        replace_module(lay, m, [(f"{m}.weight", "BF16", (7168, 16384))])

    got = findings(build("deepseek-r1", tmp_path, layers=4, edit=bf16_o), "QS202", "QS207")
    assert [f.location.tensor for f in got] == [f"{m}.weight"]  # QS207's once MTP is skipped


def test_near_miss_eh_proj_stored_quantized(tmp_path):
    m = "model.layers.4.eh_proj"

    def fp8_eh(lay, config, extra):
        replace_module(lay, m, [(f"{m}.weight", "F8_E4M3", (7168, 14336)),
                                (f"{m}.weight_scale_inv", "F32", (56, 112))])

    got = findings(build("deepseek-r1", tmp_path, layers=4, edit=fp8_eh))
    assert any(f.location.tensor == f"{m}.weight_scale_inv" and "nn.Linear" in f.message
               for f in got), got


def test_near_miss_mtp_head_stored_quantized(tmp_path):
    m = "model.layers.4.shared_head.head"

    def fp8_head(lay, config, extra):
        replace_module(lay, m, [(f"{m}.weight", "F8_E4M3", (129280, 7168)),
                                (f"{m}.weight_scale_inv", "F32", (1010, 56))])

    [f] = findings(build("deepseek-r1", tmp_path, layers=4, edit=fp8_head), "QS202", "QS207")
    assert f.code == "QS207" and f.location.tensor.startswith(m)
    assert "builds this head (a ParallelLMHead) unquantized" in f.message


# --------------------------------------------------------------------------- compressed-tensors


def test_ct_bf16_head_under_a_linear_class_target(tmp_path):
    # `lm_head` missing from the ignore list: the `Linear` target does not cover the head
    built = qwen3_5_moe("ct-fp8", ignore=[i for i in CT_IGNORE if i != "lm_head"])
    assert run(built, tmp_path, "QS202") == []


def _named_head():
    return qwen3_5_moe("ct-fp8", ignore=[i for i in CT_IGNORE if i != "lm_head"]).set_config(
        "/quantization_config/config_groups/group_0/targets", ["Linear", "lm_head"]
    )


def test_near_miss_ct_bf16_head_named_by_a_target(tmp_path):
    # from vLLM 0.20 a target that names the head builds it quantized: BF16 is an error
    [f] = findings(_named_head().write(tmp_path), "QS202")
    assert f.location.tensor == "lm_head.weight"


def test_ct_bf16_head_named_by_a_target_before_vllm_0_20(tmp_path):
    # vLLM 0.19 builds every head unquantized for compressed-tensors: BF16 is what it loads
    path = _named_head().write(tmp_path)
    report = check(read_checkpoint(path), CheckOptions(engine="vllm==0.19.1", select=["QS202"]))
    assert report.findings == ()


def test_kimi_vision_tower_projector_and_routers(tmp_path):
    got = findings(build("kimi-k2.5", tmp_path, layers=2), "QS202", "QS203", "QS206")
    assert got == []


def test_near_miss_kimi_expert_stored_bf16(tmp_path):
    m = "language_model.model.layers.1.mlp.experts.5.down_proj"

    def bf16_expert(lay, config, extra):
        replace_module(lay, m, [(f"{m}.weight", "BF16", (7168, 2048))])

    [f] = findings(build("kimi-k2.5", tmp_path, layers=2, edit=bf16_expert), "QS202")
    assert f.location.tensor == f"{m}.weight"


def test_near_miss_qwen3_5_vision_tower_is_quantized_by_the_engine(tmp_path):
    # vLLM builds Qwen3-VL's tower with the quant config: a BF16 tower must be listed
    def forget_visual(lay, config, extra):
        qc = config["quantization_config"]
        qc["modules_to_not_convert"] = [
            e for e in qc["modules_to_not_convert"] if not e.startswith("model.visual.blocks.0.")
        ]

    got = findings(build("qwen3.5-397b-a17b-fp8", tmp_path, layers=4, edit=forget_visual),
                   "QS202")
    assert {f.location.tensor for f in got} == {
        f"model.visual.blocks.0.{m}.weight"
        for m in ("attn.qkv", "attn.proj", "mlp.linear_fc1", "mlp.linear_fc2")
    }


# --------------------------------------------------------------------------- quark


def test_quark_bf16_head_not_excluded(tmp_path):
    built = qwen3_5_moe("quark-mxfp4", ignore=[i for i in CT_IGNORE if i != "lm_head"])
    assert run(built, tmp_path, "QS202") == []


def test_near_miss_quark_head_stored_quantized(tmp_path):
    built = (
        qwen3_5_moe("quark-mxfp4")
        .retype(r"^lm_head\.weight$", torch.uint8)
        .add("lm_head.weight_scale", torch.full((256, 4), 120, dtype=torch.uint8))
    )
    [f] = run(built, tmp_path, "QS206")
    assert f.location.tensor.startswith("lm_head.")
