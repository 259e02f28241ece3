"""``quant_method: fp8`` keys as vLLM 0.33.0 ``Fp8Config.from_config`` reads them, on real
safetensors checkpoints: required ``activation_scheme``, the empty-``ignored_layers``
fallback, ``store_dtype``."""

from __future__ import annotations

import pytest
import torch
from builders import Built, dense

from qscale import CheckOptions, check, read_checkpoint
from qscale.errors import ConfigError, UnknownFormat

QC = "/quantization_config"
DOWN = "model.layers.0.mlp.down_proj"


def run(built: Built, tmp_path, engine: str = "vllm==0.33.0"):
    report = check(read_checkpoint(built.write(tmp_path)), CheckOptions(engine=engine))
    return [f for f in report.findings if f.severity.name == "ERROR"]  # QS503 warns on k_proj


def block(**qc) -> Built:
    b = dense("LlamaForCausalLM", "fp8-block", layers=1)
    b.config["quantization_config"].update(qc)
    return b


def test_clean(tmp_path):
    assert run(block(), tmp_path) == []


@pytest.mark.parametrize("engine", ["vllm==0.33.0", "vllm==0.24.0", "sglang==0.5.12"])
def test_missing_activation_scheme_is_refused(tmp_path, engine):
    b = block()
    del b.config["quantization_config"]["activation_scheme"]
    with pytest.raises(ConfigError, match="activation_scheme"):
        run(b, tmp_path, engine)


def _bf16_down(b: Built) -> Built:
    """``down_proj`` left BF16 (listed in ``modules_to_not_convert``)."""
    b.tensors.pop(f"{DOWN}.weight_scale_inv")
    b.tensors[f"{DOWN}.weight"] = torch.zeros(128, 128, dtype=torch.bfloat16)
    return b


def test_empty_ignored_layers_falls_back_to_modules_to_not_convert(tmp_path):
    b = _bf16_down(block(ignored_layers=[], modules_to_not_convert=["lm_head", DOWN]))
    assert run(b, tmp_path) == []


def test_ignored_layers_wins_when_not_empty(tmp_path):
    b = _bf16_down(block(ignored_layers=["lm_head"], modules_to_not_convert=["lm_head", DOWN]))
    findings = run(b, tmp_path)
    assert findings and all(DOWN in (f.location.tensor or "") for f in findings)


def test_sglang_reading_of_empty_ignored_layers_is_partial(tmp_path):
    b = _bf16_down(block(ignored_layers=[], modules_to_not_convert=["lm_head", DOWN]))
    with pytest.raises(UnknownFormat, match="ignored_layers"):
        run(b, tmp_path, "sglang==0.5.12")


def test_store_dtype_mxfp4_experts_are_not_modelled(tmp_path):
    b = block(store_dtype="mxfp4")
    g = torch.Generator().manual_seed(3)
    b.tensors["model.layers.0.mlp.experts.0.down_proj.weight"] = torch.randint(
        0, 255, (128, 64), generator=g, dtype=torch.uint8)
    with pytest.raises(UnknownFormat, match="store_dtype: mxfp4"):
        run(b, tmp_path)


def test_store_dtype_without_experts_checks_linear(tmp_path):
    assert run(block(store_dtype="mxfp4"), tmp_path) == []
    assert run(block(store_dtype="mxfp4").drop(rf"{DOWN}\.weight_scale_inv$"), tmp_path)


def test_sglang_only_methods_are_disjoint_from_vllms():
    from qscale.formats import SGLANG_ONLY_METHODS, VLLM_METHODS
    assert not SGLANG_ONLY_METHODS & VLLM_METHODS
    assert {"w8a8_int8", "qoq", "modelslim"} <= SGLANG_ONLY_METHODS


def test_sglang_only_method_says_so(tmp_path):
    b = block()
    b.config["quantization_config"] = {"quant_method": "qoq"}
    with pytest.raises(UnknownFormat, match="known to SGLang"):
        run(b, tmp_path)
