"""ModelOpt FP8_PER_CHANNEL_PER_TOKEN, FP8_PB_WO, MXFP8 (also tagged ``quant_method: mxfp8``)
and W4A8_AWQ, on real safetensors checkpoints (the shapes vLLM 0.33.0 ``modelopt.py``
registers: see ``qscale/formats/modelopt.py``)."""

from __future__ import annotations

import subprocess

import pytest
import torch
from builders import Built, Tensors, dense, qwen3_5_moe
from cli_runner import cli_in_process

from qscale import CheckOptions, check, read_checkpoint
from qscale.errors import ConfigError, UnknownFormat

O_PROJ = "model.layers.0.self_attn.o_proj"
K_PROJ = "model.layers.0.self_attn.k_proj"


def _fp8(out: int, inp: int, g: torch.Generator) -> torch.Tensor:
    return (torch.randn(out, inp, generator=g) * 0.02).to(torch.float8_e4m3fn)


def _f32(shape: tuple[int, ...], g: torch.Generator) -> torch.Tensor:
    return torch.rand(shape, generator=g) * 1e-3 + 1e-4


def pcpt(out: int, inp: int, g: torch.Generator) -> Tensors:
    return {"weight": _fp8(out, inp, g), "weight_scale": _f32((out,), g)}


def pb_wo(out: int, inp: int, g: torch.Generator) -> Tensors:
    return {"weight": _fp8(out, inp, g),
            "weight_scale": _f32((-(-out // 128), 1, -(-inp // 128), 1), g)}


def mxfp8(out: int, inp: int, g: torch.Generator) -> Tensors:
    scale = torch.randint(100, 130, (out, inp // 32), generator=g, dtype=torch.uint8)
    return {"weight": _fp8(out, inp, g), "weight_scale": scale}


SCHEMES = {"FP8_PER_CHANNEL_PER_TOKEN": pcpt, "FP8_PB_WO": pb_wo, "MXFP8": mxfp8,
           "W4A8_AWQ": pcpt}


def modelopt(algo: str, *, inline: bool = False, tag: str = "modelopt") -> Built:
    """A one-layer Llama whose Linear layers carry ``algo``'s tensors (lm_head excluded)."""
    b = dense("LlamaForCausalLM", "bf16", layers=1)
    g = torch.Generator().manual_seed(1)
    for name in [n for n in b.tensors if n.endswith("_proj.weight")]:
        w = b.tensors.pop(name)
        module = name.removesuffix(".weight")
        for param, t in SCHEMES[algo](w.shape[0], w.shape[1], g).items():
            b.tensors[f"{module}.{param}"] = t
    if tag == "mxfp8":
        b.config["quantization_config"] = {"quant_method": "mxfp8", "ignored_layers": ["lm_head"]}
    elif inline:
        b.config["quantization_config"] = {"quant_method": tag, "quant_algo": algo,
                                           "ignore": ["lm_head"]}
    else:
        b.extra_files["hf_quant_config.json"] = {"producer": {"name": "modelopt"}, "quantization": {
            "quant_algo": algo, "kv_cache_quant_algo": None, "exclude_modules": ["lm_head"]}}
    return b


def run(built: Built, tmp_path, engine: str = "vllm==0.33.0"):
    report = check(read_checkpoint(built.write(tmp_path)), CheckOptions(engine=engine))
    return [f for f in report.findings if f.severity.value != "info"]


CASES = [("FP8_PER_CHANNEL_PER_TOKEN", {}), ("FP8_PB_WO", {}), ("MXFP8", {}),
         ("MXFP8", {"inline": True}), ("MXFP8", {"tag": "mxfp8"}),
         ("MXFP8", {"inline": True, "tag": "modelopt_mxfp8"}),
         ("FP8_PB_WO", {"inline": True})]


@pytest.mark.parametrize(("algo", "how"), CASES)
@pytest.mark.parametrize("engine", ["vllm==0.33.0", "vllm==0.24.0"])
def test_clean_checkpoint_has_no_findings(tmp_path, algo, how, engine):
    assert run(modelopt(algo, **how), tmp_path, engine) == []


@pytest.mark.parametrize("algo", ["FP8_PER_CHANNEL_PER_TOKEN", "FP8_PB_WO", "MXFP8"])
def test_missing_scale_names_the_module(tmp_path, algo):
    findings = run(modelopt(algo).drop(rf"{O_PROJ}\.weight_scale$"), tmp_path)
    [f] = findings
    assert f.code == "QS201" and f.severity.name == "ERROR"
    assert f.location.tensor == f"{O_PROJ}.weight_scale"


@pytest.mark.parametrize(("algo", "shape"), [
    ("FP8_PER_CHANNEL_PER_TOKEN", (64, 1)),  # the [out, 1] of compressed-tensors
    ("FP8_PB_WO", (1, 1)),  # the 2-D grid: vLLM registers [ob, 1, ib, 1]
    ("MXFP8", (64, 2)),  # one scale per 64 inputs, not per 32
])
def test_wrong_scale_shape_names_the_module(tmp_path, algo, shape):
    [f] = run(modelopt(algo).reshape(f"{K_PROJ}.weight_scale", shape), tmp_path)
    assert f.severity.name == "ERROR" and f.location.tensor == f"{K_PROJ}.weight_scale"


def test_pcpt_static_input_scale_is_not_expected(tmp_path):
    built = modelopt("FP8_PER_CHANNEL_PER_TOKEN").add(
        f"{O_PROJ}.input_scale", torch.tensor(1e-3))
    findings = run(built, tmp_path)
    assert [f.location.tensor for f in findings] == [f"{O_PROJ}.input_scale"]


def test_mxfp8_wrong_scale_dtype(tmp_path):
    [f] = run(modelopt("MXFP8").retype(rf"{K_PROJ}\.weight_scale$", torch.bfloat16), tmp_path)
    assert f.severity.name == "ERROR" and f.location.tensor == f"{K_PROJ}.weight_scale"


@pytest.mark.parametrize("engine", ["vllm==0.33.0", "vllm==0.24.0"])  # both lack it
def test_w4a8_awq_is_vllms_refusal(tmp_path, engine):
    with pytest.raises(ConfigError, match="refuses quant_algo W4A8_AWQ"):
        run(modelopt("W4A8_AWQ"), tmp_path, engine)


def test_w4a8_awq_elsewhere_is_not_modelled(tmp_path):
    with pytest.raises(UnknownFormat, match="W4A8_AWQ is not modelled"):
        run(modelopt("W4A8_AWQ"), tmp_path, "sglang==0.5.12")


def test_mxfp8_tag_before_vllm_0_24_is_not_modelled(tmp_path):
    with pytest.raises(UnknownFormat, match=r"vLLM >= 0\.24\.0"):
        run(modelopt("MXFP8", tag="mxfp8"), tmp_path, "vllm==0.23.0")


def test_mxfp8_legacy_file_without_required_fields_is_refused(tmp_path):
    built = modelopt("MXFP8")
    del built.extra_files["hf_quant_config.json"]["quantization"]["kv_cache_quant_algo"]
    with pytest.raises(ConfigError, match="kv_cache_quant_algo"):
        run(built, tmp_path)


def test_cli_exit_codes(tmp_path):
    def qscale(path) -> subprocess.CompletedProcess[str]:
        return cli_in_process("check", str(path), "--engine", "vllm==0.33.0")
    clean = qscale(modelopt("FP8_PB_WO").write(tmp_path / "clean"))
    assert clean.returncode == 0, clean.stdout + clean.stderr
    broken = qscale(modelopt("FP8_PB_WO").drop(rf"{O_PROJ}\.weight_scale$").write(tmp_path / "b"))
    assert broken.returncode == 1 and f"{O_PROJ}.weight_scale" in broken.stdout
    other = qscale(modelopt("MXFP8", tag="mxfp8").write(tmp_path / "o"))
    assert other.returncode == 0, other.stdout + other.stderr
    refused = qscale(modelopt("W4A8_AWQ").write(tmp_path / "r"))
    assert refused.returncode == 2 and "refuses quant_algo W4A8_AWQ" in refused.stderr


@pytest.mark.parametrize("algo", ["FP8_PER_CHANNEL_PER_TOKEN", "FP8_PB_WO"])
def test_fp8_channel_and_block_experts_are_not_modelled(tmp_path, algo):
    built = modelopt(algo)
    g = torch.Generator().manual_seed(2)
    for proj, out, inp in (("gate_proj", 128, 128), ("up_proj", 128, 128), ("down_proj", 128, 128)):
        for param, t in SCHEMES[algo](out, inp, g).items():
            built.tensors[f"model.layers.0.mlp.experts.0.{proj}.{param}"] = t
    with pytest.raises(UnknownFormat, match=f"{algo} MoE experts"):
        run(built, tmp_path)


def test_default_engine_is_the_newest_vllm(tmp_path):
    """No --engine: the newest vLLM profile, which refuses W4A8_AWQ and reads the mxfp8 tag."""
    built = modelopt("W4A8_AWQ").write(tmp_path / "a")
    with pytest.raises(ConfigError, match="refuses quant_algo W4A8_AWQ"):
        check(read_checkpoint(built))
    tagged = modelopt("MXFP8", tag="mxfp8").write(tmp_path / "b")
    assert [f for f in check(read_checkpoint(tagged)).findings if f.severity.name != "INFO"] == []


def mixed(layers: dict) -> Built:
    b = modelopt("FP8_PB_WO")
    b.extra_files["hf_quant_config.json"]["quantization"].update(
        quant_algo="MIXED_PRECISION", quantized_layers=layers)
    return b


def test_mixed_precision_with_block_fp8_layers(tmp_path):
    names = [n.removesuffix(".weight") for n in modelopt("FP8_PB_WO").tensors
             if n.endswith("_proj.weight")]
    assert run(mixed({n: {"quant_algo": "FP8_PB_WO"} for n in names}), tmp_path) == []


def test_mixed_precision_without_layers_is_refused(tmp_path):
    with pytest.raises(ConfigError, match="non-empty 'quantized_layers'"):
        run(mixed({}), tmp_path)


def test_mixed_precision_block_fp8_experts_are_not_modelled(tmp_path):
    built = mixed({"model.layers.0.mlp.experts.0.down_proj": {"quant_algo": "FP8_PB_WO"}})
    g = torch.Generator().manual_seed(4)
    for param, t in pb_wo(128, 128, g).items():
        built.tensors[f"model.layers.0.mlp.experts.0.down_proj.{param}"] = t
    with pytest.raises(UnknownFormat, match="MIXED_PRECISION block/channel FP8 MoE experts"):
        run(built, tmp_path)


def test_mixed_precision_experts_entry_covers_per_expert_tensors(tmp_path):
    # nvidia/Qwen3.6-35B-A3B-NVFP4's map names `mlp.experts` once per layer, while ModelOpt
    # writes the experts split (`mlp.experts.<e>.gate_proj.weight`, ...): vLLM resolves the
    # RoutedExperts layer by the `mlp.experts` prefix, so the experts are quantized
    built = qwen3_5_moe("modelopt-nvfp4")
    q = built.extra_files["hf_quant_config.json"]["quantization"]
    layers = {}
    for n in built.tensors:
        if n.endswith(".weight_scale_2"):
            module = n.removesuffix(".weight_scale_2")
            if ".experts." in module:
                module = module.rpartition(".experts.")[0] + ".experts"
            layers[module] = {"quant_algo": "NVFP4", "group_size": 16}
    assert "model.language_model.layers.0.mlp.experts" in layers
    q.update(quant_algo="MIXED_PRECISION", quantized_layers=layers)
    assert run(built, tmp_path) == []
    del layers["model.language_model.layers.0.mlp.experts"]
    found = [f for f in run(built, tmp_path / "without") if f.code == "QS203"]
    assert found and all(".layers.0.mlp.experts." in f.location.tensor for f in found)
