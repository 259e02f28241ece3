"""QS204 points at the skip list where the checkpoint stores it: the key the format read it
from, under the object that holds the quantization config, in that object's file."""

from __future__ import annotations

from builders import qwen3_5_moe

from qscale import CheckOptions, check, read_checkpoint

ENGINE = CheckOptions(engine="vllm==0.33.0")


def _qs204(path):
    found = [f for f in check(read_checkpoint(path), ENGINE).findings if f.code == "QS204"]
    assert found
    return {(f.location.file, f.location.key) for f in found}


def test_fp8_modules_to_not_convert(tmp_path):
    """Qwen3.5-397B-A17B-FP8 writes only `modules_to_not_convert`, which vLLM falls back to."""
    b = qwen3_5_moe("fp8-block")
    qc = b.config["quantization_config"]
    assert "ignored_layers" not in qc
    qc["modules_to_not_convert"] = [*qc["modules_to_not_convert"], "model.nowhere"]
    assert _qs204(b.write(tmp_path)) == {
        ("config.json", "/quantization_config/modules_to_not_convert")}


def test_fp8_ignored_layers(tmp_path):
    b = qwen3_5_moe("fp8-block")
    qc = b.config["quantization_config"]
    qc["ignored_layers"] = [*qc.pop("modules_to_not_convert"), "model.nowhere"]
    assert _qs204(b.write(tmp_path)) == {("config.json", "/quantization_config/ignored_layers")}


def test_config_nested_in_text_config(tmp_path):
    b = qwen3_5_moe("ct-fp8")
    qc = b.config.pop("quantization_config")
    qc["ignore"] = [*qc["ignore"], "model.nowhere"]
    b.config["text_config"]["quantization_config"] = qc
    assert _qs204(b.write(tmp_path)) == {
        ("config.json", "/text_config/quantization_config/ignore")}


def test_modelopt_hf_quant_config(tmp_path):
    b = qwen3_5_moe("modelopt-fp8")
    q = b.extra_files["hf_quant_config.json"]["quantization"]
    q["exclude_modules"] = [*q["exclude_modules"], "model.nowhere"]
    assert _qs204(b.write(tmp_path)) == {
        ("hf_quant_config.json", "/quantization/exclude_modules")}
