"""A tensor whose byte length differs from its dtype times its shape.

## What it checks
For every header entry, compares `end - begin` with `prod(shape) x bits(dtype) / 8`.

## Why it matters
The engine reads `prod(shape)` elements of `dtype` from the offsets; a mismatch means the
header lies about the tensor, and the loaded values are garbage or the read fails.

## Example
`model.safetensors: tensor `x.weight` holds 96 bytes but F32[5, 5] needs 100`

## Fix
None: regenerate the file. qscale stops with exit code 2.
"""

from qscale.rules._api import Rule, Severity

RULE = Rule(code="QS003", name="tensor-size-mismatch", severity=Severity.ERROR, doc=__doc__ or "")
