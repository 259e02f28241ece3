"""An architecture whose weight loading qscale cannot simulate.

## What it checks
Reads `architectures` in `config.json`. vLLM and SGLang build the model class its first
entry names. qscale plans that class's weight loading from its engine catalogue (the loader
facts generated from each vLLM release) or from a hand-written family: what the engine
fuses, renames and skips while it loads weights. This code covers two cases:

* the value is not a non-empty list of class names (missing, `null`, `[]`, a string, a
  number, a list holding a non-string);
* the engine serves the class but qscale cannot plan it: the catalogue marks it
  `not-plannable` and says why (`qscale models`), or no catalogue covers the engine version
  (SGLang today) and no hand-written family exists.

## Why it matters
Most rules follow the engine's weight loader, which depends on the model class: fused
shards and their scales, scale slots, expert and tensor-parallel partitions, tensors the
engine skips. qscale will not call a checkpoint clean when it could not run those rules.

* A malformed value stops every command with exit code 2. The engines refuse it too. For a
  missing value, `null` or `[]`, vLLM stops with "No model architectures are specified"
  (`vllm/model_executor/models/registry.py`, `inspect_model_cls`). Recent releases read the
  value into a `list[str]` field (`ModelArchitectureConfig.architectures`), so any other
  shape fails validation there.
* For a class qscale cannot plan, `qscale check` still runs the rules that need no load plan:
  inventory, dtypes, shapes and quantization config. It lists the other rules as not run,
  with this reason, and the report is *partial*: `"complete": false` and a `skipped` list
  in JSON, `executionSuccessful: false` and one tool notification per rule in SARIF, an
  `::error` annotation in GitHub format, and a closing `partial check:` line on the console.
  It exits 2 unless `--allow-partial` is given. `qscale plan`, `qscale layouts` and
  `qscale fix` need the plan, so they stop with exit code 2.

A class the engine does not serve at all is reported as QS105 instead. The engine cannot
load such a checkpoint, so that is a finding, not a gap in the check.

## Example
``config.json: qscale cannot plan how vllm==0.33.0 loads 'Gemma4ForCausalLM':
Gemma4ForCausalLM fuses `gate_up_proj` from ['gate_proj', 'up_proj'] (its
packed_modules_mapping), but no stacked mapping for it was found in its loader code``

`config.json: /architectures is a string ("Qwen3_5MoeForConditionalGeneration"), expected a
list of model class names`

## Fix
No automatic fix. For a renamed class or a typo, copy `architectures` from the original
model's `config.json`. For a string, wrap it in a list. For a class qscale cannot plan
yet, `qscale check --allow-partial` gates on the rules that ran. The report still says which
rules did not run.

## References
* `qscale models` lists every architecture of an engine version and whether qscale plans it.
* vLLM: `vllm/transformers_utils/model_arch_config_convertor.py` (`get_architectures`).
"""

from qscale.rules._api import Rule, Severity

RULE = Rule(
    code="QS103", name="architecture-not-modelled", severity=Severity.ERROR, doc=__doc__ or ""
)
