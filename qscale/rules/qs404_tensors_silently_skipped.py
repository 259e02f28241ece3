"""Checkpoint tensors the engine's loader skips without a word, leaving weights unwritten.

## What it checks
Runs the load plan for `--engine` and reports per-expert checkpoint tensors
(`mlp.experts.<i>.<proj>.<leaf>`) that a model class's own expert loader neither renames onto
one of its fused-expert branches nor streams into a fused parameter, and per-expert tensors whose
projection name the engine's fused-MoE expert mapping does not take (the architecture's
`ckpt_names` in the engine catalogue, e.g. MiniMax-M2's `w1`/`w2`/`w3`). Such a loader iterates over
the checkpoint and skips every name it has no parameter for. Modelled for gpt-oss: its name
mapper renames only `down_proj` per-expert names, so on vLLM 0.32 a per-expert export whose
MoE method builds expert biases (compressed-tensors W4A16) loads `w2_weight_scale` and
`w2_bias` and skips `gate_proj`, `up_proj` and `down_proj.weight_packed`.

Also reports tensors stored under a fused name that the engine's stacked rename applies to
again: vLLM matches the shard name `in_proj_qkv` as a substring, so a stored `in_proj_qkvz` is
looked up as `in_proj_qkvzz` (and `in_proj_ba` as `in_proj_baa`), which no parameter is; vLLM
0.33's Qwen3.5 loader skips it with a warning. Unquantized checkpoints are refused instead
(QS402), since the engine checks that every weight of a model without quantization loaded.

## Why it matters
Nothing fails. vLLM starts, serves, and the fused expert weights (`w13_weight_packed`,
`w2_weight_packed`) keep whatever memory they were allocated with: every token routed through
the experts is garbage. This was seen in real vLLM 0.32.0 on llm-compressor's W4A16 gpt-oss
export: the two packed expert weights still held the never-written fill, and `w13_weight_scale`
stayed 1.0. Where the same loader refuses instead (FP8, MXFP4, NVFP4 exports, or any
per-expert export on vLLM 0.19–0.21), QS402 reports that.

## Example
`vllm==0.32.0: GptOssModel._load_weights_other skips
model.layers.0.mlp.experts.0.down_proj.weight_packed and 79 more per-expert tensor(s)
(down_proj, gate_proj, up_proj), which it renames onto no parameter; the fused expert weights
they hold are never written, and the model serves garbage without an error`

## Fix
Store the routed experts fused per layer (`mlp.experts.gate_up_proj`, `mlp.experts.down_proj` and
their biases), the layout the model's loader reads; where the engine's fused-MoE mapping does not
take the per-expert projection names (MiniMax-M2 maps `w1`/`w3`/`w2`; transformers 5.17 writes
`gate_proj`/`up_proj`/`down_proj`), rename them to the names it takes.
"""

from collections.abc import Iterator

from qscale.engines.loader import RENAME_FIX
from qscale.rules._api import Applicability, Context, Finding, Fix, Rule, Severity

#: leaves that hold weights: skipping them leaves the model's weights unwritten
_WEIGHT_LEAVES = ("weight", "weight_packed")


def _renamed_away(ctx: Context) -> Iterator[Finding]:
    """Tensors stored already fused that the engine's stacked rename renames again."""
    assert ctx.plan is not None
    renamed = ctx.plan.renamed_away
    if not renamed or ctx.quant.format is None:  # unquantized: vLLM refuses (QS402)
        return
    first, eng = renamed[0]
    more = f" and {len(renamed) - 1} more tensor(s)" if len(renamed) > 1 else ""
    yield RULE.finding(
        f"{ctx.plan.engine.label}: `{first}`{more} are stored already fused, and the stacked"
        f" rename applies to them again: the loader looks for `{eng}`, which no parameter is,"
        " and skips it with a warning; the fused parameter is never written, and the model"
        " serves garbage (quantized models skip the engine's check that every weight loaded)",
        ctx.at(first),
        fix=Fix(RENAME_FIX, Applicability.MANUAL),
    )


def check(ctx: Context) -> Iterator[Finding]:
    """One finding per checkpoint: the first skipped tensor, with a count of the others."""
    assert ctx.plan is not None
    yield from _renamed_away(ctx)
    dropped = ctx.plan.dropped
    if not dropped:
        return
    loader = ctx.plan.engine.profile.expert_loaders.get(ctx.checkpoint.config.architecture or "")
    who = loader.function if loader is not None else "the model's loader"
    weights = [n for n in dropped if n.rpartition(".")[2] in _WEIGHT_LEAVES]
    first = weights[0] if weights else dropped[0]
    projs = sorted({n.rsplit(".", 2)[-2] for n in dropped})
    more = f" and {len(dropped) - 1} more per-expert tensor(s)" if len(dropped) > 1 else ""
    impact = (
        "the fused expert weights they hold are never written, and the model serves garbage"
        " without an error"
        if weights
        else "their values never reach the model"
    )
    ex = ctx.plan.family.experts
    fix = None
    if loader is None and ex is not None:
        who = "the engine's fused-MoE expert mapping"
        fix = Fix(
            f"name the per-expert projections as the engine's expert mapping does"
            f" (`{ex.gate}`, `{ex.up}`, `{ex.down}` for gate, up and down)",
            Applicability.MANUAL,
        )
    yield RULE.finding(
        f"{ctx.plan.engine.label}: {who} skips `{first}`{more} ({', '.join(projs)}), which it"
        f" renames onto no parameter; {impact}",
        ctx.at(first),
        severity=Severity.ERROR if weights else Severity.WARNING,
        fix=fix,
    )


RULE = Rule(
    default_fix=Fix(
        "store the routed experts fused per layer (`mlp.experts.gate_up_proj`,"
        " `mlp.experts.down_proj` and their biases), the layout this loader reads",
        Applicability.MANUAL,
    ),
    code="QS404",
    name="tensors-silently-skipped",
    severity=Severity.ERROR,
    doc=__doc__ or "",
    check=check,
    needs_plan=True,
)
