"""A shared expert stored in another format than the routed experts, and what the engine's
shared-expert fusion does with it.

## What it checks
Finds MoE checkpoints whose shared expert (`mlp.shared_expert.*`, `mlp.shared_experts.*`) is
stored differently from the routed experts — typically BF16 (excluded or ignored by the
quantization config, as AMD Quark and llm-compressor MXFP4 exports do) while the experts are
MXFP4 or another quantized format. It identifies the shared expert both from the config's
exclude/ignore list and from the dtypes on disk, says where the two disagree, and reports the
engine's shared-expert-fusion decision for `--engine`, `--platform` and the fusion flags
(`--disable-shared-experts-fusion`, `--enforce-shared-experts-fusion`):

- SGLang fuses the Qwen shared expert as an extra routed expert on ROCm with AITER. Before
  0.5.11 nothing stops it from fusing an excluded BF16 shared expert into the quantized expert
  tensor (error). From 0.5.11 (PR #22948) it refuses when Quark's `exclude` names the shared
  expert (info); its gate does not read other formats' ignore lists (warning). SGLang 0.5.23
  converts the BF16 shared expert to MXFP4 online under `--enforce-shared-experts-fusion`.
- vLLM fuses shared experts only on ROCm with AITER and refuses a shared expert in another
  format (`is_shared_expert_quant_fse_compatible`, info).
- Without `--platform`, CUDA is assumed. Where fusion would be off on CUDA but on with AITER
  (error or warning there), the finding is a warning that says so and names what decides:
  `--platform rocm-aiter` here, `SGLANG_USE_AITER=1` when serving (SGLang reads it with
  `get_bool_env_var("SGLANG_USE_AITER") and is_hip()`).

## Why it matters
A fused shared expert is loaded into the routed experts' tensor in their format: BF16 weights
read as packed FP4 codes make the shared expert's contribution garbage for every token, with no
error (or a shape error at load). The checkpoint is legal; the engine version decides.

## Example
`sglang==0.5.10, TP=1 EP=1 (MoE TP=1) on rocm-aiter: the shared expert is BF16 in 2 layers
while the routed experts are MXFP4; SGLang fuses it into the routed-expert tensor: it has no
exclude gate (SGLang PR #20736 ...)`

## Fix
Manual: for an error, upgrade SGLang to ≥ 0.5.11 or pass `--disable-shared-experts-fusion`;
or quantize the shared expert offline like the routed experts. Info findings need nothing.
"""

from collections.abc import Iterator

from qscale.layout import resolve
from qscale.rules._api import Applicability, Context, Finding, Fix, Rule, Severity
from qscale.rules._shared_experts import shared_experts
from qscale.shared_experts import (
    Decision,
    Fusion,
    SharedExperts,
    fusion_decision,
)

SEVERITY = {
    Fusion.FUSES: Severity.ERROR,
    Fusion.MAY_FUSE: Severity.WARNING,
    Fusion.CONVERTS: Severity.INFO,
    Fusion.REFUSES: Severity.INFO,
    Fusion.OFF: Severity.INFO,
    Fusion.PLATFORM: Severity.WARNING,
}
VERB = {
    Fusion.FUSES: "fuses it into the routed-expert tensor",
    Fusion.MAY_FUSE: "may fuse it into the routed-expert tensor",
    Fusion.CONVERTS: "fuses it after converting it online",
    Fusion.REFUSES: "keeps it a separate MLP",
    Fusion.OFF: "keeps it a separate MLP",
    Fusion.PLATFORM: "keeps it a separate MLP or fuses it, by platform",
}


def _identified(se: SharedExperts) -> str:
    parts = []
    if se.excluded:
        more = f", +{len(se.reasons) - 1} alike" if len(se.reasons) > 1 else ""
        parts.append(f"the config leaves {len(se.excluded)} shared-expert module(s) unquantized"
                     f" ({se.reasons[0]}{more})")
    if se.stored_float:
        parts.append(f"{len(se.stored_float)} are stored {se.shared} on disk")
    text = " and ".join(parts) or f"the shared expert resolves to {se.shared}"
    if se.disagreements:
        text += "; config and files disagree: " + ", ".join(se.disagreements[:3])
    return text


def _platform(ctx: Context) -> str:
    p = ctx.deployment.platform
    return p.value if p is not None else "cuda (assumed: no --platform)"


def _message(ctx: Context, se: SharedExperts, d: Decision) -> str:
    assert ctx.plan is not None
    lay = resolve(ctx.deployment, ctx.plan.engine)
    return (
        f"{ctx.plan.engine.label}, {lay.label} on {_platform(ctx)}: the shared"
        f" expert is {se.shared} in {len(se.layers)} layer(s) while the routed experts are"
        f" {se.routed}; {ctx.plan.engine.engine} {VERB[d.fusion]}: {d.why}; identified by"
        f" config and files: {_identified(se)}"
    )


def check(ctx: Context) -> Iterator[Finding]:
    """Report a shared expert in another format, with the engine's fusion decision."""
    assert ctx.plan is not None
    se = shared_experts(ctx)
    if se is None or not se.mismatch:
        return
    lay = resolve(ctx.deployment, ctx.plan.engine)
    d = fusion_decision(se, lay, ctx.plan.engine, ctx.plan.family.name, ctx.checkpoint.config)
    yield RULE.finding(
        _message(ctx, se, d),
        ctx.at(se.first),
        fix=Fix(d.fix, Applicability.MANUAL),
        severity=SEVERITY[d.fusion],
    )


RULE = Rule(
    code="QS601",
    name="shared-expert-format-mismatch",
    severity=Severity.ERROR,
    doc=__doc__ or "",
    check=check,
    needs_plan=True,
)
