"""Two quantization configs in the checkpoint disagree.

## What it checks
Checkpoints can carry the quantization config in several places: `config.json`'s
`quantization_config`, a copy nested in `text_config` (multimodal models), and ModelOpt's
`hf_quant_config.json`. When more than one is present, their method and algorithm (`quant_method`,
ModelOpt `quant_algo`, compressed-tensors `format`) must agree.

## Why it matters
Engines read exactly one of them — vLLM takes `config.json`'s `quantization_config` and looks
for `hf_quant_config.json` only when it is absent — while other tools (and the exporter's own
loader) may read the other. A checkpoint re-exported or hand-edited in one place only then loads
with a scheme its tensors were not written for (failure class 16).

## Example
`config.json` says quant_algo FP8 but `hf_quant_config.json` says NVFP4; vLLM uses
`config.json`

## Fix
Delete the stale copy, or make both say the same.
"""

from collections.abc import Iterator, Mapping
from typing import Any

from qscale.rules._api import Applicability, Context, Finding, Fix, Location, Rule, Severity


def _summary(qc: Mapping[str, Any]) -> tuple[str, ...]:
    body = qc.get("quantization", qc)
    if not isinstance(body, Mapping):
        return ()
    method = str(qc.get("quant_method") or ("modelopt" if "quantization" in qc else "")).lower()
    algo = body.get("quant_algo") or body.get("format") or ""
    return tuple(x for x in (method.replace("modelopt_fp4", "modelopt"), str(algo).upper()) if x)


def check(ctx: Context) -> Iterator[Finding]:
    """Report quantization configs whose method or algorithm disagree."""
    raw = ctx.checkpoint.config.raw
    places: list[tuple[str, str, Mapping[str, Any]]] = []
    if isinstance(raw.get("quantization_config"), Mapping):
        places.append(("config.json", "/quantization_config", raw["quantization_config"]))
    text = raw.get("text_config")
    if isinstance(text, Mapping) and isinstance(text.get("quantization_config"), Mapping):
        places.append(
            ("config.json", "/text_config/quantization_config", text["quantization_config"])
        )
    hf = ctx.checkpoint.extra_configs.get("hf_quant_config.json")
    if hf is not None:
        places.append(("hf_quant_config.json", "/quantization", hf))
    if len(places) < 2:
        return
    first_file, first_key, first = places[0]
    want = _summary(first)
    for file, key, qc in places[1:]:
        got = _summary(qc)
        if not got or not want or got == want or (len(got) < len(want) and want[0] == got[0]):
            continue
        yield RULE.finding(
            f"{file} {key} says {' '.join(got)} but {first_file} {first_key} says"
            f" {' '.join(want)}; vLLM uses {first_file} {first_key}",
            Location(file=file, key=key),
            fix=FIX,
        )


FIX = Fix("delete the stale config copy, or make both agree", Applicability.MANUAL)

RULE = Rule(
    code="QS104",
    name="conflicting-quantization-configs",
    severity=Severity.WARNING,
    doc=__doc__ or "",
    check=check,
)
