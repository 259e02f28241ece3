"""The engine version asked for is outside the versions qscale has read.

## What it checks
Looks `--engine NAME==VERSION` up in qscale's engine profiles (version ranges whose loader
source was read) and, for an engine with a generated catalogue (vLLM), its release list. A
version outside every profile, or before the first or after the newest catalogued release, is
modelled by the nearest one. A range (`--engine 'vllm>=0.19'`) checks the newest catalogued
release inside it and never draws this note. A catalogued release whose quantization-format
facts (the catalogue's `formats` section) lack an entry for it draws the note too, naming
the facts: the formats that read them are modelled by the nearest release that has them.

## Why it matters
Loader behaviour changes between releases (vLLM 0.20.0 changed how tuple shard ids fill scale
slots). For a release qscale has not read, its verdict is an extrapolation, so the check is
partial: `qscale check` exits 2 unless `--allow-partial` accepts it, and every format says so.

## Example
`vllm==9.9.9 is outside the versions qscale has read (qscale models 23 vllm releases, 0.18.0
to 0.33.0); modelled as vllm >=0.22,<0.34`

## Fix
Pass a modelled version (`qscale models` lists them) or a range, or `--allow-partial` to take
the extrapolation; update qscale when a newer release is supported.
"""

from qscale.rules._api import Applicability, Fix, Rule, Severity

RULE = Rule(
    default_fix=Fix(
        "pass a version qscale has read (`qscale models` lists them), or accept the"
        " extrapolation with --allow-partial after checking the release notes for loader"
        " changes",
        Applicability.MANUAL,
    ),
    code="QS010",
    name="engine-version-not-modelled",
    severity=Severity.INFO,
    doc=__doc__ or "",
)
