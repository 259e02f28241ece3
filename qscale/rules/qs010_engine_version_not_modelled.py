"""The engine version asked for is outside the versions qscale has read.

## What it checks
Looks `--engine NAME==VERSION` up in qscale's engine profiles (version ranges whose loader
source was read). A version outside every range is modelled by the nearest profile.

## Why it matters
Loader behaviour changes between releases (vLLM 0.20.0 changed how tuple shard ids fill scale
slots). For a release qscale has not read, its verdict is an extrapolation; this note says so.

## Example
`vllm==0.40.0 is outside the versions qscale has read; modelled as vllm >=0.20,<0.34`

## Fix
None needed; update qscale when a newer release is supported.
"""

from qscale.rules._api import Applicability, Fix, Rule, Severity

RULE = Rule(
    default_fix=Fix(
        "pass a version inside the ranges qscale has read (`qscale check --engine "
        "vllm==X`), or check the release notes of this one for loader changes",
        Applicability.MANUAL,
    ),
    code="QS010",
    name="engine-version-not-modelled",
    severity=Severity.INFO,
    doc=__doc__ or "",
)
