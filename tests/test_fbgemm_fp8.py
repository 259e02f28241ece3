"""``quant_method: fbgemm_fp8`` (Meta's Llama-3.1 FP8 layout) on real safetensors checkpoints, as
vLLM's ``FBGEMMFp8Config`` builds it: FP8 weights with F32 ``[out, 1]`` row scales on every
Linear not named exactly in ``modules_to_not_convert``, a BF16 ``lm_head``."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch
from builders import Built, dense

from qscale import CheckOptions, check, read_checkpoint
from qscale.errors import ConfigError, UnknownFormat
from qscale.formats import resolve_quantization
from qscale.layout import Deployment

DOWN = "model.layers.0.mlp.down_proj"
Q = "model.layers.0.self_attn.q_proj"


def llama(**qc: object) -> Built:
    b = dense("LlamaForCausalLM", "fbgemm-fp8", layers=2)
    b.config["quantization_config"].update(qc)
    return b


#: vLLM lists fbgemm_fp8 as deprecated in every release read: it loads only when started with
#: --allow-deprecated-quantization (QS106 otherwise), which these tests assume
STARTED = Deployment(allow_deprecated_quantization=True)


def errors(built: Built, tmp_path, engine: str = "vllm==0.33.0"):
    report = check(read_checkpoint(built.write(tmp_path)),
                   CheckOptions(engine=engine, deployment=STARTED))
    return [f for f in report.findings if f.severity.name == "ERROR"]


def _bf16(b: Built, module: str, out: int = 128, inp: int = 128) -> Built:
    """``module`` stored as the exporter leaves a skipped Linear: BF16 weight, no scale."""
    b.tensors.pop(f"{module}.weight_scale")
    b.tensors[f"{module}.weight"] = torch.zeros(out, inp, dtype=torch.bfloat16)
    return b


def test_exporter_layout(tmp_path):
    b = llama()
    assert b.config["quantization_config"] == {
        "quant_method": "fbgemm_fp8", "activation_scale_ub": 1200.0,
        "modules_to_not_convert": ["lm_head"]}
    assert b.tensors[f"{DOWN}.weight"].dtype == torch.float8_e4m3fn
    assert b.tensors[f"{DOWN}.weight_scale"].dtype == torch.float32
    assert tuple(b.tensors[f"{DOWN}.weight_scale"].shape) == (128, 1)
    quant = resolve_quantization(read_checkpoint(b.write(tmp_path)), "vllm==0.33.0")
    assert quant.modules[DOWN].scheme is not None
    assert quant.modules[DOWN].scheme.format == "fbgemm_fp8"
    assert quant.modules["lm_head"].scheme is None


@pytest.mark.parametrize("engine", ["vllm==0.33.0", "vllm==0.20.0", "vllm==0.18.0"])
def test_clean_checkpoint_exits_0_when_deprecated_methods_are_allowed(tmp_path, engine):
    path = llama().write(tmp_path)
    proc = subprocess.run([sys.executable, "-m", "qscale", "check", str(path), "--engine", engine,
                           "--allow-deprecated-quantization"],
                          capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr


@pytest.mark.parametrize("engine", ["vllm==0.33.0", "vllm==0.18.0"])
def test_without_the_flag_vllm_refuses_it_as_deprecated(run_cli, tmp_path, engine):
    path = llama().write(tmp_path)
    r = run_cli("check", str(path), "--engine", engine, "-f", "json")
    assert r.returncode == 1, r.stdout + r.stderr
    [f] = __import__("json").loads(r.stdout)["findings"]
    assert f["code"] == "QS106" and f["severity"] == "error"
    assert "--allow-deprecated-quantization" in f["message"] and engine in f["message"]
    assert f["location"]["key"] == "/quantization_config/quant_method"


def test_missing_weight_scale_names_the_module(tmp_path):
    found = errors(llama().drop(rf"{DOWN}\.weight_scale$"), tmp_path)
    assert found
    assert all(DOWN in (f.location.tensor or "") + f.message for f in found)


@pytest.mark.parametrize("shape", [(128,), (1,), (1, 128)])
def test_wrong_scale_shape_is_an_error(tmp_path, shape):
    found = errors(llama().reshape(f"{DOWN}.weight_scale", shape), tmp_path)
    assert found
    assert any(DOWN in (f.location.tensor or "") for f in found)


def test_per_tensor_scale_is_not_the_fbgemm_layout(tmp_path):
    b = llama()
    b.tensors[f"{DOWN}.weight_scale"] = torch.tensor([1e-3], dtype=torch.float32)
    assert errors(b, tmp_path)


def test_listed_module_stored_bf16_is_clean(tmp_path):
    b = _bf16(llama(modules_to_not_convert=["lm_head", DOWN]), DOWN)
    assert errors(b, tmp_path) == []


def test_unlisted_module_stored_bf16_is_an_error(tmp_path):
    found = errors(_bf16(llama(), DOWN), tmp_path)
    assert found and all(DOWN in (f.location.tensor or "") + f.message for f in found)


def test_listed_module_stored_fp8_is_an_error(tmp_path):
    assert errors(llama(modules_to_not_convert=["lm_head", DOWN]), tmp_path)


def test_ignore_entries_match_exactly(tmp_path):
    """vLLM's exact match: ``mlp.down_proj`` skips nothing, so a BF16 down_proj is wrong."""
    b = _bf16(llama(modules_to_not_convert=["lm_head", "mlp.down_proj"]), DOWN)
    found = errors(b, tmp_path)
    assert [(f.code, f.location.tensor) for f in found] == [("QS202", f"{DOWN}.weight")]


def test_whole_fused_layer_listed_is_clean(tmp_path):
    attn = [f"model.layers.0.self_attn.{p}_proj" for p in "qkv"]
    b = llama(modules_to_not_convert=["lm_head", *attn])
    for name, out in zip(attn, (128, 64, 64), strict=True):
        _bf16(b, name, out, 128)
    assert errors(b, tmp_path) == []


def test_some_shards_listed_is_refused(tmp_path):
    b = _bf16(llama(modules_to_not_convert=["lm_head", Q]), Q)
    found = errors(b, tmp_path)
    assert any("some but not all shards" in f.message for f in found)


@pytest.mark.parametrize("listed", [["lm_head"], None, []])
def test_bf16_lm_head_is_clean_listed_or_not(tmp_path, listed):
    """The head is a ParallelLMHead, never quantized by FBGEMMFp8Config."""
    assert errors(llama(modules_to_not_convert=listed), tmp_path) == []


def test_fp8_lm_head_is_built_unquantized(tmp_path):
    b = llama(modules_to_not_convert=[])
    g = torch.Generator().manual_seed(7)
    b.tensors["lm_head.weight"] = (torch.randn(256, 128, generator=g) * 0.02).to(
        torch.float8_e4m3fn)
    b.tensors["lm_head.weight_scale"] = torch.full((256, 1), 1e-3, dtype=torch.float32)
    found = errors(b, tmp_path)
    assert any(f.code == "QS206" for f in found), [f.code for f in found]


@pytest.mark.parametrize("key", ["activation_scale_ub", "modules_to_not_convert"])
@pytest.mark.parametrize("engine", ["vllm==0.33.0", "vllm==0.20.0"])
def test_missing_required_key_is_refused(tmp_path, key, engine):
    b = llama()
    del b.config["quantization_config"][key]
    with pytest.raises(ConfigError, match=key):
        errors(b, tmp_path, engine)


def test_sglang_is_not_modelled(tmp_path):
    with pytest.raises(UnknownFormat, match="dotted path components"):
        errors(llama(), tmp_path, "sglang==0.5.12")


def test_half_precision_scale_is_converted_on_load(tmp_path):
    b = llama()
    b.tensors[f"{DOWN}.weight_scale"] = b.tensors[f"{DOWN}.weight_scale"].to(torch.bfloat16)
    assert errors(b, tmp_path) == []


def test_int_scale_is_an_error(tmp_path):
    b = llama()
    b.tensors[f"{DOWN}.weight_scale"] = torch.ones(128, 1, dtype=torch.int32)
    found = errors(b, tmp_path)
    assert any(DOWN in (f.location.tensor or "") for f in found)


def test_moe_experts_resolve_unquantized(tmp_path):
    """FusedMoE is not a LinearBase: the engine builds the experts unquantized, so FP8 experts
    are errors while the attention projections stay FP8."""
    from builders import qwen3_moe
    ckpt = read_checkpoint(qwen3_moe("fbgemm-fp8").write(tmp_path))
    quant = resolve_quantization(ckpt, "vllm==0.33.0")
    expert = quant.modules["model.layers.0.mlp.experts.0.down_proj"]
    assert expert.scheme is None and "UnquantizedFusedMoEMethod" in expert.resolution.reason
    assert quant.modules["model.layers.0.self_attn.o_proj"].scheme is not None
    found = check(ckpt, CheckOptions(engine="vllm==0.33.0", deployment=STARTED)).findings
    assert any("experts.0.down_proj.weight_scale" in (f.location.tensor or "") for f in found)


def test_entry_matching_nothing_warns(tmp_path):
    b = _bf16(llama(modules_to_not_convert=["lm_head", "mlp.down_proj"]), DOWN)
    report = check(read_checkpoint(b.write(tmp_path)),
                   CheckOptions(engine="vllm==0.33.0", deployment=STARTED))
    warned = [f for f in report.findings if f.code == "QS204"]
    assert warned and "`mlp.down_proj`" in warned[0].message
    assert warned[0].location.key == "/quantization_config/modules_to_not_convert"
