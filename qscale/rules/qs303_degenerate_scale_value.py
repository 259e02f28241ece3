"""A scale holds NaN, ±inf, zero, a negative value or a float32 sentinel.

## What it checks
Every element of every scale tensor: per-tensor and per-partition weight and input scales,
NVFP4 global scales, KV-cache scales, and the per-channel, group and block scales, in every
encoding (F32/BF16/F16, F8_E4M3 block scales, E8M0 stored as U8 or F8_E8M0), and DeepSeek-V4's
`<module>.scale` block scales (E8M0 or F32), which vLLM renames to weight scales. Each value must
be finite and positive, and not the float32 extreme `±3.4e38` an exporter or a loader uses as
"never written"; an E8M0 byte `0xFF` is NaN. Small scales are decoded with the headers; the
others are streamed once in file order (the deep scan), keeping only counts of bad values and
the first one's index. With `--header-only` the large scales are not read and the check is
partial.

## Why it matters
A scale multiplies (or divides) every value it covers. NaN or inf spreads through the first
matmul; zero zeroes a layer, or, where the engine divides by it (compressed-tensors NVFP4
global scales, `1 / input_scale`), produces inf. Experts that calibration never routed a token
to are the usual source: their input scales come out 0 or garbage (failure class 4). Engines do
not check scale values when they load.

## Example
`model.layers.1.mlp.experts.7.up_proj.input_scale` = 0 (expected a finite value > 0)

`model.layers.0.mlp.down_proj.weight_scale` [17, 0] = 0 (and 3 more of 4096 values: 4 zero);
expected a finite value > 0

## Fix
None that preserves the model: recalibrate (route calibration data through every expert), or
switch the affected modules to dynamic activation scales. `qscale fix` rejects such checkpoints.
"""

import math
from collections.abc import Iterator

import numpy as np

from qscale.rules._api import Applicability, Context, Finding, Fix, Rule, Severity
from qscale.safetensors_io import decode
from qscale.scale_scan import SENTINEL_MAGNITUDE, ScaleStats, scale_names

_WORDS = {
    "NaN": "NaN",
    "inf": "inf",
    "-inf": "-inf",
    "sentinel": "float32 sentinel",
    "zero": "zero",
    "negative": "negative",
}


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


def _from_stats(st: ScaleStats) -> str:
    """The message of a streamed scale: the first bad element, and how many there are."""
    first = _problem(st.first_value) or f"{st.first_value:.3g}"
    if st.dtype in ("U8", "F8_E8M0") and math.isnan(st.first_value):
        first = "NaN (E8M0 byte 0xFF)"
    where = f"[{', '.join(map(str, st.first_index))}] " if st.numel > 1 else ""
    kinds = ", ".join(f"{n} {_WORDS[k]}" for k, n in st.counts.items())
    more = f" (and {st.bad - 1} more of {st.numel} values: {kinds})" if st.bad > 1 else ""
    return f"`{st.name}` {where}= {first}{more}; expected a finite value > 0"


def check(ctx: Context) -> Iterator[Finding]:
    """Report scale tensors with a non-finite, non-positive or sentinel value."""
    ckpt = ctx.checkpoint
    judged: set[str] = set()
    names = scale_names(ckpt.config.raw)
    for name, arr in ckpt.values.items():
        if name.rpartition(".")[2] not in names:
            continue
        if arr.dtype == np.uint8:  # E8M0 exponent bytes stored as U8
            arr = decode("F8_E8M0", arr.shape, arr.tobytes())
        elif arr.dtype.kind != "f":
            continue
        judged.add(name)
        flat = arr.reshape(-1)
        bad = [(i, p) for i, v in enumerate(flat.tolist()) if (p := _problem(float(v)))]
        if not bad:
            continue
        i, what = bad[0]
        if what == "NaN" and ckpt.tensors[name].dtype in ("U8", "F8_E8M0"):
            what = "NaN (E8M0 byte 0xFF)"
        where = f"[{i}] " if flat.size > 1 else ""
        more = f" (and {len(bad) - 1} more of {flat.size} values)" if len(bad) > 1 else ""
        yield RULE.finding(
            f"`{name}` {where}= {what}{more}; expected a finite value > 0",
            ctx.at(name),
            fix=FIX,
        )
    scan = ckpt.scale_scan
    for name, st in (scan.bad.items() if scan is not None else ()):
        if name not in judged:  # a large scale, or E8M0 bytes stored as U8
            yield RULE.finding(_from_stats(st), ctx.at(name), fix=FIX)


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
    reads_scan=True,
)
