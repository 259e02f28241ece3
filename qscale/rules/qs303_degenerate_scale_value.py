"""A scale holds NaN, ±inf, zero, a negative value or a float32 sentinel.

## What it checks
Every small scale tensor qscale decodes while reading headers (per-tensor and per-partition
weight and input scales, NVFP4 global scales, KV-cache scales, per-expert scales): each value
must be finite and positive, and not the float32 extreme `±3.4e38` an exporter or a loader uses
as "never written".

## Why it matters
A scale multiplies (or divides) every value it covers. NaN or inf spreads through the first
matmul; zero zeroes a layer, or, where the engine divides by it (compressed-tensors NVFP4
global scales, `1 / input_scale`), produces inf. Experts that calibration never routed a token
to are the usual source: their input scales come out 0 or garbage (failure class 4). Engines do
not check scale values when they load.

## Example
`model.layers.1.mlp.experts.7.up_proj.input_scale` = 0 (expected a finite value > 0)

## Fix
None that preserves the model: recalibrate (route calibration data through every expert), or
switch the affected modules to dynamic activation scales. `qscale fix` rejects such checkpoints.
"""

import math
from collections.abc import Iterator

from qscale.rules._api import Applicability, Context, Finding, Fix, Rule, Severity
from qscale.schemes import KV_SCALE_PARAMS, SCALE_PARAMS

#: Parameter names that hold scales (multipliers or divisors); all must be finite and > 0.
SCALES = SCALE_PARAMS | KV_SCALE_PARAMS
#: |value| at or above this is a float32 sentinel (FLT_MAX = 3.4028e38), not a scale.
SENTINEL_MAGNITUDE = 1e38


def _problem(v: float) -> str | None:
    if math.isnan(v):
        return "NaN"
    if math.isinf(v):
        return "inf" if v > 0 else "-inf"
    if abs(v) >= SENTINEL_MAGNITUDE:
        return f"{v:.3g} (a float32 sentinel)"
    if v == 0:
        return "0"
    if v < 0:
        return f"{v:.3g} (negative)"
    return None


def check(ctx: Context) -> Iterator[Finding]:
    """Report decoded scale tensors with a non-finite, non-positive or sentinel value."""
    for name, arr in ctx.checkpoint.values.items():
        if name.rpartition(".")[2] not in SCALES or arr.dtype.kind != "f":
            continue
        flat = arr.reshape(-1)
        bad = [(i, p) for i, v in enumerate(flat.tolist()) if (p := _problem(float(v)))]
        if not bad:
            continue
        i, what = bad[0]
        where = f"[{i}] " if flat.size > 1 else ""
        more = f" (and {len(bad) - 1} more of {flat.size} values)" if len(bad) > 1 else ""
        yield RULE.finding(
            f"`{name}` {where}= {what}{more}; expected a finite value > 0",
            ctx.at(name),
            fix=FIX,
        )


FIX = Fix(
    "recalibrate the affected modules, or switch them to dynamic activation scales",
    Applicability.MANUAL,
)

RULE = Rule(
    code="QS303",
    name="degenerate-scale-value",
    severity=Severity.ERROR,
    doc=__doc__ or "",
    check=check,
    reads_values=True,
)
