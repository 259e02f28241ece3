"""Shared test setup: ``builders`` importable from every test folder, and the real CLI
(tests/cli_runner.py: in process, or in a subprocess where a fresh process matters)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from cli_runner import RunCli, cli_in_process, cli_subprocess


@pytest.fixture(scope="session")
def run_cli() -> RunCli:
    """Run ``qscale ARGS`` through the CLI's entry point (the whole ``main()`` path), in
    process, without any debug switch inherited from the environment."""
    return cli_in_process


@pytest.fixture(scope="session")
def run_cli_subprocess() -> RunCli:
    """Run ``python -m qscale ARGS`` in a subprocess, for what only a fresh process shows."""
    return cli_subprocess
