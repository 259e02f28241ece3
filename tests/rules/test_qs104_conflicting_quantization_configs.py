import copy
from pathlib import Path

from builders import qwen3_5_moe

from qscale import CheckOptions, check, read_checkpoint
from rules.helpers import run

REAL = Path(__file__).parents[1] / "fixtures" / "real"


def inline(built):
    """The ModelOpt config copied inline into config.json, as newer exports do."""
    body = built.extra_files["hf_quant_config.json"]["quantization"]
    built.config["quantization_config"] = {"quant_method": "modelopt", **copy.deepcopy(body)}
    return built


def test_hf_quant_config_disagrees_with_config_json(tmp_path):
    built = inline(qwen3_5_moe("modelopt-fp8"))
    built.extra_files["hf_quant_config.json"]["quantization"]["quant_algo"] = "NVFP4"
    [f] = run(built, tmp_path, "QS104")
    assert f.location.file == "hf_quant_config.json"
    assert "says modelopt NVFP4 but config.json /quantization_config says modelopt FP8" \
        in f.message


def test_nested_text_config_copy_disagrees(tmp_path):
    built = qwen3_5_moe("ct-fp8")
    qc = copy.deepcopy(built.config["quantization_config"])
    qc["format"] = "nvfp4-pack-quantized"
    built.set_config("/text_config/quantization_config", qc)
    [f] = run(built, tmp_path, "QS104")
    assert f.location.key == "/text_config/quantization_config"


def test_near_miss_copies_agree(tmp_path):
    assert run(inline(qwen3_5_moe("modelopt-nvfp4")), tmp_path, "QS104") == []


def test_near_miss_real_modelopt_export():
    report = check(read_checkpoint(REAL / "modelopt-qwen3_5_moe_text-NVFP4"),
                   CheckOptions(select=["QS104"]))
    assert report.findings == ()
