"""`--output` writes a regular file through a temp file and a rename, and anything else
(a device, a FIFO, a link's target) in place: `-o /dev/null` must never replace the device."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
import threading
from pathlib import Path

from qscale._files import write_text_atomic

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "qwen3_5_moe-fp8-llmcompressor"


def test_check_output_through_a_link_to_dev_null_leaves_the_device(tmp_path):
    link = tmp_path / "report.json"
    link.symlink_to(os.devnull)
    p = subprocess.run(
        [sys.executable, "-m", "qscale", "check", str(EXAMPLE), "--engine", "vllm==0.20.0",
         "-f", "json", "-o", str(link)],
        capture_output=True, text=True, check=False,
    )
    assert p.returncode == 0, p.stderr
    assert link.is_symlink() and os.readlink(link) == os.devnull
    assert stat.S_ISCHR(os.stat(os.devnull).st_mode)
    assert not (tmp_path / "report.json.tmp").exists()


def test_a_link_to_a_regular_file_is_written_through(tmp_path):
    real = tmp_path / "real.json"
    real.write_text("old")
    link = tmp_path / "out.json"
    link.symlink_to(real)
    write_text_atomic(link, json.dumps({"a": 1}))
    assert link.is_symlink() and json.loads(real.read_text()) == {"a": 1}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.json", "real.json"]


def test_a_fifo_is_written_into_not_replaced(tmp_path):
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    got: list[str] = []
    reader = threading.Thread(target=lambda: got.append(fifo.read_text()))
    reader.start()
    write_text_atomic(fifo, "report\n")
    reader.join(timeout=10)
    assert got == ["report\n"] and stat.S_ISFIFO(os.stat(fifo).st_mode)


def test_a_regular_file_is_replaced_whole(tmp_path):
    out = tmp_path / "r.sarif"
    out.write_text("x" * 1000)
    write_text_atomic(out, "new")
    assert out.read_text() == "new" and [p.name for p in tmp_path.iterdir()] == ["r.sarif"]
