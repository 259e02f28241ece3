"""`qscale fix` through the real CLI: dry run, formats, DST rules, rejection, manifest, re-check."""

from __future__ import annotations

import hashlib
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from builders import qwen3_5_moe
from cli_runner import cli_in_process
from safetensors import safe_open

from qscale.findings import Applicability
from qscale.fix import Status, fix, planner
from qscale.fix.model import Change, ConfigAction, ConfigEdit

P = "model.language_model.layers"
LA = f"{P}.0.linear_attn"
ENGINE = ("--engine", "vllm==0.19.1")


def qscale(*args: str) -> subprocess.CompletedProcess[str]:
    return cli_in_process(*args)


@pytest.fixture
def src(tmp_path):
    return qwen3_5_moe("ct-fp8").write(tmp_path, shards=4)


def test_dry_run_prints_the_plan_and_writes_nothing(src, tmp_path):
    before = sorted(tmp_path.rglob("*"))
    r = qscale("fix", str(src), "--out", str(tmp_path / "out"), "--dry-run", *ENGINE)
    assert r.returncode == 0, r.stderr
    assert f"write  {LA}.in_proj_qkv.weight_scale  BF16 (1,) -> BF16 (512, 1)" in r.stdout
    assert (
        "config config.json /quantization_config/config_groups/group_0_qscale_channel" in r.stdout
    )
    m = re.search(r"files: (\d+) rewritten .*?, (\d+) linked", r.stdout)
    assert m and int(m[1]) >= 1 and int(m[1]) + int(m[2]) == 4
    assert "dry run: nothing written" in r.stdout
    assert sorted(tmp_path.rglob("*")) == before


def test_dry_run_json_gives_files_and_bytes(src, tmp_path):
    r = qscale("fix", str(src), "--dry-run", "--format", "json", *ENGINE)
    assert r.returncode == 0, r.stderr
    d = json.loads(r.stdout)
    assert d["status"] == "dry-run" and d["schema_version"] == 2
    [change] = d["changes"]
    assert change["codes"] == ["QS401"] and change["applicability"] == "safe"
    assert d["bytes"]["new_tensor_data"] == (512 + 256) * 2  # two BF16 [out, 1] scales
    actions = {f["file"]: f["action"] for f in d["files"]}
    rewritten = [f for f, a in actions.items() if a == "rewrite"]
    assert rewritten and actions["config.json"] == "write"
    assert actions["model.safetensors.index.json"] == "write"
    grew = sum(f["bytes"] - f["source_bytes"] for f in d["files"] if f["action"] == "rewrite")
    assert grew >= d["bytes"]["new_tensor_data"] - 2 * 2  # each scale was 2 bytes


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ((), "--out is required"),
        (("--out", "{src}/inside"), "outside the source"),
        (("--out", "{tmp}/taken"), "already exists"),
        (("--out", "{tmp}/taken", "--force"), "is not a `qscale fix` output"),
    ],
)
def test_bad_output_folder_is_a_usage_error(src, tmp_path, args, message):
    (tmp_path / "taken").mkdir()
    argv = [a.format(src=src, tmp=tmp_path) for a in args]
    r = qscale("fix", str(src), *argv, *ENGINE)
    assert r.returncode == 2
    assert r.stderr.startswith("error: ") and message in r.stderr and "hint: " in r.stderr
    assert "Traceback" not in r.stderr


def test_force_replaces_an_earlier_fix_output(src, tmp_path):
    out = tmp_path / "out"
    assert qscale("fix", str(src), "--out", str(out), *ENGINE).returncode == 0
    first = (out / "qscale-fix-manifest.json").stat().st_ino
    r = qscale("fix", str(src), "--out", str(out), "--force", *ENGINE)
    assert r.returncode == 0, r.stderr
    assert (out / "qscale-fix-manifest.json").stat().st_ino != first
    assert not list(tmp_path.glob("out.qscale-tmp-*"))


def test_finding_without_a_fix_rejects_the_checkpoint(tmp_path):
    bad = qwen3_5_moe("ct-fp8").set_value(f"{P}.1.self_attn.o_proj.weight_scale", float("nan"))
    path = bad.write(tmp_path)
    r = qscale("fix", str(path), "--out", str(tmp_path / "out"))
    assert r.returncode == 1
    assert "reject QS303" in r.stdout and "rejected: nothing written" in r.stdout
    assert not (tmp_path / "out").exists() and not list(tmp_path.glob("out.qscale-tmp-*"))


def test_manifest_records_every_change_with_hashes(src, tmp_path):
    out = tmp_path / "out"
    result = fix(src, out, engine="vllm==0.19.1")
    m = json.loads((out / "qscale-fix-manifest.json").read_text())
    assert m["status"] == "fixed" and m["engine"] == "vllm==0.19.1" and m["unsafe_fixes"] is False
    assert len(m["tensors"]) == 2 and [c["pointer"] for c in m["config"]] == [
        "/quantization_config/config_groups/group_0_qscale_channel"
    ]
    for rec in m["tensors"]:
        assert rec["codes"] == ["QS401"] and rec["applicability"] == "safe"
        for side, root in (("before", src), ("after", out)):
            info = rec[side]
            file = rec["file"]
            with safe_open(str(root / file), "pt") as fh:
                t = fh.get_tensor(info["name"])
            assert list(t.shape) == info["shape"]
            raw = t.contiguous().view(-1).view(torch.uint8).numpy().tobytes()
            assert hashlib.sha256(raw).hexdigest() == info["sha256"]
    assert [dict(r) for r in result.records] == m["tensors"]


def test_failed_recheck_removes_the_output(src, tmp_path, monkeypatch):
    """A change that claims QS401 but does not remove it: the output must not appear."""

    def claims_without_fixing(ctx):
        [f] = ctx.findings("QS401")
        ref = ctx.quant_config()
        yield Change(
            "bogus",
            "Touch the config only",
            Applicability.SAFE,
            (ConfigEdit(ref.file, ref.at("qscale_note"), ConfigAction.SET, "x"),),
            (f,),
        )

    monkeypatch.setattr(planner, "FIXERS", (claims_without_fixing,))
    result = fix(src, tmp_path / "out", engine="vllm==0.19.1")
    assert result.status == Status.RECHECK_FAILED and result.exit_code == 1
    assert [f.code for f in result.still_there] == ["QS401"]
    assert not (tmp_path / "out").exists() and not list(tmp_path.glob("out.qscale-tmp-*"))


def test_safe_fixes_do_not_import_torch(src, tmp_path):
    code = (
        "import sys; from qscale.fix import fix; "
        f"r = fix({str(src)!r}, {str(tmp_path / 'out')!r}, engine='vllm==0.19.1'); "
        "assert r.status.value == 'fixed'; print('torch' in sys.modules)"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "False"
    r = subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys, qscale, qscale.fix, qscale.cli; print('torch' in sys.modules)",
        ],
        capture_output=True,
        text=True,
    )
    assert r.stdout.strip() == "False"


def test_library_and_package_export(tmp_path):
    import qscale

    assert qscale.fix is fix and "fix" in qscale.__all__


def test_stale_index_is_rebuilt_from_the_files(src, tmp_path):
    index = src / "model.safetensors.index.json"
    idx = json.loads(index.read_text())
    name, file = sorted(idx["weight_map"].items())[0]
    idx["weight_map"][name] = next(f for f in sorted(set(idx["weight_map"].values())) if f != file)
    index.write_text(json.dumps(idx))
    assert qscale("check", str(src)).returncode == 2  # QS007: the reader stops
    r = qscale("fix", str(src), "--out", str(tmp_path / "out"), "--engine", "vllm==0.20.0")
    assert r.returncode == 0, r.stdout + r.stderr
    assert "[QS007] Rebuild `model.safetensors.index.json`" in r.stdout
    rebuilt = json.loads((tmp_path / "out" / "model.safetensors.index.json").read_text())
    assert rebuilt["weight_map"][name] == file
    assert qscale("check", str(tmp_path / "out"), "--engine", "vllm==0.20.0").returncode == 0
    # an index naming a file that is not there is not stale but broken: exit 2, nothing written
    idx["weight_map"][name] = "model-99999-of-99999.safetensors"
    index.write_text(json.dumps(idx))
    r = qscale("fix", str(src), "--out", str(tmp_path / "out2"))
    assert r.returncode == 2 and "QS006" in r.stderr and not (tmp_path / "out2").exists()


def test_missing_calibration_scales_reject_the_checkpoint(tmp_path):
    src = Path(__file__).parent / "fixtures" / "real" / "quark-qwen3_5_moe-FP8-la-f2f"
    result = fix(src, tmp_path / "out")
    assert result.status == Status.REJECTED and result.exit_code == 1
    missing = [r for r in result.plan.rejected if r.finding.code == "QS201"]
    assert missing and all(
        r.blocking and r.finding.location.tensor.endswith(".input_scale") for r in missing
    )
    assert not list(tmp_path.iterdir())


def test_json_groups_the_findings_it_cannot_fix(tmp_path):
    """Like `qscale check -f json`, one entry per cause (and reason) with its count and
    examples, not one entry per finding (94k unfixable scales would be 94k entries)."""
    built = qwen3_5_moe("ct-fp8")
    scales = [n for n in built.tensors if n.endswith(".weight_scale")]
    for n in scales:  # F64 scales F32 cannot hold exactly: QS301, rejected
        built.tensors[n] = torch.full_like(built.tensors[n], 0.1, dtype=torch.float64)
    src = built.write(tmp_path / "src")
    result = fix(src, tmp_path / "out", dry_run=True)
    r = qscale("fix", str(src), "--out", str(tmp_path / "out"), "--dry-run", "-f", "json")
    d = json.loads(r.stdout)
    rejected = [x for x in result.plan.rejected if x.finding.code == "QS301"]
    entries = [x for x in d["rejected"] if x["finding"]["code"] == "QS301"]
    assert len(rejected) == len(scales) > 3
    assert sum(x["finding"]["count"] for x in entries) == len(rejected)
    assert len(entries) < len(rejected)
    assert all("F32 cannot hold exactly" in x["reason"] for x in entries)
    assert all(1 <= len(x["finding"]["examples"]) <= 5 for x in entries)
