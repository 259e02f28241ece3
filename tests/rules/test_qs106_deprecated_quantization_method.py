"""QS106: a quant_method the vLLM release lists in DEPRECATED_QUANTIZATION_METHODS."""

from __future__ import annotations

import pytest
from builders import dense

from qscale import CheckOptions, check, read_checkpoint
from qscale.engines import catalogue
from qscale.layout import Deployment


def codes(path, engine, **deployment):
    report = check(read_checkpoint(path),
                   CheckOptions(engine=engine, deployment=Deployment(**deployment)))
    return [f.code for f in report.findings if f.code == "QS106"]


@pytest.fixture(scope="module")
def fbgemm(tmp_path_factory):
    return dense("LlamaForCausalLM", "fbgemm-fp8", layers=2).write(tmp_path_factory.mktemp("f"))


@pytest.mark.parametrize("release", catalogue.load("vllm").releases)
def test_every_catalogued_release_refuses_fbgemm_fp8(fbgemm, release):
    """The list is read from each wheel: fbgemm_fp8 is on it from 0.18.0 to 0.33.0."""
    fact = catalogue.format_fact("vllm", "registry.deprecated",
                                 tuple(int(x) for x in release.split(".")))
    assert fact is not None and fact.source.endswith(":DEPRECATED_QUANTIZATION_METHODS")
    assert ("fbgemm_fp8" in fact.value) == bool(codes(fbgemm, f"vllm=={release}"))


def test_the_flag_lets_it_load(fbgemm):
    assert codes(fbgemm, "vllm==0.33.0") == ["QS106"]
    assert codes(fbgemm, "vllm==0.33.0", allow_deprecated_quantization=True) == []


def test_a_maintained_method_is_not_reported(tmp_path):
    fp8 = dense("LlamaForCausalLM", "ct-fp8", layers=2).write(tmp_path)
    assert codes(fp8, "vllm==0.33.0") == []


def test_the_list_changes_between_releases():
    """experts_int8 left the list in 0.20.0: the facts are per release, not one list."""
    old = catalogue.format_fact("vllm", "registry.deprecated", (0, 19, 1))
    new = catalogue.format_fact("vllm", "registry.deprecated", (0, 33, 0))
    assert old is not None and new is not None
    assert "experts_int8" in old.value and "experts_int8" not in new.value
