"""Partial checks fail closed: when rules could not run (an architecture qscale has no family
for), every format says so and which rules did not run, and `qscale check` exits 2 unless
`--allow-partial` is given.

Checkpoints are built with tests/builders.py, their `architectures` renamed in config.json,
and checked through the real CLI (subprocess).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from builders import qwen3_5_moe
from test_report_formats import assert_valid_sarif

from qscale import CheckOptions, check, read_checkpoint
from qscale.findings import Report

P = "model.language_model.layers"
RENAMED = "Qwen3_5MoeRenamedForConditionalGeneration"
WHY = f"QS103 config.json: architecture '{RENAMED}' has no qscale family"
#: the rules that follow the load plan (needs_plan): the ones a missing family skips
PLAN_RULES = {"QS401", "QS402", "QS403", "QS404", "QS501", "QS502"}


def _rename(root: Path) -> Path:
    cfg = json.loads((root / "config.json").read_text())
    cfg["architectures"] = [RENAMED]
    (root / "config.json").write_text(json.dumps(cfg))
    return root


@pytest.fixture(scope="module")
def renamed(tmp_path_factory) -> Path:
    """A clean checkpoint whose architecture qscale has no family for."""
    return _rename(qwen3_5_moe("ct-fp8").write(tmp_path_factory.mktemp("renamed")))


@pytest.fixture(scope="module")
def renamed_broken(tmp_path_factory) -> Path:
    """The same, missing an input scale: QS201 needs no plan, so it still runs and fires."""
    built = qwen3_5_moe("ct-fp8").drop(rf"^{P}\.1\.self_attn\.o_proj\.input_scale$")
    return _rename(built.write(tmp_path_factory.mktemp("renamed-broken")))


@pytest.fixture(scope="module")
def clean(tmp_path_factory) -> Path:
    return qwen3_5_moe("ct-fp8").write(tmp_path_factory.mktemp("clean"))


# --------------------------------------------------------------------------- library


def test_missing_family_skips_the_plan_rules_with_the_reason(renamed):
    report = check(read_checkpoint(renamed))
    assert not report.complete
    skipped = dict(report.skipped)
    assert set(skipped) >= PLAN_RULES and set(skipped.values()) == {WHY}
    assert report.not_run() == {WHY: tuple(code for code, _ in report.skipped)}


def test_selecting_only_rules_that_need_no_plan_is_complete(renamed):
    report = check(read_checkpoint(renamed), CheckOptions(select=["QS201", "QS3"]))
    assert report.complete and report.skipped == ()


def test_a_crashed_rule_also_makes_the_report_partial():
    report = Report("ckpt", (), crashed=(("QS401", "KeyError: 'x'"),))
    assert not report.complete
    assert report.not_run() == {"crashed: KeyError: 'x'": ("QS401",)}


# --------------------------------------------------------------------------- every format


def test_console_says_partial_and_exits_2(run_cli, renamed):
    r = run_cli("check", str(renamed), "--fail-on", "info")
    assert r.returncode == 2, r.stdout + r.stderr
    *_, head, last = r.stdout.splitlines()
    assert head.startswith(f"{renamed}: no findings from the rules that ran")
    assert last.startswith("partial check: ") and last.endswith(f"({WHY}), exit 2")
    n = len(check(read_checkpoint(renamed)).skipped)
    assert f" {n} rules did not run: QS205, QS401, " in last


def test_json_says_partial_and_lists_what_did_not_run(run_cli, renamed, clean):
    r = run_cli("check", str(renamed), "-f", "json")
    assert r.returncode == 2, r.stderr
    data = json.loads(r.stdout)
    assert data["schema_version"] == 2 and data["complete"] is False
    assert {s["rule"] for s in data["skipped"]} >= PLAN_RULES
    assert all(s == {"rule": s["rule"], "why": WHY} for s in data["skipped"])
    ok = json.loads(run_cli("check", str(clean), "-f", "json").stdout)
    assert ok["complete"] is True and ok["skipped"] == []


def test_sarif_says_partial_with_one_notification_per_rule(run_cli, renamed, clean):
    r = run_cli("check", str(renamed), "-f", "sarif")
    assert r.returncode == 2, r.stderr
    doc = json.loads(r.stdout)
    assert_valid_sarif(doc)
    [run] = doc["runs"]
    [inv] = run["invocations"]
    assert inv["executionSuccessful"] is False and run["properties"]["complete"] is False
    notes = inv["toolExecutionNotifications"]
    as_json = json.loads(run_cli("check", str(renamed), "-f", "json").stdout)
    skipped = [s["rule"] for s in as_json["skipped"]]
    assert [n["associatedRule"]["id"] for n in notes] == skipped
    for n in notes:
        assert n["level"] == "error"
        assert n["message"]["text"] == f"{n['associatedRule']['id']} did not run: {WHY}"
        rule = run["tool"]["driver"]["rules"][n["associatedRule"]["index"]]
        assert rule["id"] == n["associatedRule"]["id"]
    ok = json.loads(run_cli("check", str(clean), "-f", "sarif").stdout)
    assert ok["runs"][0]["invocations"][0]["executionSuccessful"] is True


def test_github_says_partial_in_an_error_annotation(run_cli, renamed):
    r = run_cli("check", str(renamed), "-f", "github")
    assert r.returncode == 2, r.stderr
    *annotations, summary = r.stdout.splitlines()
    [partial] = [a for a in annotations if "partial check" in a]
    assert partial.startswith("::error title=qscale%3A partial check::")
    assert "rules did not run: QS205, QS401" in partial and RENAMED in partial
    assert summary == f"qscale: {renamed}: 0 error, 0 warning, 0 info; partial check"


# --------------------------------------------------------------------------- --allow-partial


@pytest.mark.parametrize("fmt", ["console", "json", "sarif", "github"])
def test_allow_partial_exits_on_the_findings_and_still_says_partial(run_cli, renamed, fmt):
    r = run_cli("check", str(renamed), "-f", fmt, "--allow-partial", "--fail-on", "info")
    assert r.returncode == 0, r.stdout + r.stderr
    strict = run_cli("check", str(renamed), "-f", fmt)
    assert strict.returncode == 2
    if fmt == "console":
        assert r.stdout.splitlines()[-1].endswith(
            f"({WHY}), exit code from the findings alone (--allow-partial)"
        )
    else:  # the report itself is the same: partial, whatever the exit policy
        assert r.stdout == strict.stdout


def test_allow_partial_keeps_the_findings_of_the_rules_that_ran(run_cli, renamed_broken):
    r = run_cli("check", str(renamed_broken), "-f", "json", "--allow-partial")
    assert r.returncode == 1, r.stderr
    data = json.loads(r.stdout)
    assert [f["code"] for f in data["findings"]] == ["QS201"]
    assert data["complete"] is False and {s["rule"] for s in data["skipped"]} >= PLAN_RULES
    assert run_cli("check", str(renamed_broken)).returncode == 2


def test_write_baseline_on_a_partial_check_exits_2_unless_allowed(
    run_cli, renamed_broken, tmp_path
):
    out = tmp_path / "baseline.json"
    assert run_cli("check", str(renamed_broken), "--write-baseline", str(out)).returncode == 2
    assert out.is_file()  # written all the same: the accepted findings are the ones that ran
    r = run_cli("check", str(renamed_broken), "--write-baseline", str(out), "--allow-partial")
    assert r.returncode == 0, r.stderr


# --------------------------------------------------------------------------- other commands


@pytest.mark.parametrize(
    "args", [("plan",), ("layouts",), ("fix", "--dry-run")], ids=["plan", "layouts", "fix"]
)
def test_commands_that_need_the_plan_stop_with_a_clear_error(run_cli, renamed, args):
    r = run_cli(args[0], str(renamed), *args[1:])
    assert r.returncode == 2 and r.stdout == "", r.stdout
    error, hint = r.stderr.splitlines()
    assert error == f"error: {WHY}"
    assert hint.startswith("hint: ") and hint.endswith("; `qscale rule QS103` explains it")
