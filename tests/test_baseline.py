"""Baselines: `qscale check --write-baseline FILE` accepts the current findings, `--baseline
FILE` drops them from the report and the exit code, counts them, and lists stale entries.

Checkpoints are built with tests/builders.py and checked through the real CLI (its entry
point, in process: tests/cli_runner.py).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from builders import qwen3_5_moe

from qscale import CheckOptions, check, read_checkpoint
from qscale.baseline import (
    BASELINE_VERSION,
    apply_baseline,
    build_baseline,
    fingerprint,
    read_baseline,
    write_baseline,
)
from qscale.errors import BaselineError

P = "model.language_model.layers"
O_PROJ = rf"^{P}\.1\.self_attn\.o_proj\.input_scale$"
Q_PROJ = rf"^{P}\.1\.self_attn\.q_proj\.input_scale$"


@pytest.fixture(scope="module")
def one_defect(tmp_path_factory):
    return qwen3_5_moe("ct-fp8").drop(O_PROJ).write(tmp_path_factory.mktemp("one"))


@pytest.fixture(scope="module")
def two_defects(tmp_path_factory):
    return qwen3_5_moe("ct-fp8").drop(O_PROJ).drop(Q_PROJ).write(tmp_path_factory.mktemp("two"))


@pytest.fixture(scope="module")
def clean(tmp_path_factory):
    return qwen3_5_moe("ct-fp8").write(tmp_path_factory.mktemp("clean"))


@pytest.fixture
def accepted(run_cli, one_defect, tmp_path: Path) -> Path:
    """A baseline accepting the o_proj defect, written by the CLI."""
    path = tmp_path / "qscale-baseline.json"
    r = run_cli("check", str(one_defect), "--write-baseline", str(path))
    assert r.returncode == 0, r.stderr
    assert r.stderr == f"wrote 1 accepted finding(s) to {path}\n"
    assert "QS201" in r.stdout  # the findings are still shown when writing
    return path


def json_report(run_cli, *args: str) -> tuple[int, dict[str, Any]]:
    r = run_cli("check", *args, "-f", "json")
    assert r.returncode in (0, 1), r.stderr
    return r.returncode, json.loads(r.stdout)


def test_written_baseline_is_versioned_and_keyed_by_the_report_fingerprints(
    run_cli, one_defect, accepted
):
    data = json.loads(accepted.read_text())
    assert data["qscale_baseline"] == BASELINE_VERSION
    _, report = json_report(run_cli, str(one_defect))
    assert list(data["findings"]) == [f["fingerprint"] for f in report["findings"]]
    [entry] = data["findings"].values()
    assert entry["code"] == "QS201" and entry["location"]["tensor"].endswith("o_proj.input_scale")
    assert str(one_defect) not in accepted.read_text()  # nothing machine-specific


def test_baseline_suppresses_accepted_findings_in_every_format(run_cli, one_defect, accepted):
    code, report = json_report(run_cli, str(one_defect), "--baseline", str(accepted))
    assert code == 0 and report["findings"] == [] and report["stale_baseline"] == []
    assert report["summary"]["suppressed"] == 1 and report["summary"]["error"] == 0
    console = run_cli("check", str(one_defect), "--baseline", str(accepted))
    assert console.returncode == 0
    assert "no findings (1 suppressed by the baseline)" in console.stdout
    sarif = run_cli("check", str(one_defect), "--baseline", str(accepted), "-f", "sarif")
    assert sarif.returncode == 0 and json.loads(sarif.stdout)["runs"][0]["results"] == []
    gh = run_cli("check", str(one_defect), "--baseline", str(accepted), "-f", "github")
    assert gh.returncode == 0
    assert (
        gh.stdout
        == f"qscale: {one_defect} (vllm==0.33.0, TP=1 EP=1 (MoE TP=1)): 0 error, 0 warning,"
        " 0 info; 1 suppressed, 0 stale (baseline)\n"
    )


def test_new_findings_still_fail(run_cli, two_defects, accepted):
    code, report = json_report(run_cli, str(two_defects), "--baseline", str(accepted))
    assert code == 1
    [f] = report["findings"]
    assert f["location"]["tensor"].endswith("q_proj.input_scale")
    assert report["summary"]["suppressed"] == 1 and report["summary"]["error"] == 1


def test_fixed_findings_leave_stale_entries(run_cli, clean, accepted):
    code, report = json_report(run_cli, str(clean), "--baseline", str(accepted))
    assert code == 0 and report["findings"] == [] and report["summary"]["suppressed"] == 0
    [stale] = report["stale_baseline"]
    assert stale["code"] == "QS201"
    assert stale["fingerprint"] == next(iter(json.loads(accepted.read_text())["findings"]))
    console = run_cli("check", str(clean), "--baseline", str(accepted)).stdout
    assert f"info: stale baseline entry QS201 {P}.1.self_attn.o_proj.input_scale" in console
    gh = run_cli("check", str(clean), "--baseline", str(accepted), "-f", "github").stdout
    assert gh.startswith("::notice file=") and "title=stale baseline entry QS201" in gh
    sarif = json.loads(
        run_cli("check", str(clean), "--baseline", str(accepted), "-f", "sarif").stdout
    )
    [note] = sarif["runs"][0]["invocations"][0]["toolConfigurationNotifications"]
    assert (
        note["associatedRule"]["id"] == "QS201" and stale["fingerprint"] in note["message"]["text"]
    )


def test_entries_of_rules_that_did_not_run_are_not_stale(run_cli, clean, accepted):
    _, report = json_report(run_cli, str(clean), "--baseline", str(accepted), "--select", "QS4")
    assert report["stale_baseline"] == []
    _, report = json_report(run_cli, str(clean), "--baseline", str(accepted), "--ignore", "QS201")
    assert report["stale_baseline"] == []


def test_baseline_survives_requantization_and_resharding(run_cli, tmp_path):
    # QS401 messages carry the slot values; a re-quantized, re-sharded copy elsewhere keeps
    # its fingerprints, so the baseline still applies.
    first = qwen3_5_moe("ct-fp8", seed=0).write(tmp_path / "a")
    again = qwen3_5_moe("ct-fp8", seed=3).write(tmp_path / "b", shards=2)
    base = tmp_path / "b.json"
    engine = ("--engine", "vllm==0.19.1")
    assert run_cli("check", str(first), *engine, "--write-baseline", str(base)).returncode == 0
    n = len(json.loads(base.read_text())["findings"])
    code, report = json_report(run_cli, str(again), *engine, "--baseline", str(base))
    assert n >= 1 and code == 0 and report["summary"]["suppressed"] == n
    assert report["stale_baseline"] == []


def test_library_round_trip(tmp_path, one_defect, two_defects):
    report = check(read_checkpoint(two_defects), CheckOptions())
    path = tmp_path / "b.json"
    assert write_baseline(report, path) == len(report.findings) == 2
    loaded = read_baseline(path)
    assert loaded == build_baseline(report)
    assert [fingerprint(f) for f in report.findings] == list(loaded.entries)
    # against the one-defect checkpoint: its finding is suppressed, the other is stale
    after = apply_baseline(check(read_checkpoint(one_defect), CheckOptions()), loaded)
    assert after.findings == () and after.summary["suppressed"] == 1
    assert [f.location.tensor for f in after.stale] == [f"{P}.1.self_attn.q_proj.input_scale"]


def _valid_text(tmp_path: Path, one_defect: Path) -> str:
    path = tmp_path / "valid.json"
    write_baseline(check(read_checkpoint(one_defect), CheckOptions()), path)
    return path.read_text()


def _tampered(text: str) -> str:
    data = json.loads(text)
    [entry] = data["findings"].values()
    entry["location"]["tensor"] = "another.tensor"
    return json.dumps(data)


MALFORMED = {
    "not-json": (lambda t: t[:-10], "not valid JSON"),
    "a-list": (lambda t: "[]", "not a qscale baseline"),
    "other-version": (
        lambda t: t.replace('"qscale_baseline": 1', '"qscale_baseline": 99'),
        "baseline version 99 is not supported",
    ),
    "findings-list": (
        lambda t: json.dumps({**json.loads(t), "findings": []}),
        "`findings` must be an object",
    ),
    "entry-without-code": (
        lambda t: t.replace('"code": "QS201"', '"code": 201'),
        "`code` must be a string",
    ),
    "tampered-entry": (_tampered, "the key is not the fingerprint"),
    "not-utf8": (lambda t: "\udcff", "cannot read the baseline"),
}


@pytest.mark.parametrize("case", MALFORMED)
def test_malformed_baseline_is_a_one_line_error(run_cli, one_defect, tmp_path, case):
    mutate, problem = MALFORMED[case]
    bad = tmp_path / "bad.json"
    bad.write_bytes(mutate(_valid_text(tmp_path, one_defect)).encode("utf-8", "surrogateescape"))
    r = run_cli("check", str(one_defect), "--baseline", str(bad), "-f", "sarif")
    assert r.returncode == 2
    [run] = json.loads(r.stdout)["runs"]  # still a SARIF log, one that says it failed
    assert run["invocations"][0]["executionSuccessful"] is False and run["results"] == []
    [error, hint] = r.stderr.splitlines()
    assert error.startswith(f"error: {bad}: ") and problem in error, error
    assert hint == "hint: regenerate it with `qscale check PATH --write-baseline FILE`"
    with pytest.raises(BaselineError, match=problem):
        read_baseline(bad)


def test_missing_baseline_file_and_conflicting_options_exit_2(run_cli, one_defect, tmp_path):
    r = run_cli("check", str(one_defect), "--baseline", str(tmp_path / "nope.json"))
    assert r.returncode == 2 and r.stdout == ""
    assert r.stderr.startswith(f"error: {tmp_path / 'nope.json'}: cannot read the baseline")
    both = run_cli("check", str(one_defect), "--baseline", "a.json", "--write-baseline", "b.json")
    assert both.returncode == 2
    assert both.stderr.startswith("error: give --baseline or --write-baseline, not both")
