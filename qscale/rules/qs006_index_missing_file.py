"""The index names a file that is not in the folder, or has no usable weight map.

## What it checks
Reads `model.safetensors.index.json` and checks that `weight_map` is a name-to-file map and
that every file it names exists.

## Why it matters
vLLM and transformers load exactly the files the index lists: a missing file fails the
load, after the other files were read.

## Example
`model.safetensors.index.json: names `model-00003-of-00004.safetensors`, which is not in the folder`

## Fix
Download the missing file. qscale stops with exit code 2.
"""

from qscale.rules._api import Rule, Severity

RULE = Rule(code="QS006", name="index-missing-file", severity=Severity.ERROR, doc=__doc__ or "")
