"""A tensor whose dtype is not a safetensors dtype.

## What it checks
Checks each header entry's dtype against the safetensors dtype list (BOOL, U8…U64, I8…I64,
F16, BF16, F32, F64, F8_E4M3, F8_E5M2, F8_E8M0, F4, F6_E2M3, F6_E3M2).

## Why it matters
No engine can interpret the bytes of an unknown dtype; safetensors refuses the file.

## Example
`model.safetensors: tensor `x.weight` has unknown dtype 'FP8'`

## Fix
None: re-export the checkpoint with a current safetensors. qscale stops with exit code 2.
"""

from qscale.rules._api import Rule, Severity

RULE = Rule(code="QS004", name="unknown-dtype", severity=Severity.ERROR, doc=__doc__ or "")
