"""Partial checks fail closed: when rules could not run (an architecture the engine serves but
qscale cannot plan), every format says so and which rules did not run, and `qscale check`
exits 2 unless `--allow-partial` is given.

Checkpoints are built with tests/builders.py, their `architectures` set in config.json to a
class the engine catalogue marks not-plannable, and checked through the real CLI (its entry
point, in process: tests/cli_runner.py).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from builders import qwen3_5_moe
from test_report_formats import assert_valid_sarif

from qscale import CheckOptions, check, read_checkpoint, rules
from qscale.engines import catalogue, parse_engine
from qscale.errors import UnknownFormat
from qscale.findings import Report
from qscale.loader import plan_load

P = "model.language_model.layers"
#: a class vLLM serves but qscale cannot plan (the newest catalogued release; the first one)
UNPLANNED = next(a for a in catalogue.architectures(parse_engine(None)) if not a.planned)
#: the rules that follow the load plan (needs_plan): the ones an unplannable class skips
PLAN_RULES = {"QS401", "QS402", "QS403", "QS404", "QS501", "QS502"}
#: rules whose verdict depends on how the engine builds the modules (needs_family): skipped too
FAMILY_RULES = {"QS202", "QS207"}
#: rules that run without a family but for one part (family_part), which the report names
PARTLY = {"QS203", "QS204", "QS208"}


def _why(code: str, reason: str) -> str:
    """The reason the report gives for a rule that did not run, or ran in part, without a
    family: the planner's error, after the part not checked for a rule that ran in part."""
    part = rules.BY_CODE[code].family_part
    return f"{part} not checked: {reason}" if part else reason


def _retarget(root: Path, arch: str = UNPLANNED.name) -> Path:
    cfg = json.loads((root / "config.json").read_text())
    cfg["architectures"] = [arch]
    (root / "config.json").write_text(json.dumps(cfg))
    return root


@pytest.fixture(scope="module")
def unplanned(tmp_path_factory) -> Path:
    """A clean checkpoint whose architecture qscale cannot plan."""
    return _retarget(qwen3_5_moe("ct-fp8").write(tmp_path_factory.mktemp("unplanned")))


@pytest.fixture(scope="module")
def unplanned_broken(tmp_path_factory) -> Path:
    """The same, missing an input scale: QS201 needs no plan, so it still runs and fires."""
    built = qwen3_5_moe("ct-fp8").drop(rf"^{P}\.1\.self_attn\.o_proj\.input_scale$")
    return _retarget(built.write(tmp_path_factory.mktemp("unplanned-broken")))


@pytest.fixture(scope="module")
def clean(tmp_path_factory) -> Path:
    return qwen3_5_moe("ct-fp8").write(tmp_path_factory.mktemp("clean"))


@pytest.fixture(scope="module")
def reason(unplanned) -> str:
    """The reason every skipped rule carries: the planner's own QS103 error."""
    with pytest.raises(UnknownFormat) as info:
        plan_load(read_checkpoint(unplanned))
    assert info.value.code == "QS103" and UNPLANNED.why in info.value.message
    return f"QS103 {info.value.message}"


# --------------------------------------------------------------------------- library


def test_unplannable_architecture_skips_the_plan_rules_with_the_reason(unplanned, reason):
    report = check(read_checkpoint(unplanned))
    assert not report.complete
    skipped = dict(report.skipped)
    assert set(skipped) >= PLAN_RULES | FAMILY_RULES | PARTLY
    assert all(why == _why(code, reason) for code, why in report.skipped)
    not_run = report.not_run()
    assert not_run[reason] == tuple(c for c, _ in report.skipped if c not in PARTLY)
    assert {codes for why, codes in not_run.items() if why != reason} == {(c,) for c in PARTLY}


def test_selecting_only_rules_that_need_no_plan_is_complete(unplanned):
    report = check(read_checkpoint(unplanned), CheckOptions(select=["QS201", "QS3"]))
    assert report.complete and report.skipped == ()


def test_a_crashed_rule_also_makes_the_report_partial():
    report = Report("ckpt", (), crashed=(("QS401", "KeyError: 'x'"),))
    assert not report.complete
    assert report.not_run() == {"crashed: KeyError: 'x'": ("QS401",)}


# --------------------------------------------------------------------------- every format


def test_console_says_partial_and_exits_2(run_cli, unplanned, reason):
    r = run_cli("check", str(unplanned), "--fail-on", "info")
    assert r.returncode == 2, r.stdout + r.stderr
    *_, head, last = r.stdout.splitlines()
    assert head.startswith(
        f"{unplanned} (vllm==0.33.0, TP=1 EP=1 (MoE TP=1)): no findings from the rules that ran"
    )
    assert last.startswith("partial check: ") and last.endswith(f"{reason}), exit 2")
    n = len(check(read_checkpoint(unplanned)).skipped)
    assert f" {n} rules did not run: QS202, QS205, QS207, QS401, " in last
    assert f"; QS203 ({_why('QS203', reason)}); QS204 (" in last


def test_json_says_partial_and_lists_what_did_not_run(run_cli, unplanned, clean, reason):
    r = run_cli("check", str(unplanned), "-f", "json")
    assert r.returncode == 2, r.stderr
    data = json.loads(r.stdout)
    assert data["schema_version"] == 3 and data["complete"] is False
    assert {s["rule"] for s in data["skipped"]} >= PLAN_RULES | FAMILY_RULES | PARTLY
    assert all(s == {"rule": s["rule"], "why": _why(s["rule"], reason)}
               for s in data["skipped"])
    ok = json.loads(run_cli("check", str(clean), "-f", "json").stdout)
    assert ok["complete"] is True and ok["skipped"] == []


def test_sarif_says_partial_with_one_notification_per_rule(run_cli, unplanned, clean, reason):
    r = run_cli("check", str(unplanned), "-f", "sarif")
    assert r.returncode == 2, r.stderr
    doc = json.loads(r.stdout)
    assert_valid_sarif(doc)
    [run] = doc["runs"]
    [inv] = run["invocations"]
    assert inv["executionSuccessful"] is False and run["properties"]["complete"] is False
    notes = inv["toolExecutionNotifications"]
    as_json = json.loads(run_cli("check", str(unplanned), "-f", "json").stdout)
    skipped = [s["rule"] for s in as_json["skipped"]]
    assert [n["associatedRule"]["id"] for n in notes] == skipped
    for n in notes:
        assert n["level"] == "error"
        code = n["associatedRule"]["id"]
        assert n["message"]["text"] == f"{code} did not run: {_why(code, reason)}"
        rule = run["tool"]["driver"]["rules"][n["associatedRule"]["index"]]
        assert rule["id"] == n["associatedRule"]["id"]
    ok = json.loads(run_cli("check", str(clean), "-f", "sarif").stdout)
    assert ok["runs"][0]["invocations"][0]["executionSuccessful"] is True


def test_github_says_partial_in_an_error_annotation(run_cli, unplanned):
    r = run_cli("check", str(unplanned), "-f", "github")
    assert r.returncode == 2, r.stderr
    *annotations, summary = r.stdout.splitlines()
    [partial] = [a for a in annotations if "partial check" in a]
    assert partial.startswith("::error title=qscale%3A partial check::")
    assert "rules did not run: QS202, QS205, QS207, QS401" in partial
    assert UNPLANNED.name in partial
    assert summary == (
        f"qscale: {unplanned} (vllm==0.33.0, TP=1 EP=1 (MoE TP=1)): 0 error, 0 warning, 0 info;"
        " partial check"
    )


# --------------------------------------------------------------------------- --allow-partial


@pytest.mark.parametrize("fmt", ["console", "json", "sarif", "github"])
def test_allow_partial_exits_on_the_findings_and_still_says_partial(
    run_cli, unplanned, fmt, reason
):
    r = run_cli("check", str(unplanned), "-f", fmt, "--allow-partial", "--fail-on", "info")
    assert r.returncode == 0, r.stdout + r.stderr
    strict = run_cli("check", str(unplanned), "-f", fmt)
    assert strict.returncode == 2
    if fmt == "console":
        assert r.stdout.splitlines()[-1].endswith(
            f"{reason}), exit code from the findings alone (--allow-partial)"
        )
    else:  # the report itself is the same: partial, whatever the exit policy
        assert r.stdout == strict.stdout


def test_allow_partial_keeps_the_findings_of_the_rules_that_ran(run_cli, unplanned_broken):
    r = run_cli("check", str(unplanned_broken), "-f", "json", "--allow-partial")
    assert r.returncode == 1, r.stderr
    data = json.loads(r.stdout)
    assert [f["code"] for f in data["findings"]] == ["QS201"]
    assert data["complete"] is False and {s["rule"] for s in data["skipped"]} >= PLAN_RULES
    assert run_cli("check", str(unplanned_broken)).returncode == 2


def test_write_baseline_on_a_partial_check_exits_2_unless_allowed(
    run_cli, unplanned_broken, tmp_path
):
    out = tmp_path / "baseline.json"
    assert run_cli("check", str(unplanned_broken), "--write-baseline", str(out)).returncode == 2
    assert out.is_file()  # written all the same: the accepted findings are the ones that ran
    r = run_cli("check", str(unplanned_broken), "--write-baseline", str(out), "--allow-partial")
    assert r.returncode == 0, r.stderr


# --------------------------------------------------------------------------- other commands


@pytest.mark.parametrize(
    "args", [("plan",), ("layouts",), ("fix", "--dry-run")], ids=["plan", "layouts", "fix"]
)
def test_commands_that_need_the_plan_stop_with_a_clear_error(run_cli, unplanned, args, reason):
    r = run_cli(args[0], str(unplanned), *args[1:])
    assert r.returncode == 2 and r.stdout == "", r.stdout
    error, hint = r.stderr.splitlines()
    assert error == f"error: {reason}"
    assert hint.startswith("hint: ") and hint.endswith("; `qscale rule QS103` explains it")


# --------------------------------------------------------------------------- other causes


def test_an_engine_without_a_catalogue_and_no_family_is_partial(run_cli, tmp_path):
    """SGLang has no catalogue: a class without a hand-written family cannot be planned."""
    root = _retarget(qwen3_5_moe("ct-fp8").write(tmp_path), "SomethingNewForCausalLM")
    r = run_cli("check", str(root), "--engine", "sglang==0.5.12", "-f", "json")
    assert r.returncode == 2, r.stderr
    data = json.loads(r.stdout)
    assert data["complete"] is False and data["findings"] == []
    reason = ("QS103 config.json: architecture 'SomethingNewForCausalLM' has no qscale family"
              " for sglang==0.5.12")
    assert {s["why"] for s in data["skipped"]} == {_why(c, reason) for c in rules.BY_CODE}


def test_an_architecture_the_engine_does_not_serve_is_a_finding_and_partial(run_cli, tmp_path):
    root = _retarget(qwen3_5_moe("ct-fp8").write(tmp_path), "Qwen3_5MoeRenamedForCausalLM")
    r = run_cli("check", str(root), "--engine", "vllm==0.33.0", "-f", "json")
    assert r.returncode == 2, r.stderr
    data = json.loads(r.stdout)
    assert [f["code"] for f in data["findings"]] == ["QS105"]
    assert data["complete"] is False and data["skipped"]
