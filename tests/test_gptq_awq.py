"""GPTQ and AWQ (vLLM 0.33 AutoGPTQConfig / AutoAWQConfig): tensors, module selection and the
configs the engine refuses, on tiny Llama checkpoints written by the builder."""

from __future__ import annotations

import subprocess

import pytest
import torch
from builders import dense
from cli_runner import cli_in_process

from qscale import CheckOptions, check, read_checkpoint, resolve_quantization
from qscale.errors import ConfigError, UnknownFormat

L1 = "model.layers.1"


def _cli(path) -> subprocess.CompletedProcess[str]:
    return cli_in_process("check", str(path))


@pytest.mark.parametrize("scheme", ["gptq", "awq"])
def test_tiny_llama_is_clean(tmp_path, scheme):
    r = _cli(dense("LlamaForCausalLM", scheme).write(tmp_path))
    assert r.returncode == 0, r.stdout + r.stderr
    assert "14/21 modules quantized" in r.stdout


@pytest.mark.parametrize("scheme", ["gptq", "awq"])
def test_missing_qzeros_names_the_module(tmp_path, scheme):
    b = dense("LlamaForCausalLM", scheme).drop(rf"{L1}\.mlp\.down_proj\.qzeros")
    r = _cli(b.write(tmp_path))
    assert r.returncode == 1
    assert f"QS201 error [missing-quantization-tensor] `{L1}.mlp.down_proj.qzeros`" in r.stdout


@pytest.mark.parametrize("scheme", ["gptq", "awq"])
def test_transposed_qweight_is_a_shape_error(tmp_path, scheme):
    b = dense("LlamaForCausalLM", scheme)
    name = f"{L1}.mlp.up_proj.qweight"
    b.tensors[name] = b.tensors[name].t().contiguous()
    ckpt = read_checkpoint(b.write(tmp_path))
    found = check(ckpt).findings
    assert found and all(f.location.tensor and "up_proj" in f.location.tensor for f in found)


def test_gptq_g_idx_is_optional(tmp_path):
    ckpt = read_checkpoint(dense("LlamaForCausalLM", "gptq").drop(r"\.g_idx$").write(tmp_path))
    assert check(ckpt).findings == ()


def test_awq_stray_g_idx_is_unexpected(tmp_path):
    b = dense("LlamaForCausalLM", "awq").add(f"{L1}.mlp.up_proj.g_idx",
                                             torch.zeros(128, dtype=torch.int32))
    codes = {f.code for f in check(read_checkpoint(b.write(tmp_path))).findings}
    assert codes == {"QS203"}


def test_desc_act_with_groups_is_refused(tmp_path):
    b = dense("LlamaForCausalLM", "gptq").set_config("/quantization_config/desc_act", True)
    r = _cli(b.write(tmp_path))
    assert r.returncode == 2
    assert "desc_act=true" in r.stdout + r.stderr and "Traceback" not in r.stderr


def test_desc_act_with_groups_builds_before_vllm_0_30(tmp_path):
    # near miss: the refusal came with vLLM 0.30.0 (gptq_utils); 0.29.0 builds group act order
    b = dense("LlamaForCausalLM", "gptq").set_config("/quantization_config/desc_act", True)
    ckpt = read_checkpoint(b.write(tmp_path))
    assert check(ckpt, CheckOptions(engine="vllm==0.29.0")).findings == ()
    with pytest.raises(ConfigError, match="desc_act=true"):
        check(ckpt, CheckOptions(engine="vllm==0.30.0"))


def test_desc_act_channelwise_is_accepted(tmp_path):
    # near miss: with group_size -1 vLLM turns act-order off (a no-op per channel)
    b = dense("LlamaForCausalLM", "gptq").set_config("/quantization_config/desc_act", True)
    b.set_config("/quantization_config/group_size", -1)
    for n in list(b.tensors):
        if n.endswith((".qzeros", ".scales")):
            b.reshape(n, (1, b.tensors[n].shape[1]))
    assert check(read_checkpoint(b.write(tmp_path))).findings == ()


@pytest.mark.parametrize(("key", "value"), [("sym", False), ("bits", 3)])
def test_gptq_types_vllm_does_not_build(tmp_path, key, value):
    b = dense("LlamaForCausalLM", "gptq").set_config(f"/quantization_config/{key}", value)
    r = _cli(b.write(tmp_path))
    assert r.returncode == 2
    assert "bits 4 or 8 and sym=true" in r.stdout + r.stderr


def test_dynamic_negative_rule_leaves_module_unquantized(tmp_path):
    b = dense("LlamaForCausalLM", "gptq").set_config(
        "/quantization_config/dynamic", {r"-:.*\.1\.mlp\.down_proj": {}})
    q = resolve_quantization(read_checkpoint(b.write(tmp_path)))
    assert q.modules[f"{L1}.mlp.down_proj"].scheme is None
    assert "dynamic" in q.modules[f"{L1}.mlp.down_proj"].resolution.reason
    assert q.modules["model.layers.0.mlp.down_proj"].scheme is not None


def test_dynamic_positive_rule_overrides_group_size(tmp_path):
    b = dense("LlamaForCausalLM", "gptq").set_config(
        "/quantization_config/dynamic", {r"+:.*\.1\.mlp\.down_proj": {"group_size": 64}})
    ckpt = read_checkpoint(b.write(tmp_path))
    scheme = resolve_quantization(ckpt).modules[f"{L1}.mlp.down_proj"].scheme
    assert scheme is not None and scheme.weights.group_size == 64
    # the stored scales have 1 group (g128), the rule wants 2: a shape error on that module
    # (and QS304: its g_idx, written for g128, is not the g64 grouping the engine uses)
    found = check(ckpt).findings
    assert found and {f.location.tensor for f in found} <= {
        f"{L1}.mlp.down_proj.qzeros", f"{L1}.mlp.down_proj.scales", f"{L1}.mlp.down_proj.g_idx"}


def test_lm_head_flag(tmp_path):
    b = dense("LlamaForCausalLM", "gptq")
    q = resolve_quantization(read_checkpoint(b.write(tmp_path, name="a")))
    assert q.modules["lm_head"].scheme is None
    b.set_config("/quantization_config/lm_head", True)
    q = resolve_quantization(read_checkpoint(b.write(tmp_path, name="b")))
    assert q.modules["lm_head"].scheme is None  # stored BF16: the metadata fallback


def test_modules_in_block_to_quantize_substring(tmp_path):
    b = dense("LlamaForCausalLM", "gptq").set_config(
        "/quantization_config/modules_in_block_to_quantize",
        [["self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj"], ["self_attn.o_proj"]])
    q = resolve_quantization(read_checkpoint(b.write(tmp_path)))
    assert q.modules[f"{L1}.self_attn.o_proj"].scheme is not None
    assert q.modules[f"{L1}.mlp.up_proj"].scheme is None


def test_awq_modules_to_not_convert(tmp_path):
    b = dense("LlamaForCausalLM", "awq").set_config(
        "/quantization_config/modules_to_not_convert", ["mlp.down_proj"])
    q = resolve_quantization(read_checkpoint(b.write(tmp_path)))
    assert q.modules[f"{L1}.mlp.down_proj"].scheme is None
    assert q.modules[f"{L1}.mlp.up_proj"].scheme is not None


def test_awq_8bit_is_refused(tmp_path):
    b = dense("LlamaForCausalLM", "awq").set_config("/quantization_config/bits", 8)
    r = _cli(b.write(tmp_path))
    assert r.returncode == 2 and "only with 4 bits" in r.stdout + r.stderr


@pytest.mark.parametrize(("method", "who"), [
    ("humming", "known to vLLM 0.33"),
    ("gguf", "known to SGLang"), ("made_up_q", "unknown to vLLM 0.33 and SGLang")])
def test_not_modelled_methods_say_who_knows_them(tmp_path, method, who):
    b = dense("LlamaForCausalLM", "gptq").set_config("/quantization_config/quant_method", method)
    r = _cli(b.write(tmp_path))
    assert r.returncode == 2
    assert f"quant_method {method!r} is {who}" in r.stdout + r.stderr


def _auto_round(scheme: str, packing: str):
    b = dense("LlamaForCausalLM", scheme)
    b.config["quantization_config"] = {
        "quant_method": "auto-round", "bits": 4, "group_size": 128, "sym": True,
        "data_type": "int", "packing_format": packing, "autoround_version": "0.9.0"}
    return b


@pytest.mark.parametrize(("scheme", "packing"), [
    ("gptq", "auto_round:auto_gptq"), ("awq", "auto_round:auto_awq")])
def test_auto_round_int_is_clean_and_checked(tmp_path, scheme, packing):
    r = _cli(_auto_round(scheme, packing).write(tmp_path, name="ok"))
    assert r.returncode == 0, r.stdout + r.stderr
    bad = _auto_round(scheme, packing).drop(rf"{L1}\.self_attn\.o_proj\.qzeros")
    r = _cli(bad.write(tmp_path, name="bad"))
    assert r.returncode == 1 and f"`{L1}.self_attn.o_proj.qzeros` is missing" in r.stdout


def test_auto_round_wrong_packing_is_a_shape_error(tmp_path):
    # near miss: AWQ-packed tensors under the default (GPTQ) packing_format
    b = _auto_round("awq", "auto_round:auto_gptq")
    assert check(read_checkpoint(b.write(tmp_path))).findings


def test_auto_round_extra_config(tmp_path):
    b = _auto_round("gptq", "auto_round:auto_gptq")
    b.config["quantization_config"]["extra_config"] = {
        f"{L1}.mlp.down_proj": {"bits": 16}, "lm_head": {"bits": 4}}
    q = resolve_quantization(read_checkpoint(b.write(tmp_path)))
    assert q.modules[f"{L1}.mlp.down_proj"].scheme is None
    assert q.modules["lm_head"].scheme is not None  # named by extra_config
    assert q.modules["model.layers.0.mlp.down_proj"].scheme is not None


def test_auto_round_block_names(tmp_path):
    b = _auto_round("gptq", "auto_round:auto_gptq")
    b.config["quantization_config"]["to_quant_block_names"] = "model.layers.0"
    q = resolve_quantization(read_checkpoint(b.write(tmp_path)))
    assert q.modules["model.layers.0.mlp.up_proj"].scheme is not None
    assert q.modules[f"{L1}.mlp.up_proj"].scheme is None


def test_gptq_group_size_marlin_lacks_is_refused(tmp_path):
    b = dense("LlamaForCausalLM", "gptq").set_config("/quantization_config/group_size", 256)
    r = _cli(b.write(tmp_path))
    assert r.returncode == 2 and "Marlin does not support group_size = 256" in r.stdout + r.stderr


def test_gptq_group_straddling_tp_ranks(tmp_path):
    # o_proj / down_proj take 128 inputs: 64 per rank at TP=2 cuts a 128-group (TP=1: clean)
    path = dense("LlamaForCausalLM", "gptq").write(tmp_path)
    r = cli_in_process("check", str(path), "--tp", "2")
    assert r.returncode == 1
    assert "QS505" in r.stdout and "GPTQ int4 g128 group size 128" in r.stdout


# --- start-up refusals by release (qscale/engines/wna16.py, read from the vLLM wheels)

def _cli_at(path, engine: str) -> subprocess.CompletedProcess[str]:
    return cli_in_process("check", str(path), "--engine", engine)


def test_asymmetric_gptq_builds_through_the_exllama_kernel_before_0_22(tmp_path):
    # vLLM 0.21 keeps `gptq` (GPTQConfig, gptq.py) when the config is not Marlin-compatible;
    # 0.22 serves every GPTQ config through AutoGPTQConfig (Marlin types only)
    path = dense("LlamaForCausalLM", "gptq").set_config("/quantization_config/sym", False).write(
        tmp_path)
    r = _cli_at(path, "vllm==0.21.0")
    assert r.returncode == 0, r.stdout + r.stderr
    r = _cli_at(path, "vllm==0.22.0")
    assert r.returncode == 2
    assert "vllm==0.22.0 builds GPTQ only with bits 4 or 8 and sym=true" in r.stdout + r.stderr
    assert "deploy on vLLM <= 0.21" in r.stdout + r.stderr


def test_three_bit_gptq_is_not_modelled_where_vllm_builds_it(tmp_path):
    path = dense("LlamaForCausalLM", "gptq").set_config("/quantization_config/bits", 3).write(
        tmp_path)
    ckpt = read_checkpoint(path)
    with pytest.raises(UnknownFormat, match="does not model 3-bit packing"):
        resolve_quantization(ckpt, "vllm==0.18.0")
    with pytest.raises(ConfigError, match="bits 4 or 8 and sym=true, got bits=3"):
        resolve_quantization(ckpt, "vllm==0.24.0")
    assert _cli_at(path, "vllm==0.20.0").returncode == 2


def test_group_size_outside_marlin_by_release(tmp_path):
    b = dense("LlamaForCausalLM", "gptq").set_config("/quantization_config/group_size", 256)
    ckpt = read_checkpoint(b.write(tmp_path))
    resolve_quantization(ckpt, "vllm==0.21.0")  # built by GPTQConfig: no refusal
    for v in ("0.22.0", "0.29.0", "0.33.0"):
        with pytest.raises(ConfigError, match="Marlin does not support group_size = 256"):
            resolve_quantization(ckpt, f"vllm=={v}")


def test_dynamic_desc_act_is_refused_from_0_30(tmp_path):
    b = dense("LlamaForCausalLM", "gptq").set_config(
        "/quantization_config/dynamic", {r"+:.*\.1\.mlp\..*": {"desc_act": True}})
    ckpt = read_checkpoint(b.write(tmp_path))
    with pytest.raises(ConfigError, match=r"dynamic rule `\+:.*` enables desc_act"):
        resolve_quantization(ckpt, "vllm==0.30.0")
    resolve_quantization(ckpt, "vllm==0.29.0")  # near miss: act order still built


@pytest.mark.parametrize("engine", ["vllm==0.18.0", "vllm==0.24.0", "vllm==0.33.0"])
def test_awq_bits_other_than_4_are_refused_in_every_release(tmp_path, engine):
    b = dense("LlamaForCausalLM", "awq").set_config("/quantization_config/bits", 8)
    with pytest.raises(ConfigError, match=f"{engine} builds AWQ only with 4 bits, got 8"):
        resolve_quantization(read_checkpoint(b.write(tmp_path)), engine)


def test_every_format_answers_refusal(tmp_path):
    # the protocol method, not getattr: a format without refusals returns None
    for scheme in ("ct-fp8", "gptq"):
        ckpt = read_checkpoint(dense("LlamaForCausalLM", scheme).write(tmp_path, name=scheme))
        fmt = resolve_quantization(ckpt).format
        assert fmt is not None and fmt.refusal(None) is None


# --- AutoRound (vLLM INCConfig) by release, on CUDA

def _ar(tmp_path, name: str, **qc):
    b = _auto_round("gptq", "auto_round:auto_gptq")
    b.config["quantization_config"].update(qc)
    return read_checkpoint(b.write(tmp_path, name=name))


def test_auto_round_odd_bits_by_release(tmp_path):
    ckpt = _ar(tmp_path, "b5", bits=5)
    with pytest.raises(ConfigError, match=r"vllm==0\.29\.0 refuses auto-round bits 5"):
        resolve_quantization(ckpt, "vllm==0.29.0")
    with pytest.raises(UnknownFormat, match="through the Humming kernels"):
        resolve_quantization(ckpt, "vllm==0.30.0")


def test_auto_round_asymmetric_int4_by_release(tmp_path):
    ckpt = _ar(tmp_path, "asym", sym=False)
    resolve_quantization(ckpt, "vllm==0.21.0")  # GPTQConfig builds it
    with pytest.raises(ConfigError, match="Only 4-bit and 8-bit symmetric"):
        resolve_quantization(ckpt, "vllm==0.24.0")
    with pytest.raises(ConfigError, match="Only 4-bit and 8-bit symmetric"):
        resolve_quantization(ckpt, "vllm==0.33.0")


@pytest.mark.parametrize(("qc", "engine", "error", "match"), [
    ({"data_type": "mx_fp", "bits": 4, "group_size": 32}, "vllm==0.24.0", ConfigError,
     "refuses auto-round data_type 'mx_fp'"),
    ({"data_type": "mx_fp", "bits": 4, "group_size": 128}, "vllm==0.33.0", ConfigError,
     "INC MXFP needs group_size 32, got 128"),
    ({"data_type": "mx_fp", "bits": 4, "group_size": 32}, "vllm==0.33.0", UnknownFormat,
     "not modelled by qscale"),
    ({"data_type": "fp", "bits": 8, "group_size": [128, 128], "packing_format": "auto_round:fp8"},
     "vllm==0.33.0", UnknownFormat, "not modelled by qscale"),
    ({"data_type": "fp", "bits": 8, "group_size": 128}, "vllm==0.33.0", ConfigError,
     "INC block-wise FP8 needs group_size a 2-D block"),
])
def test_auto_round_float_data_types(tmp_path, qc, engine, error, match):
    b = _auto_round("gptq", "auto_round:auto_gptq")
    b.config["quantization_config"].update(qc)
    if "packing_format" not in qc:
        del b.config["quantization_config"]["packing_format"]
    with pytest.raises(error, match=match):
        resolve_quantization(read_checkpoint(b.write(tmp_path)), engine)


# --- SGLang (read in its 0.5.23 wheel: qscale/engines/wna16.py SGLANG)

def test_sglang_builds_what_vllm_0_33_refuses(tmp_path):
    # GPTQConfig fallback for asymmetric GPTQ, act order with groups, AWQ Marlin 8-bit
    for name, scheme, key, value in (("asym", "gptq", "sym", False),
                                     ("act", "gptq", "desc_act", True),
                                     ("awq8", "awq", "bits", 8)):
        b = dense("LlamaForCausalLM", scheme).set_config(f"/quantization_config/{key}", value)
        ckpt = read_checkpoint(b.write(tmp_path, name=name))
        resolve_quantization(ckpt, "sglang==0.5.23")
        with pytest.raises(ConfigError):
            resolve_quantization(ckpt, "vllm==0.33.0")


def test_sglang_refuses_awq_8bit_outside_marlin_groups(tmp_path):
    b = dense("LlamaForCausalLM", "awq").set_config("/quantization_config/bits", 8)
    b.set_config("/quantization_config/group_size", 256)
    with pytest.raises(ConfigError, match="builds AWQ only with 4 or 8 bits"):
        resolve_quantization(read_checkpoint(b.write(tmp_path)), "sglang==0.5.23")
