"""A quantization config that its own format's validation rejects.

## What it checks
Parses `quantization_config` (or `hf_quant_config.json`) with the rules of its format:
compressed-tensors' `QuantizationArgs` validation (strategy, group size, block structure,
dynamic), Quark's `export` block, ModelOpt's `quant_algo`, `fp8`'s block size and activation
scheme.

## Why it matters
Engines parse the same config at start-up and refuse it with a `ValueError`; qscale reports
it before any GPU is allocated.

## Example
`config.json: quantization_config.config_groups.group_0.weights: strategy group needs a
positive group_size`

## Fix
None: correct the config. qscale stops with exit code 2.
"""

from qscale.rules._api import Rule, Severity

RULE = Rule(
    code="QS101", name="invalid-quantization-config", severity=Severity.ERROR, doc=__doc__ or ""
)
