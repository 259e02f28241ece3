"""The same tensor name stored in two files.

## What it checks
Collects tensor names across all files of the checkpoint and reports a name stored twice.

## Why it matters
Engines iterate files in order and load every tensor they meet; which copy wins depends on
file order, so the model you test may not be the model you deploy.

## Example
`model-00002.safetensors: tensor `lm_head.weight` is also in model-00001.safetensors`

## Fix
None: remove one copy. qscale stops with exit code 2.
"""

from qscale.rules._api import Rule, Severity

RULE = Rule(code="QS005", name="duplicate-tensor", severity=Severity.ERROR, doc=__doc__ or "")
