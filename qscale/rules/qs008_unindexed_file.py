"""A `.safetensors` file in the folder that the index does not list.

## What it checks
Lists the `*.safetensors` files of the folder and compares them with the index's files.

## Why it matters
Engines load only indexed files, so a stray file (often a leftover of an earlier export, or
a file of another variant copied in) is silently ignored: the weights in it are not the ones
served.

## Example
`model-extra.safetensors: not listed in model.safetensors.index.json`

## Fix
Remove the file, or rebuild the index if it belongs. qscale stops with exit code 2.
"""

from qscale.rules._api import Rule, Severity

RULE = Rule(code="QS008", name="unindexed-file", severity=Severity.ERROR, doc=__doc__ or "")
