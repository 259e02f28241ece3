"""`qscale inspect`: every module with its scheme, why, and its tensors."""

from __future__ import annotations

import json
from typing import Annotated, Any

import typer

from qscale.cli.options import FormatOpt, ModelArg, OutputFormat, OutputOpt, emit, error_document
from qscale.formats import ModuleQuant, resolve_quantization
from qscale.progress import read_progress
from qscale.rules._api import fmt_shape
from qscale.source import read_checkpoint


def module_dict(mq: ModuleQuant) -> dict[str, Any]:
    """One module as JSON-ready data."""
    s = mq.scheme
    return {
        "name": mq.module.name,
        "kind": mq.module.kind.value,
        "scheme": s.label if s else None,
        "format": s.format if s else None,
        "weights": s.weights.describe() if s else None,
        "activations": s.inputs.describe() if s and s.inputs else None,
        "reason": mq.resolution.reason,
        "logical_shape": list(mq.logical_shape) if mq.logical_shape else None,
        "tensors": [
            {"name": t.name, "dtype": t.dtype, "shape": list(t.shape), "file": t.file}
            for t in mq.module.tensors.values()
        ],
        "expected": [
            {
                "param": sp.param,
                "dtypes": sorted(sp.dtypes),
                "shapes": [list(x) for x in sp.accepted(*mq.logical_shape)]
                if mq.logical_shape
                else None,
            }
            for sp in (s.tensors if s else ())
        ],
    }


@error_document
def inspect_cmd(
    model: ModelArg,
    name: Annotated[
        str | None,
        typer.Option("--filter", "-k", help="Only modules whose name contains this text."),
    ] = None,
    quantized: Annotated[bool, typer.Option("--quantized", help="Only quantized modules.")] = False,
    fmt: FormatOpt = OutputFormat.console,
    output: OutputOpt = None,
) -> None:
    """List modules, their quantization schemes and tensors."""
    with read_progress(fmt == OutputFormat.console) as progress:
        ckpt = read_checkpoint(model, progress=progress, header_only=True)  # no value rule runs
    qmap = resolve_quantization(ckpt)
    mods = [
        m
        for m in qmap.modules.values()
        if (name is None or name in m.module.name) and (not quantized or m.scheme)
    ]
    method = qmap.format.method if qmap.format else None
    if fmt == OutputFormat.json:
        emit(
            json.dumps(
                {
                    "schema_version": 1,
                    "source": ckpt.source,
                    "quant_method": method,
                    "modules": [module_dict(m) for m in mods],
                },
                indent=2,
            )
            + "\n",
            output,
            ckpt.input_paths(),
        )
        return
    lines = [
        f"{ckpt.source}: quant_method {method or 'none'}, {len(ckpt.files)} files,"
        f" {len(ckpt.tensors)} tensors"
    ]
    for m in mods:
        label = m.scheme.label if m.scheme else "unquantized"
        lines.append(f"{m.module.name}  [{m.module.kind.value}]  {label}  — {m.resolution.reason}")
        lines.extend(f"    {p}: {t.dtype}{fmt_shape(t.shape)}" for p, t in m.module.tensors.items())
    emit("\n".join(lines) + "\n", output, ckpt.input_paths())
