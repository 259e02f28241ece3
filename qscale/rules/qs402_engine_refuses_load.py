"""The selected engine version refuses to load a merged parameter built from this checkpoint.

## What it checks
Runs the load plan for `--engine` and reports every merged parameter the engine's loader would
refuse: shards of one fused layer (q/k/v, gate/up, Qwen3.5 `in_proj_qkv`+`in_proj_z`,
DeepSeek `q_a_proj`+`kv_a_proj_with_mqa`) that are partly quantized and partly not, or that
resolve to different schemes; a per-tensor scale with more than one element where the
engine's slot takes one; a tuple shard id on an engine version without tuple support; a
ModelOpt `quant_algo` the engine's ModelOpt loader rejects; an architecture the release cannot
build (vLLM 0.19.1 and 0.20.0 fail on the text-only `Qwen3_5MoeForCausalLM` class); on SGLang,
DeepSeek `q_a_proj` + `kv_a_proj_with_mqa` tensors that cannot be concatenated into its
`ReplicatedLinear` `fused_qkv_a_proj_with_mqa` (1-element per-tensor scales become a
2-element tensor for a 1-slot parameter; compressed-tensors `weight_shape`); gpt-oss experts
stored one by one (`experts.<i>.down_proj.bias`, llm-compressor's layout), which vLLM's gpt-oss
loader (`_load_weights_other`) renames onto its fused-expert branches and cannot place. 0.19.1
and 0.20.0 (modelled for 0.18–0.21) read experts fused per layer only: every such export fails,
W4A16 included. 0.32.0 (modelled for 0.22–0.33) streams them into the fused expert parameters,
but the FP8, MXFP4 and NVFP4 MoE methods build no expert biases, so the per-expert bias is
looked up under its own name (KeyError). An unquantized checkpoint that stores a tensor
already fused under a name vLLM's stacked rename applies to again (`in_proj_qkvz` looked up as
`in_proj_qkvzz`) leaves that parameter unloaded, and vLLM refuses a model without quantization
whose weights did not all load (QS404 reports the quantized case, which loads silently).

## Why it matters
These fail at start-up on the GPU host, after the weights were downloaded and the engine
initialised — or, for shards with different schemes under compressed-tensors, load silently
with the first shard's scheme. Finding them first saves the deployment attempt.

## Example
`some but not all shards of model.layers.0.self_attn.fused_qkv_a_proj are quantized
(q_a_proj: FP8 per-tensor, static act, kv_a_proj_with_mqa: unquantized)`

## Fix
Quantize or ignore all shards of a fused layer together; re-export vector scales as one
scalar per shard. For SGLang's DeepSeek concatenation, `qscale fix --engine sglang==…` stores
the A-projections' weight scales per channel (same values, exact) and their input scales as
0-d scalars (unsafe when the two differ: both get the larger). Store gpt-oss experts fused
per layer, as the original checkpoint does.
"""

from collections.abc import Iterator

from qscale.rules._api import Applicability, Context, Finding, Fix, Location, Rule, Severity


def check(ctx: Context) -> Iterator[Finding]:
    """Report the plan's load errors, one finding per cause."""
    assert ctx.plan is not None
    for refusal in ctx.plan.refusals:
        yield RULE.finding(
            f"{ctx.plan.engine.label}: {refusal.reason}",
            Location(file=refusal.file, tensor=refusal.tensor, key=refusal.key),
            fix=Fix(refusal.fix, Applicability.MANUAL) if refusal.fix else None,
        )
    concatenated = ctx.plan.family.concatenated
    for p in ctx.plan.params.values():
        joined = p.name.rpartition(".")[0].rpartition(".")[2] in concatenated
        for err in p.errors:
            yield RULE.finding(
                f"{ctx.plan.engine.label}: {err}",
                ctx.at_param(p),
                fix=CONCAT_FIX if joined and p.leaf in ("weight_scale", "input_scale") else None,
            )


CONCAT_FIX = Fix(
    "store the shards' per-tensor weight scales per channel and their input scales as 0-d"
    " scalars (qscale fix; unsafe when the input scales differ)",
    Applicability.SAFE,
)


RULE = Rule(
    default_fix=Fix(
        "quantize or ignore all shards of a fused layer together, store per-tensor scales"
        " as one scalar per shard, or target an engine version that loads this",
        Applicability.MANUAL,
    ),
    code="QS402",
    name="engine-refuses-load",
    severity=Severity.ERROR,
    doc=__doc__ or "",
    check=check,
    needs_plan=True,
    reads_values=True,
)
