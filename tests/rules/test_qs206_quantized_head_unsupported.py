import pytest
import torch
from builders import CT_IGNORE, qwen3_5_moe

from qscale import CheckOptions, check, read_checkpoint
from rules.helpers import run


def quantized_head(targets=("Linear",)):
    """llm-compressor FP8 with lm_head quantized too (dropped from the ignore list)."""
    ignore = [i for i in CT_IGNORE if i != "lm_head"]
    return (
        qwen3_5_moe("ct-fp8", ignore=ignore)
        .retype(r"^lm_head\.weight$", torch.float8_e4m3fn)
        .add("lm_head.weight_scale", torch.tensor([1e-3], dtype=torch.bfloat16))
        .add("lm_head.input_scale", torch.tensor([1e-2], dtype=torch.bfloat16))
        .set_config("/quantization_config/config_groups/group_0/targets", list(targets))
    )


def findings(built, tmp_path, engine):
    report = check(read_checkpoint(built.write(tmp_path)),
                   CheckOptions(select=["QS206"], engine=engine))
    return list(report.findings)


@pytest.mark.parametrize("engine", ["vllm==0.19.1", "vllm==0.20.0", "vllm==0.33.0"])
def test_class_targeted_head_is_built_unquantized(tmp_path, engine):
    # vLLM matches ParallelLMHead by name or regex only: `Linear` does not cover it
    [f] = findings(quantized_head(), tmp_path, engine)
    assert f.location.tensor.startswith("lm_head.")
    assert "weight F8_E4M3" in f.message and "weight_scale" in f.message


def test_named_head_needs_vllm_0_20(tmp_path):
    built = quantized_head(targets=("Linear", "lm_head"))
    [f] = findings(built, tmp_path, "vllm==0.19.1")
    assert "vllm==0.19.1 builds it unquantized for compressed-tensors" in f.message


def test_without_a_load_plan_the_head_is_judged_for_the_engine_checked(tmp_path):
    # an architecture vLLM 0.19.1 serves but qscale cannot plan (QS103): the head is judged
    # by 0.19.1's profile (no quantized heads), not by the newest release's
    built = quantized_head(targets=("Linear", "lm_head"))
    built.config["architectures"] = ["ApertusForCausalLM"]
    report = check(read_checkpoint(built.write(tmp_path)),
                   CheckOptions(select=["QS206", "QS401"], engine="vllm==0.19.1"))
    assert [c for c, _ in report.skipped] == ["QS401"]  # no plan
    [f] = report.findings
    assert "vllm==0.19.1 builds it unquantized for compressed-tensors" in f.message


@pytest.mark.parametrize("engine", ["vllm==0.20.0", "vllm==0.33.0"])
def test_near_miss_named_head_on_a_version_that_quantizes_it(tmp_path, engine):
    assert findings(quantized_head(targets=("Linear", "lm_head")), tmp_path, engine) == []


def test_excluded_but_stored_quantized(tmp_path):
    # ModelOpt has shipped quantized lm_head tensors while excluding lm_head
    built = (qwen3_5_moe("modelopt-fp8")
             .retype(r"^lm_head\.weight$", torch.float8_e4m3fn)
             .add("lm_head.weight_scale", torch.tensor(1e-3)))
    [f] = findings(built, tmp_path, "vllm==0.33.0")
    assert "the quantization config leaves it unquantized" in f.message


@pytest.mark.parametrize("scheme", ["ct-fp8", "modelopt-nvfp4", "quark-mxfp4"])
def test_near_miss_bf16_head(tmp_path, scheme):
    assert run(qwen3_5_moe(scheme), tmp_path, "QS206") == []
