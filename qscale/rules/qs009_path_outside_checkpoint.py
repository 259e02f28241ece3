"""An index entry or a link that points outside the checkpoint folder.

## What it checks
Refuses index entries that are absolute, contain `..` or a folder, and files that are links
resolving outside the folder (links into the Hugging Face cache's `blobs/` of the same repo are
allowed: that is how the cache stores snapshots).

## Why it matters
A crafted index can make a loader read arbitrary files; qscale never follows such paths.

## Example
`model.safetensors.index.json: entry `../../etc/passwd` points outside the checkpoint folder`

## Fix
None: inspect the index by hand. qscale stops with exit code 2.
"""

from qscale.rules._api import Rule, Severity

RULE = Rule(
    code="QS009", name="path-outside-checkpoint", severity=Severity.ERROR, doc=__doc__ or ""
)
