"""CI output of `qscale check`: SARIF 2.1.0 (validated against the official schema), GitHub
workflow annotations, stable fingerprints, and --output / exit codes in every format.

Checkpoints are built with tests/builders.py and checked through the real CLI (its entry
point, in process: tests/cli_runner.py).
"""

from __future__ import annotations

import json
import re
import shlex
import subprocess
import sys
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import jsonschema
import pytest
from builders import qwen3_5_moe

from qscale import check, read_checkpoint, rules
from qscale.baseline import FINGERPRINT_KEY, fingerprint, message_key
from qscale.findings import Applicability, Finding, Fix, Location, Report, Severity
from qscale.report import github

P = "model.language_model.layers"
O_PROJ_INPUT_SCALE = f"{P}.1.self_attn.o_proj.input_scale"
SCHEMA_FILE = Path(__file__).parent / "fixtures" / "sarif" / "sarif-schema-2.1.0.json"
FORMATS = ["console", "json", "sarif", "github"]
#: what `qscale check` names as checked by default: the newest vLLM release, one GPU
SCOPE = "vllm==0.33.0, TP=1 EP=1 (MoE TP=1)"
LEVEL = {"error": "error", "warning": "warning", "info": "note"}


@pytest.fixture(scope="module")
def clean(tmp_path_factory):
    return qwen3_5_moe("ct-fp8").write(tmp_path_factory.mktemp("clean"))


@pytest.fixture(scope="module")
def broken(tmp_path_factory):
    return (
        qwen3_5_moe("ct-fp8")
        .drop(rf"^{O_PROJ_INPUT_SCALE}$")
        .write(tmp_path_factory.mktemp("broken"))
    )


@pytest.fixture(scope="module")
def truncated(tmp_path_factory):
    ckpt = qwen3_5_moe("ct-fp8").write(tmp_path_factory.mktemp("truncated"))
    st = ckpt / "model.safetensors"
    st.write_bytes(st.read_bytes()[:-100])
    return ckpt


def sarif_of(run_cli, *args: str) -> dict[str, Any]:
    r = run_cli("check", *args, "-f", "sarif")
    assert r.returncode in (0, 1), r.stderr
    doc: dict[str, Any] = json.loads(r.stdout)
    return doc


def assert_valid_sarif(doc: dict[str, Any]) -> None:
    """The official 2.1.0 schema, plus the URI rules the schema states only as formats."""
    schema = json.loads(SCHEMA_FILE.read_text())
    errors = sorted(jsonschema.Draft4Validator(schema).iter_errors(doc), key=str)
    assert not errors, [f"{list(e.path)}: {e.message}" for e in errors[:5]]
    [run] = doc["runs"]
    for base in run["originalUriBaseIds"].values():
        assert base["uri"].endswith("/")
        assert bool(urlsplit(base["uri"]).scheme) != ("uriBaseId" in base)
    for result in run["results"]:
        for loc in result["locations"]:
            art = loc["physicalLocation"]["artifactLocation"]
            assert art["uriBaseId"] in run["originalUriBaseIds"]
            assert urlsplit(art["uri"]).scheme == "" and not art["uri"].startswith("/")


# --------------------------------------------------------------------------- SARIF


def test_sarif_validates_against_the_official_schema(run_cli, broken, clean):
    assert_valid_sarif(sarif_of(run_cli, str(broken)))
    assert_valid_sarif(sarif_of(run_cli, str(clean)))
    # a finding with no file (the engine-version note) still names an artifact
    note = sarif_of(run_cli, str(clean), "--engine", "vllm==0.50.0", "--allow-partial")
    assert_valid_sarif(note)
    # a version qscale has not read is an extrapolation: the run says it is not complete
    [inv] = note["runs"][0]["invocations"]
    assert inv["executionSuccessful"] is False
    assert "QS010" in inv["toolExecutionNotifications"][0]["message"]["text"]
    [result] = note["runs"][0]["results"]
    assert result["ruleId"] == "QS010" and result["level"] == "note"
    loc = result["locations"][0]["physicalLocation"]["artifactLocation"]
    assert loc == {"uri": "config.json", "uriBaseId": "CHECKPOINT"}


def test_the_schema_check_rejects_what_sarif_forbids(run_cli, broken):
    doc = sarif_of(run_cli, str(broken))
    doc["runs"][0]["results"][0]["level"] = "fatal"
    with pytest.raises(AssertionError, match="level"):
        assert_valid_sarif(doc)


def test_sarif_driver_lists_every_rule_with_its_docs_and_level(run_cli, clean):
    driver = sarif_of(run_cli, str(clean))["runs"][0]["tool"]["driver"]
    assert driver["name"] == "qscale" and driver["version"] and driver["informationUri"]
    assert [d["id"] for d in driver["rules"]] == [r.code for r in rules.ALL_RULES]
    for d, r in zip(driver["rules"], rules.ALL_RULES, strict=True):
        assert d["name"] == r.name
        assert d["shortDescription"]["text"] == r.summary
        assert d["defaultConfiguration"]["level"] == LEVEL[r.severity.label]
        assert r.summary not in d["fullDescription"]["text"]
        assert d["fullDescription"]["text"] in r.doc
        assert "## Why it matters" in d["help"]["markdown"]


def test_sarif_results_match_the_json_report(run_cli, broken):
    doc = sarif_of(run_cli, str(broken))
    data = json.loads(run_cli("check", str(broken), "-f", "json").stdout)
    [run] = doc["runs"]
    assert len(run["results"]) == len(data["findings"]) >= 1
    for result, f in zip(run["results"], data["findings"], strict=True):
        assert run["tool"]["driver"]["rules"][result["ruleIndex"]]["id"] == result["ruleId"]
        assert result["ruleId"] == f["code"] and result["level"] == LEVEL[f["severity"]]
        assert result["message"]["text"] == f["message"]
        assert result["partialFingerprints"] == {FINGERPRINT_KEY: f["fingerprint"]}
        [loc] = result["locations"]
        art = loc["physicalLocation"]["artifactLocation"]
        assert art == {"uri": f["location"]["file"], "uriBaseId": "CHECKPOINT"}
        names = {(ll["kind"], ll["fullyQualifiedName"]) for ll in loc["logicalLocations"]}
        assert ("variable", f["location"]["tensor"]) in names
    qs201 = [r for r in run["results"] if r["ruleId"] == "QS201"]
    assert [r["locations"][0]["logicalLocations"][0]["name"] for r in qs201] == [O_PROJ_INPUT_SCALE]
    # the base id resolves to the checkpoint folder the user named
    assert run["originalUriBaseIds"]["CHECKPOINT"]["uri"] == broken.as_uri() + "/"
    assert run["invocations"][0]["executionSuccessful"] is True


def test_single_file_and_relative_paths_name_the_checkpoint_folder(run_cli, broken):
    absolute = sarif_of(run_cli, str(broken))["runs"][0]
    by_file = sarif_of(run_cli, str(broken / "model.safetensors"))["runs"][0]
    assert by_file["originalUriBaseIds"] == absolute["originalUriBaseIds"]
    assert by_file["results"] == absolute["results"]
    # run from the folder above, with a relative path: the base is relative to %SRCROOT%
    cwd = broken.parent.parent
    rel = broken.relative_to(cwd)
    proc = run_cli("check", str(rel), "-f", "sarif", cwd=cwd)
    assert proc.returncode == 1, proc.stderr
    doc = json.loads(proc.stdout)
    assert_valid_sarif(doc)
    base = doc["runs"][0]["originalUriBaseIds"]["CHECKPOINT"]
    assert (base["uri"], base["uriBaseId"]) == (f"{rel.as_posix()}/", "%SRCROOT%")
    assert doc["runs"][0]["results"] == absolute["results"]


def test_sarif_output_is_deterministic(run_cli, broken):
    first = run_cli("check", str(broken), "-f", "sarif").stdout
    assert run_cli("check", str(broken), "-f", "sarif").stdout == first


# --------------------------------------------------------------------------- fingerprints


def _fingerprints(doc: dict[str, Any]) -> dict[str, str]:
    return {
        r["partialFingerprints"][FINGERPRINT_KEY]: r["message"]["text"]
        for r in doc["runs"][0]["results"]
    }


def test_fingerprints_survive_new_values_resharding_and_another_folder(run_cli, tmp_path):
    # QS401 on vLLM 0.19.1 names the slot values, which differ with the seed; the second copy
    # also lives in another folder and is split into two files with an index.
    a = qwen3_5_moe("ct-fp8", seed=0).write(tmp_path / "machine-a")
    b = qwen3_5_moe("ct-fp8", seed=1).write(tmp_path / "machine-b" / "deeper", shards=2)
    fa = _fingerprints(sarif_of(run_cli, str(a), "--engine", "vllm==0.19.1"))
    fb = _fingerprints(sarif_of(run_cli, str(b), "--engine", "vllm==0.19.1"))
    assert fa and fa.keys() == fb.keys()
    assert sorted(fa.values()) != sorted(fb.values())  # the messages did change
    # a different engine version is the same defect
    fc = _fingerprints(sarif_of(run_cli, str(a), "--engine", "vllm==0.18.0"))
    assert fc.keys() == fa.keys()


def test_different_defects_get_different_fingerprints(run_cli, tmp_path):
    one = qwen3_5_moe("ct-fp8").drop(rf"^{O_PROJ_INPUT_SCALE}$").write(tmp_path / "one")
    two = (
        qwen3_5_moe("ct-fp8")
        .drop(rf"^{O_PROJ_INPUT_SCALE}$")
        .drop(rf"^{P}\.1\.self_attn\.q_proj\.input_scale$")
        .write(tmp_path / "two")
    )
    f1 = {fingerprint(f) for f in check(read_checkpoint(one)).findings}
    f2 = {fingerprint(f) for f in check(read_checkpoint(two)).findings}
    assert len(f1) == 1 and len(f2) == 2 and f1 < f2
    # in SARIF the two missing input scales are one cause: one result, counted twice
    [result] = sarif_of(run_cli, str(two))["runs"][0]["results"]
    assert result["properties"]["count"] == 2 and len(result["relatedLocations"]) == 1
    assert result["partialFingerprints"][FINGERPRINT_KEY] in f2


def test_message_key_blanks_numbers_but_keeps_names():
    msg = "`layers.0.q_proj.weight_scale` is BF16 with shape (256, 1), slots [1e-3,  -3.4e+38]"
    assert message_key(msg + " on vllm==0.19.1") == (
        "`layers.0.q_proj.weight_scale` is BF16 with shape (#, #), slots [#, #] on vllm==#"
    )


# --------------------------------------------------------------------------- GitHub


def _report(*findings: Finding) -> Report:
    return Report("models/ckpt", findings, engine="vllm==0.19.1")


def test_github_annotation_escapes_message_and_properties():
    f = Finding(
        "QS201",
        Severity.ERROR,
        "50% of rows: wrong,\r\nreally",
        Location(file="odd,name:100%.safetensors", tensor="a.b"),
        Fix("Add the scale", Applicability.UNSAFE),
        name="missing-quantization-tensor",
    )
    [line, summary] = github.render(_report(f)).splitlines()
    assert line == (
        "::error file=models/ckpt/odd%2Cname%3A100%25.safetensors,"
        "title=QS201 missing-quantization-tensor"
        "::50%25 of rows: wrong,%0D%0Areally%0Atensor: a.b%0Afix (unsafe): Add the scale"
    )
    assert summary == "qscale: models/ckpt (vllm==0.19.1): 1 error, 0 warning, 0 info"


def test_github_levels_and_findings_without_a_file():
    w = Finding("QS403", Severity.WARNING, "`x` differs", Location(param="x"), name="n")
    i = Finding("QS010", Severity.INFO, "vllm==9.0.0 is outside", Location(), name="m")
    lines = github.render(_report(w, i)).splitlines()
    assert lines[0] == "::warning title=QS403 n::`x` differs"
    assert lines[1] == "::notice title=QS010 m::vllm==9.0.0 is outside"


def _unescape(text: str) -> str:
    for esc, ch in (("%0D", "\r"), ("%0A", "\n"), ("%3A", ":"), ("%2C", ","), ("%25", "%")):
        text = text.replace(esc, ch)
    return text


def _parse(line: str) -> tuple[str, dict[str, str], str]:
    """Read a workflow command back the way the Actions runner does."""
    assert line.startswith("::")
    head, message = line[2:].split("::", 1)
    name, _, props = head.partition(" ")
    fields = dict(p.split("=", 1) for p in props.split(",")) if props else {}
    return name, {k: _unescape(v) for k, v in fields.items()}, _unescape(message)


@pytest.mark.parametrize("text", ["a:b,c", "100%25 literal", "x\ny\r\nz", "::error::", "%0A"])
def test_github_commands_read_back_to_the_original(text):
    f = Finding("QS302", Severity.ERROR, text, Location(file=f"{text}.st", key="/k"), name="n")
    name, props, message = _parse(github.render(_report(f)).splitlines()[0])
    assert name == "error" and props["file"] == f"models/ckpt/{text}.st"
    assert message == f"{text}\nkey: /k" and props["title"] == "QS302 n"


def test_github_format_through_the_cli(run_cli, broken):
    r = run_cli("check", str(broken), "-f", "github")
    assert r.returncode == 1, r.stderr
    *annotations, summary = r.stdout.splitlines()
    parsed = [_parse(line) for line in annotations]
    assert [(n, p["title"]) for n, p, _ in parsed] == [
        ("error", "QS201 missing-quantization-tensor")
    ]
    assert parsed[0][1]["file"] == f"{broken.as_posix()}/model.safetensors"
    assert O_PROJ_INPUT_SCALE in parsed[0][2]
    assert summary == f"qscale: {broken} ({SCOPE}): 1 error, 0 warning, 0 info"


# --------------------------------------------------------------------------- exit codes


@pytest.mark.parametrize("fmt", FORMATS)
def test_exit_codes_and_output_file_in_every_format(run_cli, fmt, clean, broken, tmp_path):
    assert run_cli("check", str(clean), "-f", fmt).returncode == 0
    shown = run_cli("check", str(broken), "-f", fmt)
    assert shown.returncode == 1 and shown.stdout, shown.stderr
    out = tmp_path / f"report.{fmt}"
    written = run_cli("check", str(broken), "-f", fmt, "-o", str(out))
    assert written.returncode == 1 and written.stdout == "" and written.stderr == ""
    assert out.read_text(encoding="utf-8") == shown.stdout
    assert [p.name for p in tmp_path.iterdir()] == [out.name]  # no temporary file left
    # an info note passes by default and fails with --fail-on info
    note = ("check", str(clean), "--engine", "vllm==0.50.0", "--allow-partial", "-f", fmt)
    assert run_cli(*note).returncode == 0
    assert run_cli(*note, "--fail-on", "info").returncode == 1


@pytest.mark.parametrize("fmt", FORMATS)
def test_unreadable_checkpoint_exits_2_in_every_format(run_cli, fmt, truncated, tmp_path):
    out = tmp_path / "report"
    r = run_cli("check", str(truncated), "-f", fmt, "-o", str(out))
    assert r.returncode == 2
    lines = r.stderr.splitlines()
    assert lines[0].startswith("error: QS00") and "model.safetensors" in lines[0]
    assert all(ln.startswith(("error: ", "hint: ")) for ln in lines) and len(lines) <= 2
    assert not out.exists()  # a failed run never replaces the report file
    # stdout holds a valid document of the format that says the run did not finish
    message = lines[0].removeprefix("error: ")
    if fmt == "console":
        assert r.stdout == ""
    elif fmt == "json":
        doc = json.loads(r.stdout)
        assert doc["schema_version"] == 3 and doc["complete"] is False
        assert doc["error"]["code"] + " " + doc["error"]["message"] == message
        assert "findings" not in doc
    elif fmt == "sarif":
        doc = json.loads(r.stdout)
        assert_valid_sarif(doc)
        [run] = doc["runs"]
        assert run["results"] == [] and run["invocations"][0]["executionSuccessful"] is False
        [note] = run["invocations"][0]["toolExecutionNotifications"]
        assert note["level"] == "error" and note["message"]["text"].startswith(message)
    else:
        [line] = r.stdout.splitlines()
        assert line.startswith("::error title=qscale%3A check did not finish::")
        assert github.escape_data(message) in line


def test_output_into_a_missing_folder_is_a_one_line_error(run_cli, broken, tmp_path):
    r = run_cli("check", str(broken), "-f", "sarif", "-o", str(tmp_path / "no" / "r.sarif"))
    assert r.returncode == 2
    [run] = json.loads(r.stdout)["runs"]  # the SARIF that says the run failed, on stdout
    assert run["invocations"][0]["executionSuccessful"] is False and run["results"] == []
    assert r.stderr.splitlines()[0].startswith("error: --output: cannot write")
    assert r.stderr.splitlines()[1].startswith("hint: ")


# --------------------------------------------------------------------------- pre-commit


def test_pre_commit_hook_runs_on_checkpoint_files_and_checks_the_folder(tmp_path, broken,
                                                                       run_cli):
    yaml = pytest.importorskip("yaml")
    [hook] = yaml.safe_load((Path(__file__).parents[1] / ".pre-commit-hooks.yaml").read_text())
    assert hook["id"] == "qscale-check" and hook["language"] == "python"
    assert hook["pass_filenames"] is False  # a shard alone is not a checkpoint
    sharded = qwen3_5_moe("ct-fp8").write(tmp_path, shards=2)
    files = re.compile(hook["files"])
    changed = [f"models/{p.relative_to(tmp_path).as_posix()}" for p in sharded.iterdir()]
    assert len(changed) == 4 and all(files.search(f) for f in changed)
    assert not any(files.search(f) for f in ("README.md", "package.json", "src/app.py"))
    # what pre-commit runs: entry + args, and no filenames
    program, *entry_args = shlex.split(hook["entry"])
    assert program == "qscale"
    for ckpt, code in ((sharded, 0), (broken, 1)):
        proc = run_cli(*entry_args, str(ckpt), "--engine", "vllm==0.20.0")
        assert proc.returncode == code, proc.stdout + proc.stderr


def test_ci_formats_and_baselines_do_not_import_torch(broken, tmp_path):
    base = tmp_path / "b.json"
    code = (
        "import sys\n"
        "from qscale.cli import app\n"
        f"for args in (['-f', 'sarif'], ['-f', 'github', '--write-baseline', {str(base)!r}],\n"
        f"             ['-f', 'sarif', '--baseline', {str(base)!r}]):\n"
        "    try:\n"
        f"        app(['check', {str(broken)!r}, *args])\n"
        "    except SystemExit as e:\n"
        "        assert e.code in (0, 1), e.code\n"
        "assert 'torch' not in sys.modules, 'torch was imported'\n"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    assert base.is_file()
