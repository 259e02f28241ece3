"""`qscale layouts`: every TP × EP combination up to a bound, which load and why the others do
not; and the layout options `qscale check` shares."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Annotated, Any

import typer

from qscale.cli.options import (
    EngineOpt,
    FormatOpt,
    ModelArg,
    OutputFormat,
    OutputOpt,
    emit,
    error_document,
)
from qscale.layout import Deployment, Platform

if TYPE_CHECKING:  # the checkpoint reader and the layout search: imported when a command runs,
    # not by `qscale check --help` (check shares the layout options defined here)
    from qscale.constraints import Problem
    from qscale.supported import Cell, LayoutTable

TpOpt = Annotated[int, typer.Option("--tp", help="Tensor-parallel size.", min=1)]
DpOpt = Annotated[int, typer.Option("--dp", help="Data-parallel size.", min=1)]
EpOpt = Annotated[
    int | None,
    typer.Option("--ep", help="Expert-parallel size (turns expert parallel on).", min=1),
]
EnableEpOpt = Annotated[
    bool,
    typer.Option(
        "--enable-expert-parallel", help="vLLM expert parallel: EP = TP × DP (SGLang: EP = TP)."
    ),
]
SpMoeOpt = Annotated[
    bool | None,
    typer.Option(
        "--sequence-parallel-moe/--no-sequence-parallel-moe",
        help="vLLM sequence-parallel MoE (default: on for EP + TP > 1 + DP > 1, as vLLM does).",
        show_default=False,
    ),
]
A2aOpt = Annotated[
    str | None,
    typer.Option(
        "--a2a-backend",
        help="MoE all-to-all backend in the engine's vocabulary (vLLM: allgather_reducescatter,"
        " naive, pplx, deepep_high_throughput, deepep_low_latency, mori, …; SGLang: none,"
        " deepep, mooncake, mori, flashinfer, megamoe, ascend_fuseep, …; `allreduce` for the"
        " plain path).",
    ),
]
DisableFusionOpt = Annotated[
    bool,
    typer.Option("--disable-shared-experts-fusion", help="SGLang: never fuse the shared expert."),
]
EnforceFusionOpt = Annotated[
    bool,
    typer.Option(
        "--enforce-shared-experts-fusion", help="SGLang: fuse the shared expert where possible."
    ),
]
CudaFusionOpt = Annotated[
    bool,
    typer.Option(
        "--enable-cuda-shared-expert-fusion",
        help="SGLang `enable_cuda_shared_expert_fusion`: fuse the shared expert on CUDA.",
    ),
]
AllowDeprecatedOpt = Annotated[
    bool,
    typer.Option(
        "--allow-deprecated-quantization",
        help="vLLM `--allow-deprecated-quantization`: the engine is started with it, so a"
        " deprecated quantization method (fbgemm_fp8) loads.",
    ),
]
PlatformOpt = Annotated[
    Platform,
    typer.Option("--platform", help="cuda, rocm, or rocm-aiter (AMD with AITER kernels)."),
]


def render_table(t: LayoutTable, source: str) -> str:
    """The grid, then why each refused combination does not load."""
    mark = {True: "ok", False: "x"}
    lines = [
        f"{source}: {t.engine}, TP x EP (ok: loads, ok!: loads with warnings, x: refused,"
        f" -: not a {t.name} layout)",
        "TP\\EP " + "".join(f"{e:>6}" for e in t.eps),
    ]
    for tp in t.tps:
        row = []
        for ep in t.eps:
            c = t.cell(tp, ep)
            loads = c.loads and not t.refused
            sym = "-" if c.deployment is None else mark[loads] + ("!" if c.warnings else "")
            row.append(f"{sym:>6}")
        lines.append(f"{tp:>5} " + "".join(row))
    if t.refused:
        n = len(t.refused)
        lines.append(f"refused in every layout ({n} cause(s); qscale check says more):")
        lines += [f"  {why}" for why in t.refused[:5]]
        if len(t.refused) > 5:
            lines.append(f"  … and {len(t.refused) - 5} more")
    for c in t.cells:
        if c.deployment is not None and (c.errors or c.warnings):
            lines.append(f"TP={c.tp} EP={c.ep}: {c.layout}")
            lines += [f"  error {p.code}: {p.message}" for p in c.errors]
            lines += [f"  warning {p.code}: {p.message}" for p in c.warnings]
    return "\n".join(lines) + "\n"


def _problem(p: Problem) -> dict[str, Any]:
    return {"code": p.code, "message": p.message, "tensor": p.tensor, "param": p.param}


def _cell(c: Cell, refused: bool) -> dict[str, Any]:
    return {
        "tp": c.tp,
        "ep": c.ep,
        "runs": c.deployment is not None,
        "loads": c.loads and not refused,
        "layout": c.layout or None,
        "why_not": c.why_not or None,
        "errors": [_problem(p) for p in c.errors],
        "warnings": [_problem(p) for p in c.warnings],
    }


def table_dict(t: LayoutTable) -> dict[str, Any]:
    """The table as JSON-ready data."""
    return {
        "schema_version": 1,
        "engine": t.engine,
        "tp": list(t.tps),
        "ep": list(t.eps),
        "refused": list(t.refused),
        "cells": [_cell(c, bool(t.refused)) for c in t.cells],
    }


@error_document
def layouts_cmd(
    model: ModelArg,
    engine: EngineOpt = None,
    max_tp: Annotated[int, typer.Option("--max-tp", help="Largest TP to try.", min=1)] = 16,
    max_ep: Annotated[int, typer.Option("--max-ep", help="Largest EP to try.", min=1)] = 64,
    a2a_backend: A2aOpt = None,
    platform: PlatformOpt = Platform.CUDA,
    allow_deprecated_quantization: AllowDeprecatedOpt = False,
    fmt: FormatOpt = OutputFormat.console,
    output: OutputOpt = None,
) -> None:
    """List every TP × EP combination up to a bound: which load, and why the others do not.

    TP and EP run over the powers of two and the divisors of the head and expert counts.

    Example: qscale layouts ./Qwen3.5-397B-A17B-FP8 --engine vllm==0.20.0 --max-tp 32
    """
    from qscale.source import read_checkpoint
    from qscale.supported import supported_layouts

    base = Deployment(a2a_backend=a2a_backend, platform=platform,
                      allow_deprecated_quantization=allow_deprecated_quantization)
    ckpt = read_checkpoint(model)
    table = supported_layouts(ckpt, engine, max_tp=max_tp, max_ep=max_ep, base=base)
    if fmt == OutputFormat.json:
        emit(json.dumps(table_dict(table), indent=2) + "\n", output, ckpt.input_paths())
        return
    emit(render_table(table, model), output, ckpt.input_paths())


def deployment_from(
    *,
    tp: int,
    dp: int,
    ep: int | None,
    enable_expert_parallel: bool,
    sequence_parallel_moe: bool | None,
    a2a_backend: str | None,
    disable_fusion: bool,
    enforce_fusion: bool,
    cuda_fusion: bool,
    platform: Platform | None,
    allow_deprecated: bool = False,
) -> Deployment:
    """The Deployment `qscale check`'s layout options describe (UsageError if they clash)."""
    return Deployment(
        tp=tp,
        dp=dp,
        ep=ep,
        enable_expert_parallel=enable_expert_parallel,
        sequence_parallel_moe=sequence_parallel_moe,
        a2a_backend=a2a_backend,
        disable_shared_experts_fusion=disable_fusion,
        enforce_shared_experts_fusion=enforce_fusion,
        cuda_shared_expert_fusion=cuda_fusion,
        platform=platform,
        allow_deprecated_quantization=allow_deprecated,
    )
