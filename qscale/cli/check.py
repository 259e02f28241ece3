"""`qscale check`: parse arguments → read → run rules → render → exit code."""

from __future__ import annotations

import sys
from typing import Annotated

import typer

from qscale.checkpoint import read_checkpoint
from qscale.cli.options import (
    EngineOpt,
    FailOn,
    FormatOpt,
    ModelArg,
    OutputFormat,
    OutputOpt,
    emit,
    split_codes,
)
from qscale.findings import Severity
from qscale.report import render
from qscale.runner import CheckOptions, check


def check_cmd(
    model: ModelArg,
    engine: EngineOpt = None,
    fmt: FormatOpt = OutputFormat.console,
    fail_on: Annotated[
        FailOn, typer.Option("--fail-on", help="Exit 1 on findings at or above this severity.")
    ] = FailOn.error,
    select: Annotated[
        list[str] | None,
        typer.Option(
            "--select", help="Only these rule codes, prefixes or names (comma-separated)."
        ),
    ] = None,
    ignore: Annotated[
        list[str] | None, typer.Option("--ignore", help="Skip these rule codes, prefixes or names.")
    ] = None,
    output: OutputOpt = None,
) -> None:
    """Check a quantized checkpoint. Exit 0: clean; 1: findings; 2: could not finish.

    Examples:

      qscale check ./Qwen3.5-35B-A3B-FP8 --engine vllm==0.19.1

      qscale check model.safetensors --format json --fail-on warning
    """
    ckpt = read_checkpoint(model)
    report = check(ckpt, CheckOptions(split_codes(select), split_codes(ignore), engine))
    color = output is None and fmt == OutputFormat.console and sys.stdout.isatty()
    emit(render(report, fmt.value, color=color), output)
    if report.crashed:
        raise typer.Exit(2)
    raise typer.Exit(1 if report.fails(Severity.parse(fail_on.value)) else 0)
