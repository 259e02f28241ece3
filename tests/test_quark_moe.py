"""Quark routed experts (vLLM ``quark/quark_moe.py``: INT8, NVFP4, W4A16 INT4 and FP8
per-block MoE methods) and Quark FP8 per-block Linear layers, per vLLM release, on builder
checkpoints (2-layer Qwen3-MoE, 4 experts stored per expert as Quark exports them)."""

from __future__ import annotations

import re
import subprocess

import pytest
import torch
from builders import _quark_spec, dense, qwen3_5_moe, qwen3_moe
from cli_runner import cli_in_process

from qscale.formats.quark import FP8_BLOCK_FACT, MOE_FACTS

EXPERT = "model.layers.1.mlp.experts.2"
GLOBAL = "/quantization_config/global_quant_config"
QUANTIZED = "32/45 modules quantized"  # 2 x (4 attention + 4 experts x 3)


def _cli(path, *args: str) -> subprocess.CompletedProcess[str]:
    return cli_in_process("check", str(path), *args)


def _out(r: subprocess.CompletedProcess[str]) -> str:
    return r.stdout + r.stderr


@pytest.mark.parametrize(("scheme", "engine"), [
    ("quark-int8", "vllm==0.33.0"), ("quark-int8", "vllm==0.26.0"), ("quark-int8", "vllm==0.20.0"),
    ("quark-nvfp4", "vllm==0.33.0"), ("quark-nvfp4", "vllm==0.26.0"),
    ("quark-nvfp4", "vllm==0.22.0"),
    ("quark-int4", "vllm==0.33.0"), ("quark-int4", "vllm==0.31.0"),
    ("quark-fp8-block", "vllm==0.33.0"), ("quark-fp8-block", "vllm==0.30.0"),
])
def test_clean_quark_moe_exits_0(tmp_path, scheme, engine):
    r = _cli(qwen3_moe(scheme).write(tmp_path), "--engine", engine)
    assert r.returncode == 0, _out(r)
    assert QUANTIZED in r.stdout


@pytest.mark.parametrize("scheme", ["quark-int8", "quark-nvfp4", "quark-int4",
                                    "quark-fp8-block"])
def test_clean_quark_moe_with_shared_expert_exits_0(tmp_path, scheme):
    r = _cli(qwen3_5_moe(scheme).write(tmp_path))
    assert r.returncode == 0, _out(r)


@pytest.mark.parametrize("scheme", ["quark-int8", "quark-nvfp4", "quark-int4",
                                    "quark-fp8-block"])
def test_one_expert_without_weight_scale_names_it(tmp_path, scheme):
    b = qwen3_moe(scheme).drop(rf"^{re.escape(EXPERT)}\.down_proj\.weight_scale$")
    r = _cli(b.write(tmp_path))
    assert r.returncode == 1, _out(r)
    assert (f"QS201 error [missing-quantization-tensor] `{EXPERT}.down_proj.weight_scale`"
            in r.stdout)
    assert r.stdout.count("QS201 error") == 1  # the other experts are complete


@pytest.mark.parametrize(("scheme", "param", "dtype"), [
    ("quark-int8", "weight", torch.bfloat16),
    ("quark-int8", "weight_scale", torch.int8),
    ("quark-nvfp4", "weight_scale", torch.bfloat16),
    ("quark-int4", "weight", torch.bfloat16),
    ("quark-fp8-block", "weight", torch.bfloat16),
])
def test_expert_tensor_of_wrong_dtype_is_an_error(tmp_path, scheme, param, dtype):
    b = qwen3_moe(scheme).retype(rf"^{re.escape(EXPERT)}\.up_proj\.{param}$", dtype)
    r = _cli(b.write(tmp_path))
    assert r.returncode == 1, _out(r)
    assert f"`{EXPERT}.up_proj.{param}`" in r.stdout and " error " in r.stdout


def test_int8_expert_scale_is_one_dimensional(tmp_path):
    """vLLM loads a dense per-channel INT8 scale as [out] or [out, 1] (from 0.22), but the
    MoE method copies it into a 1-D [rows] slot: [out, 1] fails for the experts only."""
    b = qwen3_moe("quark-int8")
    for name in [n for n in b.tensors if n.endswith(".weight_scale")]:
        b.tensors[name] = b.tensors[name].unsqueeze(-1).contiguous()
    r = _cli(b.write(tmp_path))
    assert r.returncode == 1, _out(r)
    assert "24 error, 0 warning" in r.stdout  # 2 layers x 4 experts x 3, no attention layer
    first = "model.layers.0.mlp.experts.0.down_proj"
    assert f"QS302 error [tensor-shape-mismatch] `{first}.weight_scale` has shape (256, 1)," \
        " expected (256,)" in r.stdout


@pytest.mark.parametrize(("scheme", "param", "shape"), [
    ("quark-nvfp4", "weight_scale", (256, 8)),  # [out, in/16] is (256, 16)
    ("quark-int4", "weight_scale", (2, 264)),  # [in/128, out]; the dense padded width
    ("quark-fp8-block", "weight_scale", (2, 1)),  # one per 128x128 tile: (2, 2)
])
def test_expert_tensor_of_wrong_shape_is_an_error(tmp_path, scheme, param, shape):
    name = f"{EXPERT}.gate_proj.{param}"
    r = _cli(qwen3_moe(scheme).reshape(name, shape).write(tmp_path))
    assert r.returncode == 1, _out(r)
    assert "QS302 error" in r.stdout and f"`{name}` has shape {shape}" in r.stdout


def test_int8_experts_before_0_20_are_refused(tmp_path):
    """vLLM 0.18.0 builds Quark INT8 Linear layers, not INT8 experts."""
    r = _cli(qwen3_moe("quark-int8").write(tmp_path), "--engine", "vllm==0.18.0")
    assert r.returncode == 2
    assert "QS101" in _out(r) and "MoE experts" in _out(r)
    assert "Unsupported FusedMoe scheme" in _out(r)
    dense_only = dense("LlamaForCausalLM", "quark-int8").write(tmp_path / "dense")
    assert _cli(dense_only, "--engine", "vllm==0.18.0").returncode == 0


@pytest.mark.parametrize("engine", ["vllm==0.29.0", "vllm==0.28.0"])
def test_fp8_block_experts_before_0_30_are_refused(tmp_path, engine):
    r = _cli(qwen3_moe("quark-fp8-block").write(tmp_path), "--engine", engine)
    assert r.returncode == 2
    assert "QS101" in _out(r) and "only per-tensor and per-channel" in _out(r)


@pytest.mark.parametrize("engine", ["vllm==0.33.0", "vllm==0.30.0"])
def test_fp8_block_linear_from_0_30(tmp_path, engine):
    """The Linear layers are built per block, with vLLM's block-shape check: the builder's
    64-row k/v projections break block_n=128 in the merged qkv_proj (QS503, the only
    error)."""
    r = _cli(dense("LlamaForCausalLM", "quark-fp8-block").write(tmp_path), "--engine", engine)
    assert r.returncode == 1, _out(r)
    assert "1 error, 0 warning" in r.stdout
    assert "QS503 error [fp8-block-misaligned-partition]" in r.stdout
    assert "`model.layers.0.self_attn.qkv_proj`" in r.stdout


def _inv(b):
    for name in [n for n in b.tensors if n.endswith(".weight_scale")]:
        b.tensors[name + "_inv"] = b.tensors.pop(name)
    return b


@pytest.mark.parametrize(("engine", "stored", "read"), [
    ("vllm==0.28.0", "weight_scale", "weight_scale_inv"),
    ("vllm==0.29.0", "weight_scale", "weight_scale_inv"),
    ("vllm==0.33.0", "weight_scale_inv", "weight_scale"),
])
def test_fp8_block_scale_name_by_release(tmp_path, engine, stored, read):
    """QuarkW8A8Fp8PerBlock registers the block scale as ``weight_scale_inv`` in 0.28-0.29 and
    as Quark's ``weight_scale`` from 0.30: the other spelling is misnamed (QS209)."""
    b = qwen3_moe("quark-fp8-block").drop(r"\.mlp\.experts\.")  # experts: refused < 0.30
    b.set_config("/quantization_config/exclude", ["lm_head", "re:.*mlp\\.gate$",
                                                   "re:.*mlp\\.experts.*"])
    if stored == "weight_scale_inv":
        _inv(b)
    name = "model.layers.0.self_attn.k_proj"  # the first of the 8 attention layers
    r = _cli(b.write(tmp_path), "--engine", engine)
    assert r.returncode == 1, _out(r)
    assert "8 error, 0 warning" in r.stdout
    assert f"QS209 error [misnamed-scale-tensor] `{name}.{read}` is stored as" \
        f" `{name}.{stored}`" in r.stdout
    fixed = b if stored == "weight_scale_inv" else _inv(b)
    if stored == "weight_scale":  # the spelling the release reads: clean
        assert _cli(fixed.write(tmp_path, name="inv"), "--engine", engine).returncode == 0


@pytest.mark.parametrize("engine", ["vllm==0.27.0", "vllm==0.20.0"])
def test_fp8_block_refused_before_0_28(tmp_path, engine):
    r = _cli(dense("LlamaForCausalLM", "quark-fp8-block").write(tmp_path), "--engine", engine)
    assert r.returncode == 2
    assert "QS101" in _out(r) and "No quark compatible scheme was found" in _out(r)


@pytest.mark.parametrize("scale_type", ["float8_e8m0fnu"])
def test_fp8_block_e8m0_scales_stay_partial(tmp_path, scale_type):
    b = qwen3_moe("quark-fp8-block").set_config(f"{GLOBAL}/weight/scale_type", scale_type)
    r = _cli(b.write(tmp_path))
    assert r.returncode == 2
    assert "QS102" in _out(r) and "not modelled" in _out(r)


@pytest.mark.parametrize("symmetric", [False, None])
def test_int8_experts_with_asymmetric_activations_stay_partial(tmp_path, symmetric):
    """The MoE method drops the activation zero points and runs symmetric: not modelled.
    vLLM reads anything but ``symmetric: true`` as asymmetric."""
    spec = {**_quark_spec("int8", "per_tensor"), "symmetric": symmetric}
    r = _cli(qwen3_moe("quark-int8").set_config(f"{GLOBAL}/input_tensors", spec)
             .write(tmp_path))
    assert r.returncode == 2
    assert "QS102" in _out(r) and "zero points" in _out(r)


def test_dynamic_int8_experts(tmp_path):
    b = qwen3_moe("quark-int8").set_config(
        f"{GLOBAL}/input_tensors", _quark_spec("int8", "per_channel", dynamic=True))
    path = b.drop(r"\.input_(scale|zero_point)$").write(tmp_path)
    assert _cli(path, "--engine", "vllm==0.20.0").returncode == 0
    assert _cli(path).returncode == 0


def test_per_tensor_int8_expert_scales_fill_their_slots(tmp_path):
    """Per-tensor INT8 expert scales land in w13 [E, 2] (gate, up) and w2 [E] slots."""
    b = qwen3_moe("quark-int8").set_config(f"{GLOBAL}/weight",
                                           _quark_spec("int8", "per_tensor"))
    for name in [n for n in b.tensors if n.endswith(".weight_scale")]:
        b.tensors[name] = torch.tensor(0.5 if ".up_proj." in name else 0.25)
    path = b.write(tmp_path)
    assert _cli(path).returncode == 0
    r = cli_in_process("plan", str(path), "--engine", "vllm==0.33.0",
                       "-p", "layers.1.mlp.experts.routed_experts.w13_weight_scale")
    assert r.returncode == 0, _out(r)
    assert "slots: [0.25, 0.5, 0.25, 0.5, 0.25, 0.5, 0.25, 0.5]" in r.stdout
    assert f"<- {EXPERT}.up_proj.weight_scale shard 'w3'" in r.stdout


def test_w4a8_experts_stay_partial(tmp_path):
    """W4A8 FP8 + INT4 on the experts only (the dense layers INT8): vLLM builds those experts
    on ROCm AITER alone; not modelled, named by its expert module."""
    w4a8 = {"weight": [_quark_spec("fp8_e4m3", "per_tensor"),
                       _quark_spec("int4", "per_channel")],
            "input_tensors": _quark_spec("fp8_e4m3", "per_tensor"),
            "output_tensors": None, "bias": None}
    b = qwen3_moe("quark-int8").set_config("/quantization_config/layer_quant_config",
                                           {"*mlp.experts*": w4a8})
    r = _cli(b.write(tmp_path))
    assert r.returncode == 2
    assert "QS102" in _out(r) and "W4A8 FP8 + INT4 two-level" in _out(r)
    assert "layer_quant_config `*mlp.experts*`" in _out(r) and "ROCm" in _out(r)


def test_quark_moe_on_sglang_is_not_modelled(tmp_path):
    r = _cli(qwen3_moe("quark-fp8-block").write(tmp_path), "--engine", "sglang")
    assert r.returncode == 2 and "QS102" in _out(r)


def test_facts_cite_a_release_and_a_wheel_file():
    for fact in (*MOE_FACTS.values(), FP8_BLOCK_FACT):
        m = re.fullmatch(r"vllm==(\d+)\.(\d+)\.0 (vllm/\S+\.py)", fact.source)
        assert m, fact.source
        if fact.since is not None:
            assert (int(m[1]), int(m[2])) == fact.since, fact


def test_experts_stored_fused_stay_partial(tmp_path):
    b = qwen3_moe("quark-int8").drop(r"^model\.layers\.1\.mlp\.experts\.\d")
    b.add("model.layers.1.mlp.experts.gate_up_proj", torch.zeros(4, 256, 512, dtype=torch.int8))
    b.add("model.layers.1.mlp.experts.down_proj", torch.zeros(4, 256, 256, dtype=torch.int8))
    r = _cli(b.write(tmp_path))
    assert r.returncode == 2
    assert "QS102" in _out(r) and "`model.layers.1.mlp.experts`" in _out(r)
    assert "stored fused per layer" in _out(r)


_W4A8 = {"weight": [_quark_spec("fp8_e4m3", "per_tensor"), _quark_spec("int4", "per_channel")],
         "input_tensors": _quark_spec("fp8_e4m3", "per_tensor"),
         "output_tensors": None, "bias": None}


@pytest.mark.parametrize(("pattern", "rc"), [
    ("*.mlp.experts.*", 0),  # matches `….experts.<e>.<proj>`, not the layer `….experts`
    ("model.layers.1.mlp.experts", 2),  # `….experts` is a substring of it: matched
])
def test_layer_quant_config_is_matched_on_the_moe_layer(tmp_path, pattern, rc):
    """vLLM looks the experts' config up for their fused-MoE layer `….mlp.experts`."""
    b = qwen3_moe("quark-int8").set_config("/quantization_config/layer_quant_config",
                                           {pattern: _W4A8})
    r = _cli(b.write(tmp_path))
    assert r.returncode == rc, _out(r)
    if rc:
        assert f"layer_quant_config `{pattern}`" in _out(r)
        assert "`model.layers.1.mlp.experts.0." in _out(r)


def _bf16_experts(layer: int):
    """qwen3_moe under INT8 with layer ``layer``'s experts stored BF16, and the exclude list
    naming their down projections with a literal ``*`` (amd/GLM-5.2-MXFP4's spelling)."""
    plain = qwen3_moe("bf16")
    b = qwen3_moe("quark-int8").drop(rf"^model\.layers\.{layer}\.mlp\.experts\.")
    for n, t in plain.tensors.items():
        if n.startswith(f"model.layers.{layer}.mlp.experts."):
            b.add(n, t)
    entry = f"model.layers.{layer}.mlp.experts.*.down_proj"
    b.set_config("/quantization_config/exclude", ["lm_head", "re:.*mlp.gate$", entry])
    return b, entry


def test_exclude_naming_part_of_the_experts_skips_the_layer_from_0_26(tmp_path):
    b, entry = _bf16_experts(1)
    path = b.write(tmp_path)
    for engine in ("vllm==0.33.0", "vllm==0.26.0"):
        r = _cli(path, "--engine", engine)
        assert r.returncode == 0, _out(r)
        assert "no findings" in r.stdout, r.stdout  # no QS204: the entry acts
        assert "20/45 modules quantized" in r.stdout  # layer 1's 12 experts built BF16
    r = _cli(path, "--engine", "vllm==0.25.0")  # the entry matches no layer: INT8 experts
    assert r.returncode == 1, _out(r)
    assert "QS202" in r.stdout and "`model.layers.1.mlp.experts.0." in r.stdout
    r = cli_in_process("inspect", str(path), "-k", "layers.1.mlp.experts.3.up_proj")
    assert f"excluded by `{entry}`" in r.stdout, _out(r)


@pytest.mark.parametrize("engine", ["sglang==0.5.12", "sglang==0.5.23"])
@pytest.mark.parametrize("scheme", ["quark-int8", "quark-nvfp4", "quark-int4", "quark-fp8-block"])
def test_sglang_is_not_modelled_and_not_told_vllm_thresholds(tmp_path, scheme, engine):
    """SGLang's version is not compared with the vLLM release a scheme appeared in (0.5.12 <
    0.22 told SGLang users "vLLM < 0.22 has no Quark NVFP4 scheme"): QS102, exit 2."""
    r = _cli(qwen3_moe(scheme).write(tmp_path), "--engine", engine)
    assert r.returncode == 2
    assert "QS102" in r.stderr and "sglang's Quark loader was not read" in r.stderr, r.stderr
    assert "vLLM <" not in r.stderr
