"""End-to-end CLI behaviour: exit codes, formats, selection, and the header-only promise.

The exit codes, the README's example and the import checks run ``python -m qscale`` in a
fresh interpreter, as a user does; the rest through the same entry point in process
(``run_cli``, tests/cli_runner.py)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from builders import qwen3_5_moe

P = "model.language_model.layers"


def qscale(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "qscale", *args], capture_output=True, text=True, timeout=60
    )


@pytest.fixture(scope="module")
def clean(tmp_path_factory):
    return qwen3_5_moe("ct-fp8").write(tmp_path_factory.mktemp("clean"))


@pytest.fixture(scope="module")
def broken(tmp_path_factory):
    return (
        qwen3_5_moe("ct-fp8")
        .drop(rf"{P}\.1\.self_attn\.o_proj\.input_scale")
        .write(tmp_path_factory.mktemp("broken"))
    )


def test_clean_checkpoint_exits_0(clean):
    r = qscale("check", str(clean))
    assert r.returncode == 0, r.stderr
    assert "no findings" in r.stdout


def test_findings_exit_1_and_name_the_tensor(broken):
    r = qscale("check", str(broken))
    assert r.returncode == 1
    assert f"{P}.1.self_attn.o_proj.input_scale" in r.stdout
    assert "QS201" in r.stdout


def test_json_report_is_versioned_and_complete(broken, run_cli):
    r = run_cli("check", str(broken), "--format", "json")
    assert r.returncode == 1
    data = json.loads(r.stdout)
    assert data["schema_version"] == 3
    assert data["complete"] is True and data["skipped"] == []
    assert data["engine"] == "vllm==0.33.0" and data["layout"] == "TP=1 EP=1 (MoE TP=1)"
    [f] = data["findings"]
    assert f["code"] == "QS201" and f["severity"] == "error" and f["count"] == 1
    assert f["examples"] == [f["location"]]
    assert f["location"] == {
        "file": "model.safetensors",
        "tensor": f"{P}.1.self_attn.o_proj.input_scale",
    }
    assert data["summary"]["error"] == 1 and data["summary"]["quantized_modules"] == 25


def test_ignore_and_fail_on(broken, tmp_path, run_cli):
    assert run_cli("check", str(broken), "--ignore", "QS2").returncode == 0
    assert run_cli("check", str(broken), "--select", "QS3").returncode == 0
    out = tmp_path / "r.json"
    r = run_cli("check", str(broken), "-f", "json", "-o", str(out))
    assert r.returncode == 1 and r.stdout == ""
    assert json.loads(out.read_text())["findings"]


def test_unknown_rule_code_is_a_usage_error(clean):
    r = qscale("check", str(clean), "--select", "QS999")
    assert r.returncode == 2
    assert r.stderr.startswith("error: --select/--ignore: 'QS999' names no rule")


def test_single_safetensors_file_uses_the_config_beside_it(broken, run_cli):
    r = run_cli("check", str(broken / "model.safetensors"))
    assert r.returncode == 1 and "QS201" in r.stdout


def test_inspect_names_schemes_and_filters(clean, run_cli):
    r = run_cli("inspect", str(clean), "-k", "in_proj", "-f", "json")
    assert r.returncode == 0
    mods = {m["name"]: m for m in json.loads(r.stdout)["modules"]}
    assert mods[f"{P}.0.linear_attn.in_proj_qkv"]["scheme"] == "FP8 per-tensor, static act"
    assert mods[f"{P}.0.linear_attn.in_proj_b"]["scheme"] is None
    assert mods[f"{P}.0.linear_attn.in_proj_b"]["reason"] == "ignored by `re:.*in_proj_b$`"


def test_rule_docs(tmp_path, run_cli):
    r = run_cli("rule", "QS201")
    assert r.returncode == 0 and "## Why it matters" in r.stdout
    assert run_cli("rule", "missing-quantization-tensor").stdout == r.stdout
    listing = run_cli("rule", "--all").stdout
    assert listing.count("\n") >= 16 and "QS302" in listing


def test_rule_docs_explain_the_architecture_codes(run_cli):
    r = run_cli("rule", "QS103")
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith("# QS103 architecture-not-modelled\n")
    assert "--allow-partial" in r.stdout and "## Fix" in r.stdout


def test_header_only_check_does_not_import_torch(broken):
    code = (
        "import sys\n"
        "from qscale.cli import app\n"
        f"try:\n    app(['check', {str(broken)!r}, '-f', 'json'])\n"
        "except SystemExit as e:\n    assert e.code == 1, e.code\n"
        "assert 'torch' not in sys.modules, 'torch was imported'\n"
        "assert 'compressed_tensors' not in sys.modules\n"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr


def test_check_imports_only_its_own_formats_renderer(broken):
    # a console check renders without the JSON/SARIF/GitHub renderers and the baseline module;
    # a JSON check imports its renderer (and the baseline fingerprints) when it renders
    others = (
        "qscale.report.json_report",
        "qscale.report.sarif",
        "qscale.report.github",
        "qscale.baseline",
    )
    for fmt, loaded in (
        ("console", []),
        ("json", ["qscale.baseline", "qscale.report.json_report"]),
    ):
        code = (
            "import sys\n"
            "from qscale.cli import app\n"
            f"try:\n    app(['check', {str(broken)!r}, '-f', {fmt!r}])\n"
            "except SystemExit as e:\n    assert e.code == 1, e.code\n"
            f"print(sorted(m for m in {others!r} if m in sys.modules))\n"
        )
        r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
        assert r.returncode == 0, r.stderr
        assert r.stdout.splitlines()[-1] == str(loaded), fmt


def test_help_does_not_import_torch():
    code = (
        "import sys\nfrom qscale.cli import app\ntry:\n    app(['--help'])\n"
        "except SystemExit:\n    pass\nassert 'torch' not in sys.modules\n"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr


EXAMPLE = "examples/qwen3_5_moe-fp8-llmcompressor"


def test_readme_example_reports_the_vllm_0_19_1_slot_bug_and_not_on_0_20():
    r = qscale("check", EXAMPLE, "--engine", "vllm==0.19.1", "-f", "json")
    assert r.returncode == 1, r.stderr
    data = json.loads(r.stdout)
    assert data["engine"] == "vllm==0.19.1"
    params = sorted(f["location"]["param"] for f in data["findings"] if f["code"] == "QS401")
    qkvz = "language_model.model.layers.0.linear_attn.in_proj_qkvz"
    # the input_scale slots are unfilled too, but the max over them ignores -3.4e38
    assert params == [f"{qkvz}.weight_scale"]
    assert {f["code"] for f in data["findings"] if f["severity"] == "error"} == {"QS401"}
    assert qscale("check", EXAMPLE, "--engine", "vllm==0.20.0").returncode == 0


def test_plan_json_shows_version_exact_slots(run_cli):
    r = run_cli("plan", EXAMPLE, "--engine", "vllm==0.19.1", "-p", "in_proj_qkvz", "-f", "json")
    assert r.returncode == 0, r.stderr
    [layer] = [
        p
        for p in json.loads(r.stdout)["params"]
        if p["name"].endswith("layers.0.linear_attn.in_proj_qkvz")
    ]
    ws = layer["slots"]["weight_scale"]
    assert ws[1] == ws[2] == -3.4028234663852886e38 and ws[0] > 0 and ws[3] > 0
    assert layer["partitions"] == [128, 128, 256, 256]


def test_engine_version_outside_modelled_ranges_is_a_partial_check(clean, run_cli):
    # newer than every release read: checked as the newest, and partial (exit 2) unless the
    # user accepts the extrapolation with --allow-partial
    r = run_cli("check", str(clean), "--engine", "vllm==0.50.0", "-f", "json")
    assert r.returncode == 2, r.stderr
    doc = json.loads(r.stdout)
    assert doc["complete"] is False
    assert "vllm==0.50.0 is outside the versions qscale has read" in doc["unmodelled_engine"]
    [f] = doc["findings"]
    assert f["code"] == "QS010" and f["severity"] == "info"
    assert "vllm==0.50.0 is outside the versions qscale has read" in f["message"]
    assert "0.18.0 to 0.33.0" in f["message"]
    accepted = run_cli("check", str(clean), "--engine", "vllm==0.50.0", "--allow-partial")
    assert accepted.returncode == 0, accepted.stderr
    assert "partial check: QS010 vllm==0.50.0 is outside" in accepted.stdout
    near = run_cli("check", str(clean), "--engine", "vllm==0.33.0", "-f", "json")
    assert json.loads(near.stdout)["findings"] == []
