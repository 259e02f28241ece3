"""`qscale fix`: parse arguments → plan / write / re-check → render → exit code."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from qscale.cli import layouts as layout_opts
from qscale.cli.options import EngineOpt, FormatOpt, OutputFormat, error_document
from qscale.fix import fix
from qscale.fix.render import render_console, render_json
from qscale.layout import Platform


@error_document
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
    tp: layout_opts.TpOpt = 1,
    dp: layout_opts.DpOpt = 1,
    ep: layout_opts.EpOpt = None,
    enable_expert_parallel: layout_opts.EnableEpOpt = False,
    a2a_backend: layout_opts.A2aOpt = None,
    disable_shared_experts_fusion: layout_opts.DisableFusionOpt = False,
    enforce_shared_experts_fusion: layout_opts.EnforceFusionOpt = False,
    enable_cuda_shared_expert_fusion: layout_opts.CudaFusionOpt = False,
    allow_deprecated_quantization: layout_opts.AllowDeprecatedOpt = False,
    platform: layout_opts.PlatformOpt = Platform.CUDA,
) -> None:
    """Rewrite a checkpoint so the engine loads it correctly, or reject it.

    Safe fixes are applied; unsafe (lossy) ones only with --unsafe-fixes; manual ones are shown.
    Fixes answer the findings `qscale check` gives for the same engine and layout options.

    The output is written next to --out, re-checked, then renamed; unchanged files are hard links.

    Exit 0: fixed, or nothing to fix; 1: rejected or re-check failed (nothing written); 2: error.

    Examples:

      qscale fix ./Qwen3.5-35B-A3B-FP8 --out ./Qwen3.5-35B-A3B-FP8-fixed --engine vllm==0.19.1

      qscale fix ./model --dry-run --unsafe-fixes --format json
    """
    deployment = layout_opts.deployment_from(
        tp=tp,
        dp=dp,
        ep=ep,
        enable_expert_parallel=enable_expert_parallel,
        sequence_parallel_moe=None,
        a2a_backend=a2a_backend,
        disable_fusion=disable_shared_experts_fusion,
        enforce_fusion=enforce_shared_experts_fusion,
        cuda_fusion=enable_cuda_shared_expert_fusion,
        platform=platform,
        allow_deprecated=allow_deprecated_quantization,
    )
    result = fix(
        model,
        out,
        engine=engine,
        unsafe=unsafe_fixes,
        dry_run=dry_run,
        force=force,
        deployment=deployment,
    )
    render = render_json if fmt == OutputFormat.json else render_console
    typer.echo(render(result), nl=False)
    raise typer.Exit(result.exit_code)
