"""Shared test setup: ``builders`` importable from every test folder, and the real CLI."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

RunCli = Callable[..., "subprocess.CompletedProcess[str]"]


@pytest.fixture
def run_cli() -> RunCli:
    """Run ``python -m qscale ARGS`` in a subprocess (the whole ``main()`` path), without any
    debug switch inherited from the environment."""
    env = {k: v for k, v in os.environ.items() if k != "QSCALE_DEBUG"}

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "qscale", *args],
            capture_output=True,
            text=True,
            timeout=60,
            env=env,
        )

    return run
