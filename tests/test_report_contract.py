"""The report contract (issue #13): findings of one cause are one finding in every format,
the summary names what was checked, engine specs are ranges or say what is modelled, and
`fix`, `check` and `layouts` agree."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from builders import qwen3_5_moe
from replicas import build

from qscale import CheckOptions, check, read_checkpoint
from qscale.baseline import apply_baseline, build_baseline, fingerprint
from qscale.engines import parse_engine, unmodelled
from qscale.errors import UnknownEngine
from qscale.findings import Finding, Location, Report, Severity, group_findings
from qscale.fix import Status, fix
from qscale.report import render
from qscale.report.sarif import MAX_RESULTS
from qscale.supported import supported_layouts

REAL = Path(__file__).parent / "fixtures" / "real"
QUARK_FP8 = REAL / "quark-qwen3_5_moe-FP8-la-f2f"
REPLICA = "qwen3.5-397b-a17b-fp8"


def wrong_block_size(lay, config, extra) -> None:
    """The config says 128x64 blocks; the files hold 128x128 ones."""
    config["quantization_config"]["weight_block_size"] = [128, 64]


@pytest.fixture(scope="module")
def wrong_blocks(tmp_path_factory):
    """layers -> the 397B FP8 replica cut to that many layers, with a wrong block size."""
    cache: dict[int, Path] = {}

    def get(layers: int) -> Path:
        if layers not in cache:
            out = tmp_path_factory.mktemp("wrong-blocks") / f"l{layers}"
            cache[layers] = build(REPLICA, out, layers, edit=wrong_block_size)
        return cache[layers]

    return get


# --------------------------------------------------------------------------- grouping


def test_one_wrong_block_size_is_a_handful_of_groups_that_do_not_grow_with_layers(wrong_blocks):
    small = check(read_checkpoint(wrong_blocks(4)), CheckOptions(engine="vllm==0.33.0"))
    big = check(read_checkpoint(wrong_blocks(8)), CheckOptions(engine="vllm==0.33.0"))
    assert {f.code for f in small.findings} == {"QS302"}
    assert len(big.findings) > 1.7 * len(small.findings) > 7_000
    # the findings double with the layers; the causes stay the same (one per projection shape)
    causes = [(g.first.code, g.first.message) for g in small.groups]
    assert [g.first.message for g in big.groups] == [m for _, m in causes]
    assert len(causes) == 7
    assert sum(g.count for g in big.groups) == len(big.findings)
    # every format renders a group once: sizes do not grow with the findings
    sizes = {
        fmt: (len(render(small, fmt)), len(render(big, fmt)))
        for fmt in ("console", "json", "sarif", "github")
    }
    for fmt, (s, b) in sizes.items():
        assert b < 1.2 * s, fmt
    assert sizes["console"][1] < 10_000
    sarif = json.loads(render(big, "sarif"))
    [run] = sarif["runs"]
    assert len(run["results"]) == 7
    assert sum(r["properties"]["count"] for r in run["results"]) == len(big.findings)
    experts = next(r for r in run["results"] if r["properties"]["count"] > 5000)
    assert len(experts["relatedLocations"]) == 10
    assert "×" in experts["message"]["text"]
    doc = json.loads(render(big, "json"))
    assert [f["count"] for f in doc["findings"]] == [g.count for g in big.groups]
    assert all(1 <= len(f["examples"]) <= 5 for f in doc["findings"])
    assert doc["summary"]["error"] == len(big.findings)
    github = render(big, "github").splitlines()
    assert len([ln for ln in github if ln.startswith("::error")]) == 7


def test_a_grouped_report_still_baselines_single_findings(wrong_blocks):
    report = check(read_checkpoint(wrong_blocks(4)), CheckOptions(engine="vllm==0.33.0"))
    accepted = build_baseline(report)
    assert len(accepted.entries) == len(report.findings)
    # one finding of a group fixed: the rest stay suppressed, the fixed one goes stale
    gone = report.groups[0].members[1]
    rest = tuple(f for f in report.findings if f is not gone)
    after = apply_baseline(Report(report.source, rest, engine=report.engine), accepted)
    assert after.findings == () and [fingerprint(f) for f in after.stale] == [fingerprint(gone)]


def test_findings_of_one_cause_but_other_observations_stay_apart():
    def missing(module: str, shape: str) -> Finding:
        return Finding(
            "QS302",
            Severity.ERROR,
            f"`{module}.weight_scale_inv` has shape {shape}, expected (8, 64)",
            Location("m.safetensors", f"{module}.weight_scale_inv"),
        )

    a = missing("model.layers.0.mlp.experts.3.up_proj", "(8, 32)")
    b = missing("model.layers.7.mlp.experts.1.up_proj", "(8, 32)")
    near = missing("model.layers.7.mlp.experts.2.up_proj", "(8, 16)")  # another observation
    info = Finding(a.code, Severity.INFO, a.message, a.location)  # another severity
    groups = group_findings([a, near, b, info])
    assert [g.members for g in groups] == [(a, b), (near,), (info,)]


def test_the_quark_fp8_fixture_prints_one_block_for_its_missing_input_scales():
    report = check(read_checkpoint(QUARK_FP8), CheckOptions(engine="vllm==0.33.0"))
    assert [f.code for f in report.findings] == ["QS201"] * 37
    lines = render(report, "console", width=200).splitlines()
    assert sum(ln.startswith("QS201 error") for ln in lines) == 1
    assert lines[1].startswith("    ×37 findings of this cause, e.g. `model.language_model")
    assert "37 error, 0 warning, 0 info in 1 group" in lines[-1]


def test_sarif_stays_under_the_code_scanning_limit():
    findings = tuple(
        Finding("QS302", Severity.ERROR, f"`m.{i}x.w` has shape ({i},), expected (1,)", Location())
        for i in range(MAX_RESULTS + 10)
    )
    doc = json.loads(render(Report("ckpt", findings, engine="vllm==0.33.0"), "sarif"))
    [run] = doc["runs"]
    assert len(run["results"]) == MAX_RESULTS
    [note] = run["invocations"][0]["toolExecutionNotifications"]
    assert note["message"]["text"].startswith(f"10 of {MAX_RESULTS + 10} results left out")


# --------------------------------------------------------------------------- summary, engine


def test_summary_names_engine_version_and_layout(run_cli, tmp_path):
    src = qwen3_5_moe("ct-fp8").write(tmp_path)
    r = run_cli("check", str(src), "-e", "vllm==0.20.0", "--tp", "2", "--dp", "2",
                "--enable-expert-parallel")
    assert r.returncode in (0, 1), r.stderr
    last = r.stdout.splitlines()[-1]
    assert last.startswith(f"{src} (vllm==0.20.0, TP=2 EP=4 (DP=2, MoE TP=1")
    bare = run_cli("check", str(src), "-f", "json")
    doc = json.loads(bare.stdout)
    assert doc["engine"] == "vllm==0.33.0" and doc["layout"] == "TP=1 EP=1 (MoE TP=1)"


def test_engine_ranges_check_the_newest_modelled_release_in_them(run_cli, tmp_path):
    assert parse_engine("vllm>=0.19").label == "vllm==0.33.0"
    spec = parse_engine("vllm>=0.19,<0.21")
    assert spec.label == "vllm==0.20.2" and spec.requested == "vllm>=0.19,<0.21"
    assert unmodelled(spec) == ""
    src = qwen3_5_moe("ct-fp8").write(tmp_path)
    r = run_cli("check", str(src), "-e", "vllm>=0.18,<0.20", "-f", "json")
    assert json.loads(r.stdout)["engine"] == "vllm==0.19.1"
    assert r.returncode == 1  # QS401: the tuple-scale bug of 0.18.0-0.19.1
    # a range with no modelled release says which ones are
    empty = run_cli("check", str(src), "-e", "vllm>=1.0")
    assert empty.returncode == 2 and empty.stdout == ""
    error, hint = empty.stderr.splitlines()
    assert error == (
        "error: --engine 'vllm>=1.0': no release qscale models is in that range;"
        " qscale models 23 vllm releases, 0.18.0 to 0.33.0"
    )
    assert hint.startswith("hint: ") and "vllm==0.33.0" in hint
    with pytest.raises(UnknownEngine, match="release list"):
        parse_engine("sglang>=0.5")  # no catalogue: only single versions
    with pytest.raises(UnknownEngine, match="cannot read"):
        parse_engine("vllm=>0.19")


def test_a_version_newer_than_any_modelled_is_partial_and_a_modelled_one_is_not(run_cli, tmp_path):
    src = qwen3_5_moe("ct-fp8").write(tmp_path)
    r = run_cli("check", str(src), "-e", "vllm==9.9.9")
    assert r.returncode == 2
    assert "partial check: QS010 vllm==9.9.9 is outside the versions qscale has read" in r.stdout
    assert run_cli("check", str(src), "-e", "vllm==0.33.0").returncode == 0  # near miss
    assert run_cli("check", str(src), "-e", "vllm==0.19.2", "--ignore", "QS4,QS8").returncode == 0


def test_check_help_shows_every_option_name_whole(run_cli):
    r = run_cli("check", "--help", env={"COLUMNS": "80"})
    assert r.returncode == 0
    for name in ("--enable-expert-parallel", "--sequence-parallel-moe",
                 "--disable-shared-experts-fusion", "--enable-cuda-shared-expert-fusion"):
        assert name in r.stdout
    assert not re.search(r"--[\w-]+…", r.stdout)  # no option name cut short


# --------------------------------------------------------------------------- agreement


def test_layouts_refuses_every_layout_where_check_reports_qs401(tmp_path):
    ckpt = read_checkpoint(qwen3_5_moe("ct-fp8").write(tmp_path))
    report = check(ckpt, CheckOptions(engine="vllm==0.19.1"))
    assert "QS401" in {f.code for f in report.findings if f.severity == Severity.ERROR}
    table = supported_layouts(ckpt, "vllm==0.19.1", max_tp=2, max_ep=2)
    assert table.refused and table.refused[0].startswith("QS401 ")
    assert not any(c.loads and not table.refused for c in table.cells)
    # the near miss: 0.20.0 fills every slot, check is clean, and every vLLM cell loads
    assert not check(ckpt, CheckOptions(engine="vllm==0.20.0")).fails(Severity.ERROR)
    fixed = supported_layouts(ckpt, "vllm==0.20.0", max_tp=2, max_ep=2)
    assert fixed.refused == () and all(c.loads for c in fixed.cells if c.deployment)


def test_layouts_cli_marks_a_qs401_checkpoint_x(run_cli, tmp_path):
    src = qwen3_5_moe("ct-fp8").write(tmp_path)
    r = run_cli("layouts", str(src), "-e", "vllm==0.19.1", "--max-tp", "2", "--max-ep", "2")
    assert r.returncode == 0, r.stderr
    assert [ln.split() for ln in r.stdout.splitlines()[2:4]] == [["1", "x", "x"], ["2", "x", "x"]]
    assert "  QS401 `language_model.model.layers.0.linear_attn.in_proj_qkvz" in r.stdout


def test_the_recheck_after_fix_does_not_report_what_fix_fixed(tmp_path):
    src = qwen3_5_moe("ct-fp8").write(tmp_path / "src")
    before = check(read_checkpoint(src), CheckOptions(engine="vllm==0.19.1"))
    assert {f.code for f in before.findings} == {"QS401", "QS801"}  # the note names the bug
    result = fix(src, tmp_path / "out", engine="vllm==0.19.1")
    assert result.status == Status.FIXED
    # the QS801 note goes with the QS401 finding whose engine bug it names
    assert result.plan.rejected == ()
    assert result.recheck is not None and result.recheck.findings == ()
    after = check(read_checkpoint(tmp_path / "out"), CheckOptions(engine="vllm==0.19.1"))
    assert after.findings == ()


def text_only(lay, config, extra) -> None:
    """The 397B FP8 replica without its vision tower and MTP layer (a text-only export that
    keeps the real config's ignore list)."""

    def keep(name: str) -> bool:
        return "visual" not in name and not name.startswith("mtp.")

    lay.tensors[:] = [t for t in lay.tensors if keep(t[0])]
    lay.files[:] = [(f, kept) for f, names in lay.files if (kept := [n for n in names if keep(n)])]


def test_ignore_entries_for_modules_a_text_only_export_lacks_are_grouped(tmp_path):
    src = build(REPLICA, tmp_path / "text", 4, edit=text_only)
    report = check(read_checkpoint(src), CheckOptions(engine="vllm==0.33.0"))
    assert [f.code for f in report.findings] == ["QS204"] * 115
    assert len(report.groups) <= 3
    lines = render(report, "console", width=400).splitlines()
    assert sum(ln.startswith("QS204 warning") for ln in lines) == len(report.groups)
    # the entries sit in one config key, so the examples name the entries themselves
    biggest = max(report.groups, key=lambda g: g.count)
    assert biggest.count > 100
    assert (f"×{biggest.count} findings of this cause, e.g. `model.visual.blocks.0.attn.proj`"
            in lines[1])


@pytest.mark.parametrize("command", ["plan", "layouts", "inspect", "fix"])
def test_json_commands_print_an_error_document_when_they_cannot_finish(run_cli, tmp_path,
                                                                         command):
    extra = ["--out", str(tmp_path / "out")] if command == "fix" else []
    r = run_cli(command, str(tmp_path / "absent"), *extra, "-f", "json")
    assert r.returncode == 2
    doc = json.loads(r.stdout)
    assert doc["complete"] is False and str(tmp_path / "absent") in doc["error"]["message"]
    # near miss: the console format prints nothing on stdout, only the error lines
    c = run_cli(command, str(tmp_path / "absent"), *extra)
    assert c.returncode == 2 and c.stdout == "" and c.stderr.startswith("error:")


@pytest.mark.parametrize(("args", "bad"), [
    (["--tp", "abc"], "--tp"),
    (["--bogus"], "--bogus"),
    (["--ep=x"], "--ep"),
])
@pytest.mark.parametrize("fmt", [["-f", "json"], ["--format=sarif"], ["-fgithub"], []])
def test_a_usage_error_still_prints_the_document_asked_for(run_cli, tmp_path, args, bad, fmt):
    """Click's own parse errors (a bad value, an unknown option) end in exit 2 with the exit-2
    document of the format asked for on stdout, and click's usage text on stderr."""
    src = qwen3_5_moe("ct-fp8").write(tmp_path)
    r = run_cli("check", str(src), *fmt, *args)
    assert r.returncode == 2
    assert "Usage: qscale check" in r.stderr and bad in r.stderr
    asked = fmt[-1].rpartition("=")[2].removeprefix("-f") if fmt else "console"
    if asked == "json":
        doc = json.loads(r.stdout)
        assert doc["complete"] is False and bad in doc["error"]["message"]
    elif asked == "sarif":
        run = json.loads(r.stdout)["runs"][0]
        assert run["invocations"][0]["executionSuccessful"] is False
    elif asked == "github":
        assert r.stdout.startswith("::error ") and bad in r.stdout
    else:  # near miss: the console gets nothing on stdout
        assert r.stdout == ""


def test_a_bad_format_value_gets_usage_text_only(run_cli, tmp_path):
    src = qwen3_5_moe("ct-fp8").write(tmp_path)
    r = run_cli("check", str(src), "-f", "bogus")
    assert r.returncode == 2 and r.stdout == "" and "'bogus' is not one of" in r.stderr


def test_other_commands_print_a_json_document_on_a_usage_error(run_cli, tmp_path):
    src = qwen3_5_moe("ct-fp8").write(tmp_path)
    r = run_cli("plan", str(src), "--tp", "2", "-f", "json")
    assert r.returncode == 2 and "--tp" in json.loads(r.stdout)["error"]["message"]
    # near miss: a format only check writes gives no document
    s = run_cli("plan", str(src), "--tp", "2", "-f", "sarif")
    assert s.returncode == 2 and s.stdout == ""
