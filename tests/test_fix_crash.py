"""Killing `qscale fix` at any point leaves the source byte-identical and no DST that looks
complete: fail points at every step, then kills at random times.

Each run is a process of its own, killed with SIGKILL: forked from the test process (the
CLI's entry point, imports already done), and once through `python -m qscale`."""

from __future__ import annotations

import hashlib
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
from builders import qwen3_5_moe
from cli_runner import cli_in_process

from qscale import CheckOptions, Severity, check, read_checkpoint

MANIFEST = "qscale-fix-manifest.json"


def digest(root: Path) -> dict[str, str]:
    return {
        p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


ARGS = ("fix", "--engine", "vllm==0.19.1")


def _env(failpoint: str | None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("QSCALE_DEBUG", "QSCALE_FIX_FAILPOINT")}
    if failpoint:
        env["QSCALE_FIX_FAILPOINT"] = failpoint
    return env


def start_subprocess(src: Path, out: Path, failpoint: str | None = None) -> subprocess.Popen[bytes]:
    """``python -m qscale fix SRC --out DST`` in a fresh interpreter."""
    return subprocess.Popen(
        [sys.executable, "-m", "qscale", ARGS[0], str(src), "--out", str(out), *ARGS[1:]],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        env=_env(failpoint),
    )


class Forked:
    """``qscale fix SRC --out DST`` in a child forked from this process: a process of its own
    to kill, as ``python -m qscale`` is, without a second of interpreter start-up and imports
    (so that a kill at a random time lands in the fix, not in the imports). The child runs
    ``qscale.cli.main`` and ends with ``os._exit``: it never returns into pytest."""

    def __init__(self, src: Path, out: Path, failpoint: str | None = None) -> None:
        from qscale.cli import main  # imported before the fork: the child only runs it

        self._err = tempfile.TemporaryFile()  # noqa: SIM115 (closed with the object)
        env = _env(failpoint)
        argv = ["qscale", ARGS[0], str(src), "--out", str(out), *ARGS[1:]]
        self.pid = os.fork()
        if self.pid == 0:  # the child
            code = 1
            try:
                devnull = os.open(os.devnull, os.O_WRONLY)
                os.dup2(devnull, 1)
                os.dup2(self._err.fileno(), 2)
                sys.stdout = open(1, "w", closefd=False)  # noqa: SIM115
                sys.stderr = open(2, "w", closefd=False)  # noqa: SIM115
                os.environ.clear()
                os.environ.update(env)
                sys.argv = argv
                try:
                    main()
                    code = 0
                except SystemExit as exc:
                    code = exc.code if isinstance(exc.code, int) else 1
            finally:
                sys.stdout.flush()
                sys.stderr.flush()
                os._exit(code)
        self.returncode: int | None = None

    def send_signal(self, sig: int) -> None:
        if self.returncode is None:
            os.kill(self.pid, sig)

    def wait(self, timeout: float) -> int:
        """The exit code, or -N for signal N, as ``Popen.wait``; the child is reaped."""
        deadline = time.monotonic() + timeout
        while self.returncode is None:
            pid, status = os.waitpid(self.pid, os.WNOHANG)
            if pid:
                self.returncode = os.waitstatus_to_exitcode(status)
            elif time.monotonic() > deadline:
                os.kill(self.pid, signal.SIGKILL)
                os.waitpid(self.pid, 0)
                raise TimeoutError(f"qscale fix ran past {timeout} s")
            else:
                time.sleep(0.002)
        return self.returncode

    def stderr_text(self) -> str:
        self._err.seek(0)
        return self._err.read().decode(errors="replace")


def start(src: Path, out: Path, failpoint: str | None = None) -> Forked:
    return Forked(src, out, failpoint)


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
    src = qwen3_5_moe("ct-fp8").write(tmp_path_factory.mktemp("src"), shards=4)
    # a dry run in this process imports what a fix runs, once, before the children are forked
    assert cli_in_process("fix", str(src), "--dry-run", *ARGS[1:]).returncode == 0
    return src


POINTS = ["start", "mid-rewrite-1", "before-manifest", "before-rename", "after-rename"] + [
    f"after-file-{i}" for i in range(1, 7)
]


@pytest.mark.parametrize("point", POINTS)
def test_kill_at_fail_point(source, tmp_path, point):
    before = digest(source)
    out = tmp_path / "out"
    proc = start(source, out, point)
    assert proc.wait(timeout=120) == -signal.SIGKILL, proc.stderr_text()
    exists = assert_safe(source, out, before)
    assert exists == (point == "after-rename")
    if not exists:  # the killed run left its temporary folder, never a DST
        assert list(tmp_path.glob("out.qscale-tmp-*"))


def test_kill_at_a_fail_point_in_a_fresh_interpreter(source, tmp_path):
    # the forked runs above share this process's imports; one run through `python -m qscale`
    # shows the fail point and the kill work the same from a fresh start
    before = digest(source)
    out = tmp_path / "out"
    proc = start_subprocess(source, out, "mid-rewrite-1")
    assert proc.wait(timeout=120) == -signal.SIGKILL, proc.stderr.read() if proc.stderr else ""
    assert not assert_safe(source, out, before)
    assert list(tmp_path.glob("out.qscale-tmp-*"))
    assert start_subprocess(source, out).wait(timeout=120) == 0  # and a later run finishes
    assert assert_safe(source, out, before)


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
