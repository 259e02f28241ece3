"""The index and the files disagree about which tensor lives where.

## What it checks
Checks that every tensor the index lists is in the file it names, and that every tensor in
the files is listed.

## Why it matters
A stale index (left over from an earlier save) places tensors in files that no longer hold
them. Loaders that trust the index miss tensors; loaders that scan files load unlisted ones.

## Example
`model-00001.safetensors: has no tensor `x.weight_scale`, which
model.safetensors.index.json places there`

## Fix
Rebuild the index (`qscale fix` rewrites it). qscale stops with exit code 2.
"""

from qscale.rules._api import Rule, Severity

RULE = Rule(code="QS007", name="index-tensor-mismatch", severity=Severity.ERROR, doc=__doc__ or "")
