"""Tensor data offsets that leave gaps, overlap, or run past the end of the file.

## What it checks
Sorts the tensors of each file by offset and checks that they tile the data buffer exactly:
the first starts at 0, each starts where the previous ended, the last ends at the end of the
file.

## Why it matters
Overlapping tensors silently share bytes; a tensor past the end of the file is a truncated
download; gaps mean the header and the data were written by different processes. The
safetensors format forbids all three.

## Example
`model.safetensors: tensor `lm_head.weight` ends at byte 8392, past the end of the file
(8000 bytes; truncated?)`

## Fix
None: the file is damaged. qscale stops with exit code 2.
"""

from qscale.rules._api import Rule, Severity

RULE = Rule(code="QS002", name="broken-data-layout", severity=Severity.ERROR, doc=__doc__ or "")
