"""`qscale fix`: parse arguments → plan / write / re-check → render → exit code."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from qscale.cli.options import EngineOpt, FormatOpt, OutputFormat
from qscale.fix import fix
from qscale.fix.render import render_console, render_json


def fix_cmd(
    model: Annotated[
        str, typer.Argument(help="Checkpoint folder to fix (never modified).", show_default=False)
    ],
    out: Annotated[
        Path | None,
        typer.Option("--out", "-o", help="New folder for the fixed checkpoint (must not exist)."),
    ] = None,
    engine: EngineOpt = None,
    unsafe_fixes: Annotated[
        bool,
        typer.Option("--unsafe-fixes", help="Also apply lossy fixes (requantize, dequantize)."),
    ] = False,
    dry_run: Annotated[
        bool,
        typer.Option("--dry-run", help="Print the plan and the bytes involved; write nothing."),
    ] = False,
    force: Annotated[
        bool,
        typer.Option("--force", help="Replace --out if it holds an earlier `qscale fix` output."),
    ] = False,
    fmt: FormatOpt = OutputFormat.console,
) -> None:
    """Rewrite a checkpoint so the engine loads it correctly, or reject it.

    Safe fixes are applied; unsafe (lossy) ones only with --unsafe-fixes; manual ones are shown.

    The output is written next to --out, re-checked, then renamed; unchanged files are hard links.

    Exit 0: fixed, or nothing to fix; 1: rejected or re-check failed (nothing written); 2: error.

    Examples:

      qscale fix ./Qwen3.5-35B-A3B-FP8 --out ./Qwen3.5-35B-A3B-FP8-fixed --engine vllm==0.19.1

      qscale fix ./model --dry-run --unsafe-fixes --format json
    """
    result = fix(model, out, engine=engine, unsafe=unsafe_fixes, dry_run=dry_run, force=force)
    render = render_json if fmt == OutputFormat.json else render_console
    typer.echo(render(result), nl=False)
    raise typer.Exit(result.exit_code)
