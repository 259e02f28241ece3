"""compressed-tensors sparsity and the formats qscale does not model tensor by tensor: never
"no findings" (real safetensors checkpoints; vLLM facts in ``formats/compressed_tensors``)."""

from __future__ import annotations

import pytest
from builders import Built, dense

from qscale import CheckOptions, check, read_checkpoint
from qscale.errors import ConfigError, UnknownFormat


def run(built: Built, tmp_path, engine: str = "vllm==0.33.0"):
    return check(read_checkpoint(built.write(tmp_path)), CheckOptions(engine=engine)).findings


def with_format(fmt: str) -> Built:
    b = dense("LlamaForCausalLM", "ct-fp8", layers=1)
    b.config["quantization_config"]["format"] = fmt
    for g in b.config["quantization_config"]["config_groups"].values():
        g.pop("format", None)
    return b


def sparse() -> Built:
    b = dense("LlamaForCausalLM", "ct-fp8", layers=1)
    b.config["quantization_config"]["sparsity_config"] = {
        "format": "sparse-24-bitmask", "sparsity_structure": "2:4", "targets": ["Linear"],
        "ignore": ["lm_head"]}
    return b


def test_dense_fp8_still_clean(tmp_path):
    assert [f for f in run(with_format("float-quantized"), tmp_path)
            if f.severity.name == "ERROR"] == []


@pytest.mark.parametrize("fmt", ["sparse-24-bitmask", "sparse-bitmask", "marlin-24",
                                 "mxfp6-pack-quantized"])
def test_unmodelled_format_is_partial(tmp_path, fmt):
    with pytest.raises(UnknownFormat, match=f"compressed-tensors {fmt} is not modelled"):
        run(with_format(fmt), tmp_path)


@pytest.mark.parametrize("engine", ["vllm==0.33.0", "vllm==0.24.0", "vllm==0.22.0"])
def test_sparsity_config_is_refused_by_vllm_since_0_22(tmp_path, engine):
    with pytest.raises(ConfigError, match="Sparsity support has been removed"):
        run(sparse(), tmp_path, engine)


@pytest.mark.parametrize("engine", ["vllm==0.21.0", "sglang==0.5.12"])
def test_sparsity_config_elsewhere_is_partial(tmp_path, engine):
    with pytest.raises(UnknownFormat, match="sparsity_config is not modelled"):
        run(sparse(), tmp_path, engine)


def test_empty_sparsity_targets_are_ignored(tmp_path):
    b = dense("LlamaForCausalLM", "ct-fp8", layers=1)
    b.config["quantization_config"]["sparsity_config"] = {"format": "dense", "targets": []}
    assert [f for f in run(b, tmp_path) if f.severity.name == "ERROR"] == []
