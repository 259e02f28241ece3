"""QS105 architecture-not-served: the engine version registers none of `architectures`.

These tests install a stand-in engine catalogue (tests/fake_catalogue.py, the API of
``qscale.engines.catalogue``): vLLM 0.33.0 serves the Qwen3.5 classes and a Llama, nothing
else; SGLang has no data.
"""

from __future__ import annotations

import fake_catalogue
import pytest
from builders import qwen3_5_moe
from typer.testing import CliRunner

from qscale import CheckOptions, check, read_checkpoint
from qscale.cli import app
from qscale.rules import qs105_architecture_not_served as qs105

SERVED = ("LlamaForCausalLM", "Qwen3_5MoeForCausalLM", "Qwen3_5MoeForConditionalGeneration")
RENAMED = "Qwen3_5MoeRenamedForConditionalGeneration"


@pytest.fixture
def catalogue(monkeypatch):
    rows = {"0.33.0": [(n, "text", "") for n in SERVED]}
    return fake_catalogue.install(monkeypatch, "vllm", rows)


def renamed(*archs: str):
    return qwen3_5_moe("ct-fp8").set_config("/architectures", list(archs or (RENAMED,)))


def test_architecture_the_engine_does_not_serve(catalogue, tmp_path):
    report = check(
        read_checkpoint(renamed().write(tmp_path)), CheckOptions(select=["QS105"], engine="vllm")
    )
    [f] = report.findings
    assert (f.code, f.severity.label) == ("QS105", "error")
    assert (f.location.file, f.location.key) == ("config.json", "/architectures")
    assert "are not supported for now" in f.message and RENAMED in f.message
    assert f.fix is not None and "`Qwen3_5MoeForConditionalGeneration`" in f.fix.title


def test_not_served_is_a_finding_not_a_partial_check(catalogue, tmp_path):
    """The plan rules have nothing to check when the engine cannot build the model."""
    report = check(read_checkpoint(renamed().write(tmp_path)))
    assert [f.code for f in report.findings] == ["QS105"]
    assert report.complete and report.skipped == ()


def test_ignoring_qs105_leaves_the_check_partial(catalogue, tmp_path):
    report = check(read_checkpoint(renamed().write(tmp_path)), CheckOptions(ignore=["QS105"]))
    assert report.findings == () and not report.complete
    assert {code for code, _ in report.skipped} >= {"QS401", "QS402"}


def test_cli_exits_1_on_it(catalogue, tmp_path):
    root = renamed().write(tmp_path)
    r = CliRunner().invoke(app, ["check", str(root)])
    assert r.exit_code == 1, r.output
    assert "QS105 error [architecture-not-served]" in r.output
    assert "partial check" not in r.output


def test_near_miss_a_later_entry_is_served(catalogue, tmp_path):
    """Engines try every listed class in turn."""
    built = renamed(RENAMED, "Qwen3_5MoeForConditionalGeneration")
    report = check(read_checkpoint(built.write(tmp_path)), CheckOptions(select=["QS105"]))
    assert report.findings == ()


def test_near_miss_served_architecture(catalogue, tmp_path):
    report = check(
        read_checkpoint(qwen3_5_moe("ct-fp8").write(tmp_path)), CheckOptions(select=["QS105"])
    )
    assert report.findings == () and report.complete


def test_near_miss_engine_version_the_catalogue_does_not_cover(catalogue, tmp_path):
    """No data for the version is not "not served": qscale cannot tell."""
    built = renamed()
    for engine, codes in (("sglang==0.5.12", []), ("vllm==0.30.0", []), ("vllm", ["QS105"])):
        report = check(
            read_checkpoint(built.write(tmp_path / engine)),
            CheckOptions(select=["QS105"], engine=engine),
        )
        assert [f.code for f in report.findings] == codes


def test_planner_refusal_without_a_finding_stays_partial(catalogue, tmp_path, monkeypatch):
    """Fail closed: the plan rules count as not applicable only when QS105 reported."""
    from qscale import runner
    from qscale.errors import UnknownFormat

    def refuse(*args, **kwargs):
        raise UnknownFormat("config.json: vllm does not serve it", code="QS105")

    monkeypatch.setattr(runner, "plan_load", refuse)
    root = qwen3_5_moe("ct-fp8").write(tmp_path)  # served: the rule itself finds nothing
    report = check(read_checkpoint(root))
    assert report.findings == () and not report.complete
    assert {why for _, why in report.skipped} == {"QS105 config.json: vllm does not serve it"}


def test_without_a_catalogue_nothing_is_not_served(monkeypatch, tmp_path):
    monkeypatch.setattr(qs105, "catalogue", lambda: None)
    report = check(read_checkpoint(renamed().write(tmp_path)), CheckOptions(select=["QS105"]))
    assert report.findings == ()


def test_rendered_finding(catalogue, tmp_path):
    from qscale.report import render

    report = check(
        read_checkpoint(renamed().write(tmp_path)),
        CheckOptions(select=["QS105"], engine="vllm==0.33.0"),
    )
    text = render(report, "console", width=200)
    assert text.splitlines()[:3] == [
        f"QS105 error [architecture-not-served] vllm==0.33.0 does not serve architecture"
        f" `{RENAMED}`: \"Model architectures ['{RENAMED}'] are not supported for now\"",
        "    at config.json",
        "    fix (manual): set `architectures` to a class vllm==0.33.0 serves (closest:"
        " `Qwen3_5MoeForConditionalGeneration`), or target an engine"
        f" version that serves `{RENAMED}` (`qscale models --engine E`)",
    ]
