"""Killing `qscale fix` at any point leaves the source byte-identical and no DST that looks
complete: fail points at every step, then kills at random times."""

from __future__ import annotations

import hashlib
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from builders import qwen3_5_moe

from qscale import CheckOptions, Severity, check, read_checkpoint

MANIFEST = "qscale-fix-manifest.json"


def digest(root: Path) -> dict[str, str]:
    return {
        p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def start(src: Path, out: Path, failpoint: str | None = None) -> subprocess.Popen[bytes]:
    env = {k: v for k, v in os.environ.items() if k not in ("QSCALE_DEBUG", "QSCALE_FIX_FAILPOINT")}
    if failpoint:
        env["QSCALE_FIX_FAILPOINT"] = failpoint
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "qscale",
            "fix",
            str(src),
            "--out",
            str(out),
            "--engine",
            "vllm==0.19.1",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        env=env,
    )


def assert_safe(src: Path, out: Path, before: dict[str, str]) -> bool:
    """The source is unchanged; DST is absent or complete and correct. True if DST exists."""
    assert digest(src) == before
    if not out.exists():
        return False
    assert (out / MANIFEST).is_file()
    report = check(read_checkpoint(out), CheckOptions(engine="vllm==0.19.1"))
    assert not report.fails(Severity.WARNING), report.findings
    return True


def reset(out: Path) -> None:
    shutil.rmtree(out, ignore_errors=True)
    for tmp in out.parent.glob(out.name + ".qscale-tmp-*"):
        shutil.rmtree(tmp)


@pytest.fixture(scope="module")
def source(tmp_path_factory):
    # 4 files: the two in_proj scales land in rewritten files, the others are linked
    return qwen3_5_moe("ct-fp8").write(tmp_path_factory.mktemp("src"), shards=4)


POINTS = ["start", "mid-rewrite-1", "before-manifest", "before-rename", "after-rename"] + [
    f"after-file-{i}" for i in range(1, 7)
]


@pytest.mark.parametrize("point", POINTS)
def test_kill_at_fail_point(source, tmp_path, point):
    before = digest(source)
    out = tmp_path / "out"
    proc = start(source, out, point)
    assert proc.wait(timeout=120) == -signal.SIGKILL, proc.stderr.read() if proc.stderr else ""
    exists = assert_safe(source, out, before)
    assert exists == (point == "after-rename")
    if not exists:  # the killed run left its temporary folder, never a DST
        assert list(tmp_path.glob("out.qscale-tmp-*"))


def test_kill_at_random_times_then_finish(source, tmp_path):
    before = digest(source)
    out = tmp_path / "out"
    t0 = time.monotonic()
    assert start(source, out).wait(timeout=120) == 0
    full = time.monotonic() - t0
    assert assert_safe(source, out, before)
    rng = random.Random(5)
    completed = 0
    for _ in range(10):
        reset(out)
        proc = start(source, out)
        time.sleep(rng.uniform(0.0, full))
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=120)
        completed += assert_safe(source, out, before)
    # a later run removes the temporary folders its killed predecessors left, and finishes
    reset(out)
    leftovers = tmp_path / "out.qscale-tmp-dead"
    leftovers.mkdir()
    (leftovers / ".qscale-owner").write_text("999999999")
    assert start(source, out).wait(timeout=120) == 0
    assert assert_safe(source, out, before)
    assert not leftovers.exists()
    assert completed <= 10
