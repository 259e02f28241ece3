"""Run one rule on a built checkpoint."""

from __future__ import annotations

from pathlib import Path

from builders import Built

from qscale import CheckOptions, Finding, check, read_checkpoint


def run(built: Built, tmp_path: Path, code: str) -> list[Finding]:
    """Write the checkpoint and return the findings of rule ``code`` alone."""
    report = check(read_checkpoint(built.write(tmp_path)), CheckOptions(select=[code]))
    assert not report.crashed, report.crashed
    assert all(f.code == code for f in report.findings)
    return list(report.findings)
