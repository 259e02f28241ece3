"""A group-quantized layer whose per-rank input cuts through a quantization group.

## What it checks
For group-quantized weights — NVFP4 (group 16), MXFP4 and AMD Quark OCP-MX (32), W4A16 / int4
(the config's `group_size`, typically 128), FP-Quant (its `hadamard_group_size`, which vLLM's
`FPQuantLinearMethod.create_weights` tests) — the input of every row-parallel layer per TP rank,
and the routed experts' intermediate size per MoE-TP rank (the down projection's input), must be
a multiple of the group size. For vLLM ≥ 0.33 and Qwen3-Next / Qwen3.5, a Quark OCP-MX shared
expert whose TP slice breaks the group is replicated under expert parallel or sequence-parallel
MoE, and refused otherwise. GPTQ/AWQ routed experts on vLLM are the exception: a slice that
cuts the group (or a hidden size not a multiple of 128) makes vLLM fall back from the Marlin MoE
kernel to MoE WNA16, which halves the group to fit and loads (an info); it refuses only when
the group would drop below 32.

## Why it matters
The engines refuse at start-up: "OCP MX linear layer … has an input size per partition of 64,
which must be divisible by the OCP MX group size 32.", ModelOpt NVFP4 "Unsupported model when
in features size is not multiple of 16", W4A16 "The input size is not aligned with the quantized
weight shape. This can be caused by too large tensor parallel size." Some kernels fail only at
the first request instead.

## Example
`vllm>=0.22,<0.34: `language_model.model.layers.1.self_attn.o_proj`: input per rank 64 at TP=2
is not a multiple of the W4A16 g128 group size 128, ...; TP that works: 1`

## Fix
Manual: deploy with a TP the message lists, or enable expert parallel for the experts.
"""

from qscale.rules._api import Rule, Severity
from qscale.rules._layout import check_for

RULE = Rule(
    code="QS505",
    name="group-misaligned-partition",
    severity=Severity.ERROR,
    doc=__doc__ or "",
    check=check_for("QS505"),
    needs_plan=True,
)
