"""QS105 architecture-not-served: the engine release registers none of `architectures`.

Against the committed engine catalogue (qscale/engines/data/vllm.json): vLLM 0.33.0 serves the
Qwen3.5 classes and not a renamed one; SGLang and vLLM before the first catalogued release have
no data, so nothing is "not served" there.
"""

from __future__ import annotations

from builders import qwen3_5_moe
from typer.testing import CliRunner

from qscale import CheckOptions, check, read_checkpoint
from qscale.cli import app
from qscale.engines import catalogue, parse_engine
from qscale.report import render

RENAMED = "Qwen3_5MoeRenamedForConditionalGeneration"
SERVED = "Qwen3_5MoeForConditionalGeneration"


def renamed(*archs: str):
    return qwen3_5_moe("ct-fp8").set_config("/architectures", list(archs or (RENAMED,)))


def run(built, tmp_path, engine="vllm==0.33.0", **kw):
    return check(read_checkpoint(built.write(tmp_path)), CheckOptions(engine=engine, **kw))


def test_architecture_the_engine_does_not_serve(tmp_path):
    [f] = run(renamed(), tmp_path, select=["QS105"]).findings
    assert (f.code, f.severity.label) == ("QS105", "error")
    assert (f.location.file, f.location.key) == ("config.json", "/architectures")
    assert f.message == (
        f"vllm==0.33.0 does not serve architecture `{RENAMED}`:"
        f" \"Model architectures ['{RENAMED}'] are not supported for now\""
    )
    assert f.fix is not None and f"`{SERVED}`" in f.fix.title


def test_without_a_version_it_names_the_newest_catalogued_release(tmp_path):
    newest = catalogue.load("vllm").releases[-1]
    [f] = run(renamed(), tmp_path, engine=None, select=["QS105"]).findings
    assert f.message.startswith(f"vllm=={newest} does not serve architecture `{RENAMED}`")
    assert f.fix is not None and f"a class vllm=={newest} serves" in f.fix.title


def test_not_served_is_a_finding_and_the_check_is_partial(tmp_path):
    """The engine cannot build the model (QS105), and the plan rules did not look at the
    tensors: the report is partial too, so a renamed class exits 2, not 1."""
    report = run(renamed(), tmp_path)
    assert [f.code for f in report.findings] == ["QS105"]
    assert not report.complete and {c for c, _ in report.skipped} >= {"QS401", "QS402"}


def test_ignoring_qs105_leaves_the_check_partial(tmp_path):
    report = run(renamed(), tmp_path, ignore=["QS105"])
    assert report.findings == () and not report.complete
    assert {code for code, _ in report.skipped} >= {"QS401", "QS402"}
    why = (f"QS105 config.json: vllm==0.33.0 does not serve architecture '{RENAMED}': Model"
           f" architectures ['{RENAMED}'] are not supported for now")
    # a rule that runs in part without a load plan names the part it did not check
    assert {w.rpartition(" not checked: ")[2] for _, w in report.skipped} == {why}


def test_cli_exits_2_on_it_and_1_with_allow_partial(tmp_path):
    path = str(renamed().write(tmp_path))
    r = CliRunner().invoke(app, ["check", path, "-e", "vllm==0.33.0"])
    assert r.exit_code == 2, r.output
    assert "QS105 error [architecture-not-served]" in r.output and "partial check" in r.output
    r = CliRunner().invoke(app, ["check", path, "-e", "vllm==0.33.0", "--allow-partial"])
    assert r.exit_code == 1, r.output
    assert "QS105 error [architecture-not-served]" in r.output


def test_near_miss_served_architecture(tmp_path):
    assert catalogue.lookup(parse_engine("vllm==0.33.0"), SERVED) is not None
    report = run(qwen3_5_moe("ct-fp8"), tmp_path, select=["QS105"])
    assert report.findings == () and report.complete


def test_near_miss_a_later_entry_is_served(tmp_path):
    """Engines try every listed class in turn: one served class is enough for QS105."""
    assert run(renamed(RENAMED, SERVED), tmp_path, select=["QS105"]).findings == ()


def test_near_miss_engine_versions_the_catalogue_does_not_cover(tmp_path):
    """No data for the version is not "not served": qscale cannot tell, and says partial."""
    built = renamed()
    for engine in ("sglang==0.5.12", "vllm==0.10.0"):
        report = run(built, tmp_path / engine, engine=engine)
        assert report.findings == () or {f.code for f in report.findings} == {"QS010"}
        assert not report.complete, engine


def test_rendered_finding(tmp_path):
    report = run(renamed(), tmp_path, select=["QS105"])
    assert render(report, "console", width=200).splitlines()[:3] == [
        "QS105 error [architecture-not-served] vllm==0.33.0 does not serve architecture"
        f" `{RENAMED}`: \"Model architectures ['{RENAMED}'] are not supported for now\"",
        "    at config.json",
        "    fix (manual): set `architectures` to a class vllm==0.33.0 serves (closest:"
        f" `{SERVED}`, `Qwen3_5ForConditionalGeneration`, `Qwen3VLMoeForConditionalGeneration`),"
        f" or target an engine version that serves `{RENAMED}`"
        " (`qscale models --engine E`)",
    ]
