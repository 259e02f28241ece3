"""A `quant_method` qscale does not model.

## What it checks
Looks the config's `quant_method` up among the formats qscale models: compressed-tensors,
fp8, quark, mxfp4 (gpt-oss), modelopt, gptq, awq (and the aliases vLLM maps onto them). The
message says whether vLLM 0.33's registry or SGLang knows the method.

## Why it matters
qscale will not call a checkpoint clean when it cannot tell what the engine would build.

## Example
`config.json: quant_method 'moe_wna16' is known to vLLM 0.33, not modelled by qscale`

## Fix
None. qscale stops with exit code 2.
"""

from qscale.rules._api import Rule, Severity

RULE = Rule(
    code="QS102", name="unsupported-quant-method", severity=Severity.ERROR, doc=__doc__ or ""
)
