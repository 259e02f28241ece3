"""Shards of a fused parameter carry different global scales, and the engine keeps only one.

## What it checks
Simulates the engine's processing after load (`process_weights_after_loading`) over the scale
slots of every merged parameter and reports partitions that end up dequantized with another
partition's scale, without requantization:

- NVFP4 global scales (compressed-tensors `weight_global_scale`, a divisor; ModelOpt
  `weight_scale_2`, a multiplier) that differ across the shards of a fused layer — q/k/v,
  gate/up, Qwen3.5 `in_proj_qkv` + `in_proj_z`, `in_proj_b` + `in_proj_a`: vLLM takes the
  maximum and does not rescale the FP8 block scales;
- fused-MoE `w13` global scales whose w1 and w3 columns differ: vLLM uses column 0 for both;
- FP-Quant (`quant_method: fp_quant`) `weight_global_scale`, and `act_global_scale` of MXFP4
  layers (it divides their output; MXFP4 quantizes the activations without it), that differ
  across the shards of a fused layer: vLLM's parameter is one `[1]` value without
  `output_dim`, each shard's copy replaces the last, and the shard loaded last (`v_proj`,
  `up_proj` in a single-file checkpoint: files in natural order, names sorted within one)
  is used for all (real vLLM 0.33.0);
- torchao AWQ (`AWQConfig`, the pytorch/*-AWQ-INT4 recipe) `act_pre_scale` vectors (one value
  per input column, multiplying the activations; the weights were scaled by its inverse) that
  differ across the shards of a fused layer: the merged Int4Tensor holds one, each shard's
  `copy_` replaces it, and the shard loaded last (`v_proj`, `up_proj`) is used for all (real
  vLLM 0.33.0 + torchao 0.18.0 on an AWQ export: `qkv_proj` kept `v_proj`'s);
- on SGLang, DeepSeek `q_a_proj` + `kv_a_proj_with_mqa` FP8 per-tensor scales stored as 0-d
  scalars (ModelOpt, Quark): SGLang concatenates the two shards into its `ReplicatedLinear`
  `fused_qkv_a_proj_with_mqa` and, for two 0-d scales, loads `q_a_proj`'s alone, so
  `kv_a_proj_with_mqa`'s weights are dequantized with `q_a_proj`'s scale (1-element scales
  make SGLang refuse the load instead: QS402).

The message gives the ratio by which each affected partition's weights come out scaled.
A relative difference of 1% or more is an error; a smaller one a warning.

## Why it matters
vLLM logs one warning ("the weight global scale is different for parallel layers …") and
loads. Every weight of the smaller shard is then off by the same factor, a silent accuracy
loss: on the real llm-compressor NVFP4 Qwen3.5-MoE fixture, `in_proj_qkv`'s values come out
×0.91 because `in_proj_z` has a larger global scale.

## Example
`language_model.model.layers.0.linear_attn.in_proj_qkvz.weight_global_scale`: partitions 0, 1, 2
dequantized ×0.914 (−8.6%): global scales [1.05e+04, …, 9.62e+03] collapse to one

## Fix
Unify the global scales of the fused shards and rescale their block scales to match
(`qscale fix --unsafe-fixes`; the FP8 rounding of the rescaled block scales is reported), or
re-export with a quantizer that fuses global scales for this architecture. For SGLang's
DeepSeek A-projections, `qscale fix` stores the FP8 weight scales per channel with the same
values (exact; compressed-tensors configs), which SGLang concatenates row by row.
"""

from collections.abc import Iterator

from qscale.engines.processing import Effect, Processed, process
from qscale.engines.profiles import PostLoad
from qscale.rules._api import Applicability, Context, Finding, Fix, Rule, Severity

#: relative deviation at or above which a wrong scale is an error rather than a warning
ERROR_DEVIATION = 0.01


def _describe(done: Processed) -> tuple[str, float]:
    wrong = [o for o in done.partitions if o.effect == Effect.WRONG_SCALE]
    by_ratio: dict[float | None, list[int]] = {}
    for o in wrong:
        by_ratio.setdefault(o.ratio, []).append(o.index)
    parts, worst = [], 0.0
    for ratio, idx in by_ratio.items():
        where = ", ".join(map(str, idx[:8])) + (" …" if len(idx) > 8 else "")
        label = "expert column(s)" if done.param.sources[0].expert is not None else "partition(s)"
        if ratio is None:
            parts.append(f"{label} {where} are used with another shard's scale (own never loaded)")
            worst = max(worst, 1.0)
            continue
        dev = ratio - 1.0
        worst = max(worst, abs(dev))
        parts.append(f"{label} {where} dequantized ×{ratio:.4g} ({dev:+.2%})")
    return "; ".join(parts), worst


def _kept_vectors(ctx: Context) -> Iterator[Finding]:
    """torchao AWQ's ``act_pre_scale`` (one vector per shard, overwritten in the merged
    Int4Tensor): each shard against the one loaded last."""
    assert ctx.plan is not None
    params = [p for p in ctx.plan.params.values()
              if p.leaf == "_weight_act_pre_scale" and p.overwritten is not None
              and p.kept_from is not None and len(p.sources) >= 2]
    if not params:
        return
    # one read for every parameter's shards: each file is opened once
    values = ctx.checkpoint.read_values([s.source for p in params for s in p.sources])
    for p in params:
        assert p.kept_from is not None
        names = [s.source for s in p.sources]
        kept = values[p.kept_from].astype("float64").reshape(-1)
        worst: dict[str, float] = {}
        for n in names:
            own = values[n].astype("float64").reshape(-1)
            if own.shape != kept.shape or n == p.kept_from:
                continue
            dev = float(abs(kept / own - 1.0).max()) if (own != 0).all() else 1.0
            if dev > 0.0:
                worst[n] = dev
        if not worst:
            continue
        top = max(worst.values())
        shards = ", ".join(f"`{n.rpartition('.')[0].rsplit('.', 1)[-1]}` (up to {d:+.2%})"
                           for n, d in worst.items())
        yield RULE.finding(
            f"`{p.name}` on {ctx.plan.engine.label}: {shards} run with the activation"
            f" pre-scale of `{p.kept_from}`: the shards' per-column vectors differ, the merged"
            " tensor holds one, and each shard's copy replaces it (the shard loaded last is"
            " used for all)",
            ctx.at_param(p),
            fix=_VECTOR_FIX,
            severity=Severity.ERROR if top >= ERROR_DEVIATION else Severity.WARNING,
        )


_VECTOR_FIX = Fix(
    "re-quantize with one activation pre-scale for the shards of each fused layer (AWQ"
    " searched per projection; q/k/v and gate/up read the same input), or deploy an engine"
    " that keeps one per shard",
    Applicability.MANUAL,
)


def check(ctx: Context) -> Iterator[Finding]:
    """Report partitions processing leaves with another partition's scale."""
    assert ctx.plan is not None
    yield from _kept_vectors(ctx)
    for done in process(ctx.plan):
        if not any(o.effect == Effect.WRONG_SCALE for o in done.partitions):
            continue
        text, worst = _describe(done)
        if worst == 0.0:
            continue
        severity = Severity.ERROR if worst >= ERROR_DEVIATION else Severity.WARNING
        how, fix = _HOW.get(done.step, (_MAX, FIX))
        if done.param.kept_from is not None:
            how = f"{how} (`{done.param.kept_from}`)"
        yield RULE.finding(
            f"`{done.param.name}` on {ctx.plan.engine.label}: {text}; the shards' scales differ"
            f" and {how}",
            ctx.at_param(done.param),
            fix=fix,
            severity=severity,
        )


FIX = Fix(
    "unify the fused shards' global scales and rescale their block scales"
    " (qscale fix --unsafe-fixes)",
    Applicability.UNSAFE,
)
_MAX = "the engine keeps the maximum and does not rescale the block scales"
_HOW = {
    PostLoad.WEIGHT_FIRST_COLUMN: ("w1's column is used for w3", FIX),
    PostLoad.WEIGHT_LAST_LOADED_DIVISOR: (
        "the engine has one value for the fused layer: each shard's `[1]` tensor is copied"
        " over the last, and the shard loaded last is used for all",
        Fix(
            "give the fused shards one global scale and requantize their weights with it"
            " (FP-Quant's exporter: --fuse_global_scale), or deploy an engine that keeps one"
            " per shard",
            Applicability.MANUAL,
        ),
    ),
    PostLoad.WEIGHT_FIRST_SHARD: (
        "the engine loads the concatenated shards with the first shard's 0-d scale alone",
        Fix(
            "store the shards' weight scales per channel with identical values, which the"
            " engine concatenates row by row (qscale fix, compressed-tensors configs)",
            Applicability.SAFE,
        ),
    ),
}

RULE = Rule(
    code="QS403",
    name="fused-scale-mismatch",
    severity=Severity.ERROR,
    doc=__doc__ or "",
    check=check,
    needs_plan=True,
    reads_values=True,
    fixable=Applicability.UNSAFE,
)
