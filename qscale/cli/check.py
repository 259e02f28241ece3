"""`qscale check`: parse arguments → read → run rules → render → exit code."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from qscale.cli import layouts as layout_opts
from qscale.cli.options import (
    BaselineOpt,
    CheckFormat,
    CheckFormatOpt,
    EngineOpt,
    FailOn,
    ModelArg,
    OutputOpt,
    WriteBaselineOpt,
    emit,
    emit_error,
    split_codes,
)
from qscale.errors import QscaleError, UsageError
from qscale.findings import Severity
from qscale.layout import Platform


def check_cmd(
    model: ModelArg,
    engine: EngineOpt = None,
    fmt: CheckFormatOpt = CheckFormat.console,
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
    baseline: BaselineOpt = None,
    write_baseline: WriteBaselineOpt = None,
    tp: layout_opts.TpOpt = 1,
    dp: layout_opts.DpOpt = 1,
    ep: layout_opts.EpOpt = None,
    enable_expert_parallel: layout_opts.EnableEpOpt = False,
    sequence_parallel_moe: layout_opts.SpMoeOpt = None,
    a2a_backend: layout_opts.A2aOpt = None,
    disable_shared_experts_fusion: layout_opts.DisableFusionOpt = False,
    enforce_shared_experts_fusion: layout_opts.EnforceFusionOpt = False,
    enable_cuda_shared_expert_fusion: layout_opts.CudaFusionOpt = False,
    allow_deprecated_quantization: layout_opts.AllowDeprecatedOpt = False,
    platform: Annotated[
        Platform | None,
        typer.Option(
            "--platform",
            help="cuda, rocm, or rocm-aiter (AMD with AITER kernels). Not given: CUDA is"
            " assumed, and a verdict the platform would change is a warning.",
        ),
    ] = None,
    allow_partial: Annotated[
        bool,
        typer.Option(
            "--allow-partial",
            help="When rules could not run (e.g. an architecture qscale has no family for),"
            " exit on the findings of the rules that ran instead of 2. The report still says"
            " it is partial.",
        ),
    ] = False,
    header_only: Annotated[
        bool,
        typer.Option(
            "--header-only",
            help="Read headers and small tensors only, not every scale value (on the Hub: no"
            " range reads past the headers). The value check (QS303) is then partial.",
        ),
    ] = False,
) -> None:
    """Check a quantized checkpoint. Exit 0: clean; 1: findings; 2: could not finish, or a
    partial check (rules that could not run; see --allow-partial).

    Examples:

      qscale check ./Qwen3.5-35B-A3B-FP8 --engine vllm==0.19.1

      qscale check model.safetensors --format json --fail-on warning

      qscale check ./ckpt -f sarif -o qscale.sarif --baseline baseline.json

      qscale check ./ckpt --engine sglang==0.5.12 --tp 2 --ep 2 --platform rocm-aiter

      qscale check ./ckpt-of-a-new-architecture --allow-partial
    """
    try:
        _check(**locals())
    except QscaleError as exc:  # exit 2: still a valid document in the format asked for
        emit_error(fmt, exc.message, hint=exc.hint, code=exc.code, source=model)
        raise


def _check(
    model: str,
    engine: str | None,
    fmt: CheckFormat,
    fail_on: FailOn,
    select: list[str] | None,
    ignore: list[str] | None,
    output: Path | None,
    baseline: Path | None,
    write_baseline: Path | None,
    tp: int,
    dp: int,
    ep: int | None,
    enable_expert_parallel: bool,
    sequence_parallel_moe: bool | None,
    a2a_backend: str | None,
    disable_shared_experts_fusion: bool,
    enforce_shared_experts_fusion: bool,
    enable_cuda_shared_expert_fusion: bool,
    allow_deprecated_quantization: bool,
    platform: Platform | None,
    allow_partial: bool,
    header_only: bool,
) -> None:
    if baseline is not None and write_baseline is not None:
        raise UsageError(
            "give --baseline or --write-baseline, not both",
            hint="to refresh a baseline, rerun with --write-baseline FILE alone",
        )
    deployment = layout_opts.deployment_from(
        tp=tp,
        dp=dp,
        ep=ep,
        enable_expert_parallel=enable_expert_parallel,
        sequence_parallel_moe=sequence_parallel_moe,
        a2a_backend=a2a_backend,
        disable_fusion=disable_shared_experts_fusion,
        enforce_fusion=enforce_shared_experts_fusion,
        cuda_fusion=enable_cuda_shared_expert_fusion,
        platform=platform,
        allow_deprecated=allow_deprecated_quantization,
    )
    # each part imported where it is first needed, so that `qscale check --help`, a usage error
    # or a missing checkpoint stop before the rules (and numpy, but for a missing checkpoint) load
    from qscale import _exit
    from qscale.progress import read_progress
    from qscale.source import read_checkpoint

    if baseline is not None or write_baseline is not None:
        from qscale import baseline as baselines
    accepted = baselines.read_baseline(baseline) if baseline is not None else None
    with read_progress(fmt == CheckFormat.console) as progress:
        ckpt = read_checkpoint(model, progress=progress, header_only=header_only)
    from qscale._files import refuse_overwrite
    from qscale.report import render
    from qscale.runner import CheckOptions, check

    report = check(
        ckpt,
        CheckOptions(split_codes(select), split_codes(ignore), engine, deployment=deployment),
    )
    if accepted is not None:
        ran = baselines.checked_codes(report, split_codes(select), split_codes(ignore))
        report = baselines.apply_baseline(report, accepted, checked=ran)
    if write_baseline is not None:
        refuse_overwrite(write_baseline, ckpt.input_paths(), "--write-baseline")
        n = baselines.write_baseline(report, write_baseline)
        typer.echo(f"wrote {n} accepted finding(s) to {write_baseline}", err=True)
    _exit.keep(ckpt, report)  # the console script exits without freeing them (qscale._exit)
    color = (output is None and fmt == CheckFormat.console and sys.stdout is not None
             and sys.stdout.isatty())
    emit(render(report, fmt.value, color=color, allow_partial=allow_partial), output,
         ckpt.input_paths())  # fmt: skip
    if report.crashed or (not report.complete and not allow_partial):
        raise typer.Exit(2)
    if write_baseline is not None:
        raise typer.Exit(0)
    raise typer.Exit(1 if report.fails(Severity.parse(fail_on.value)) else 0)
