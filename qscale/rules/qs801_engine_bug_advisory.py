"""A known engine bug that the selected engine version, layout and model family run into.

## What it checks
Evaluates qscale's advisory table (`qscale/advisories.py`: engine, affected versions, model
families, layout condition, reference PR, fixed-in version, numerical effect, workaround)
against `--engine`, the layout options (`--tp`, `--dp`, `--ep` / `--enable-expert-parallel`,
`--a2a-backend`, `--platform`, fusion flags) and the load plan:

- vLLM < 0.20.0, Qwen3-Next / Qwen3.5, sequence-parallel MoE (EP + TP > 1 + DP > 1): the
  shared expert stays TP-sharded and is never summed (PR #39181, seed 000); Qwen3-MoE with a
  shared expert: not fixed (PR #41763 closed);
- SGLang < 0.5.13, fused shared expert, EP > 1 with a non-DeepEP all-to-all backend: the
  shared expert output is counted EP times (PR #26845, seed 001);
- vLLM development builds between PR #40560 and PR #40673 (after 0.19.1, before 0.20.0): the
  shared-expert output is reduced twice (seed 004; no release shipped it);
- vLLM 0.18.0–0.19.1 tuple-shard per-tensor scales (PR #38517, seed 002) and SGLang < 0.5.11
  fusing an excluded BF16 shared expert (PR #22948, seed 003): QS401 and QS601 report these
  defects as errors; to avoid reporting them twice, QS801 adds one info note per advisory
  with the PR, the fixed-in version and the workaround.

## Why it matters
These bugs load without an error and corrupt the numbers only under parallelism: GSM8K fell
from 94% to 10.8% at TP2/EP2 in one report. The files are fine; the deployment plan is not.

## Example
`vllm==0.19.1, TP=2 EP=4 (DP=2, MoE TP=1, sequence-parallel MoE): vLLM PR #39181: under
sequence-parallel MoE each TP rank runs the shared expert on its own tokens but with only its
1/2 slice of the intermediate neurons, ...; affects vllm <0.20, fixed in 0.20.0`

## Fix
Manual: the workaround in the finding — upgrade past the fix, disable shared-expert fusion,
use a DeepEP-class all-to-all backend, or serve without the affected layout. Run a short canary
eval after any change.
"""

from collections.abc import Iterator

from qscale.advisories import Advisory, Trigger, advisories_for
from qscale.layout import Layout, resolve
from qscale.rules import qs401_unfilled_scale_slot as qs401
from qscale.rules._api import Applicability, Context, Finding, Fix, Location, Rule, Severity
from qscale.rules._shared_experts import shared_experts
from qscale.shared_experts import Fusion, SharedExperts, fusion_decision


def _unfilled_tuple_scale(ctx: Context) -> Location | None:
    """Where QS401 reports an unfilled tuple-shard scale slot (weight scales first), or None.

    The advisory is the engine bug behind QS401's finding, so it holds exactly where QS401
    reports one: a partly unwritten slot that no weight reaches (an input scale, whose
    maximum ignores the sentinel), or a layer rewritten per channel by `qscale fix`, is no
    instance of the bug and gets no note."""
    hits = [f for f in ctx.shared(_qs401_findings) if f.location.param]
    hits.sort(
        key=lambda f: (
            not (f.location.param or "").endswith(".weight_scale"),
            f.location.param or "",
        )
    )
    return hits[0].location if hits else None


def _qs401_findings(ctx: Context) -> tuple[Finding, ...]:
    return tuple(qs401.check(ctx))


def _where(ctx: Context, a: Advisory, se: SharedExperts | None, lay: Layout) -> Location | None:
    """Where the advisory applies, or None when its condition does not hold."""
    assert ctx.plan is not None
    if a.trigger == Trigger.UNFILLED_TUPLE_SCALE:
        return _unfilled_tuple_scale(ctx)
    if se is None:
        return None
    fusion = fusion_decision(
        se, lay, ctx.plan.engine, ctx.plan.family.name, ctx.checkpoint.config
    ).fusion
    holds = {
        Trigger.SEQUENCE_PARALLEL_SHARED_EXPERT: lay.sequence_parallel,
        Trigger.REDUCED_SHARED_EXPERT: lay.tp > 1 or lay.ep > 1,
        Trigger.FUSED_SHARED_EXPERT_ALLREDUCE_EP: fusion in (Fusion.FUSES, Fusion.CONVERTS)
        and lay.ep > 1
        and not lay.backend.deepep_class,
        Trigger.MISMATCHED_SHARED_EXPERT_FUSED: fusion == Fusion.FUSES and se.mismatch,
    }[a.trigger]
    return ctx.at(se.first) if holds else None


def check(ctx: Context) -> Iterator[Finding]:
    """Report the advisories that match the engine, the layout and the checkpoint."""
    assert ctx.plan is not None
    spec, fam = ctx.plan.engine, ctx.plan.family
    lay = resolve(ctx.deployment, spec)
    se = shared_experts(ctx)
    arch = ctx.checkpoint.config.architecture
    for a in advisories_for(spec.engine, spec.version, fam.name, arch):
        at = _where(ctx, a, se, lay)
        if at is None:
            continue
        effect = a.effect.format(tp=lay.tp, ep=lay.ep)
        fixed = f"fixed in {a.fixed_in}" if a.fixed_in else "not fixed in any release qscale read"
        note = f" ({a.note})" if a.note else ""
        head = f"{spec.label}, {lay.label}: {a.reference}"
        if a.reported_by:
            msg = f"{head} is the engine bug behind {a.reported_by} here: {effect}; {fixed}"
        else:
            msg = f"{head}: {effect}; affects {a.engine} {a.range_label}, {fixed}{note}"
        yield RULE.finding(
            msg,
            at,
            fix=Fix(a.workaround, Applicability.MANUAL),
            severity=Severity.INFO if a.reported_by else Severity.ERROR,
        )


RULE = Rule(
    code="QS801",
    name="engine-bug-advisory",
    severity=Severity.ERROR,
    doc=__doc__ or "",
    check=check,
    needs_plan=True,
    reads_values=True,
)
