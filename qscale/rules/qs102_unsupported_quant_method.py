"""A `quant_method` qscale does not model.

## What it checks
Looks the config's `quant_method` up among the formats qscale models (the table in
`docs/methods.md`, with the aliases vLLM maps onto them). The message says whether vLLM
0.33's registry or SGLang knows the method and, for a name of vLLM 0.33's registry, why
qscale does not model it (`qscale/formats/registry.py`). A format qscale models only in part
stops here too, naming what it checked and what not: a torchao config whose load qscale does
not model (Int4 plain / preshuffled packing, a per-module `FqnToConfig`, routed experts, other
granularities; `docs/methods.md` lists the modelled ones), whose config and safetensors
metadata are checked but whose load into the engine's parameters is not; a release or engine
other than the ones its facts were read from.

## Why it matters
qscale will not call a checkpoint clean when it cannot tell what the engine would build.

## Example
`config.json: quant_method 'humming' is known to vLLM 0.33 (HummingConfig), not modelled by
qscale: a serve-time kernel backend (--quantization humming, …)`

## Fix
None. qscale stops with exit code 2.
"""

from qscale.rules._api import Rule, Severity

RULE = Rule(
    code="QS102", name="unsupported-quant-method", severity=Severity.ERROR, doc=__doc__ or ""
)
