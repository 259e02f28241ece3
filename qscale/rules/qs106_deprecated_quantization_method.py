"""A quantization method the vLLM release refuses as deprecated.

## What it checks
Looks the checkpoint's `quant_method` up in the list of deprecated methods of the `--engine`
vLLM release (`DEPRECATED_QUANTIZATION_METHODS` in
`vllm/model_executor/layers/quantization/__init__.py`, read from each release's wheel into
qscale's engine catalogue: `fbgemm_fp8` and `fp_quant` in every release from 0.18.0 to 0.33.0,
`experts_int8` before 0.20.0, among others). It reports nothing when the deployment is
started with `--allow-deprecated-quantization` (give the same option to `qscale check`), or
for SGLang.

## Why it matters
vLLM's `ModelConfig._verify_quantization` raises at start-up for such a method: "The
quantization method fbgemm_fp8 is deprecated and will be removed in future versions of vLLM.
To bypass, set `--allow-deprecated-quantization`." The checkpoint may be perfectly valid
(Meta's official Llama-3.1 FP8 checkpoints are `fbgemm_fp8`); the deployment still does not
start. qscale checks everything else as if the engine had been started with the flag. Real
vLLM 0.33.0 on CPU refuses a tiny `fbgemm_fp8` Llama this way and builds its config with the
flag (`oracle/deprecated_quantization.py`).

## Example
``vllm==0.33.0 refuses quant_method `fbgemm_fp8` as deprecated unless started with
--allow-deprecated-quantization``

## Fix
Manual. Start vLLM with `--allow-deprecated-quantization` (and check with the same option),
or re-export the checkpoint in a maintained format (compressed-tensors FP8 with
llm-compressor).
"""

from __future__ import annotations

from collections.abc import Iterator

from qscale.engines import catalogue
from qscale.rules._api import Applicability, Context, Finding, Fix, Location, Rule, Severity

FACT = "registry.deprecated"


def deprecated(ctx: Context) -> str | None:
    """The method's name when the checked vLLM release refuses it as deprecated."""
    fmt, spec = ctx.quant.format, ctx.engine
    if fmt is None or spec is None or spec.engine != "vllm":
        return None
    fact = catalogue.format_fact("vllm", FACT, spec.version)
    if fact is None:  # not read for this release: QS010 says the check is partial
        return None
    return fmt.method if fmt.method in fact.value else None


def check(ctx: Context) -> Iterator[Finding]:
    """One finding when the release lists the checkpoint's method as deprecated."""
    if ctx.deployment.allow_deprecated_quantization or (method := deprecated(ctx)) is None:
        return
    assert ctx.engine is not None
    label = catalogue.release_label(ctx.engine)
    yield RULE.finding(
        f"{label} refuses quant_method `{method}` as deprecated unless started with"
        " --allow-deprecated-quantization",
        Location(file="config.json", key="/quantization_config/quant_method"),
        fix=Fix(
            "start vLLM with --allow-deprecated-quantization (and give it to `qscale check`),"
            " or re-export the checkpoint in a maintained format",
            Applicability.MANUAL,
        ),
    )


RULE = Rule(
    code="QS106",
    name="deprecated-quantization-method",
    severity=Severity.ERROR,
    doc=__doc__ or "",
    check=check,
    default_fix=Fix("start vLLM with --allow-deprecated-quantization", Applicability.MANUAL),
)
