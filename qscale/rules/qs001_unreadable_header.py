"""A safetensors header that cannot be read: truncated, invalid JSON, or malformed entries.

## What it checks
Reads the first 8 bytes (the header length) and the JSON header of every safetensors file,
and checks each entry has a dtype, an integer shape and two integer data offsets.

## Why it matters
Engines read every file through this header. A header whose length runs past the end of
the file is the usual sign of a download that stopped early; vLLM fails with a generic
`SafetensorError` deep inside weight loading, after minutes of start-up.

## Example
`model-00002-of-00004.safetensors: header length 9123456789 exceeds the file size of 4096 bytes`

## Fix
None: fetch the file again. qscale stops with exit code 2 and does not judge the rest.
"""

from qscale.rules._api import Rule, Severity

RULE = Rule(code="QS001", name="unreadable-header", severity=Severity.ERROR, doc=__doc__ or "")
