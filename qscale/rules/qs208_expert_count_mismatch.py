"""The routed experts on disk do not match the expert count or size in `config.json`.

## What it checks
For every MoE layer: the experts stored (per-expert `experts.{e}.…` tensors or the leading
dimension of fused 3-D `experts.gate_up_proj`) against the config's expert count
(`num_experts`, `n_routed_experts` or `num_local_experts`) — indices must be exactly
0 … N−1 — and each expert's gate/up/down shape against `moe_intermediate_size`. Which
projection is gate, up or down is the family's: without a family for the architecture on
the engine version (QS103) the sizes are not checked (the report says so), the count is.

## Why it matters
The engine builds every MoE layer with the config's count and size. Extra experts fail the
load ("no module or parameter named …experts.128…" or an index error); missing ones leave
their slices of the fused weights uninitialised and the router still sends tokens there.
REAP-pruned trunks and full-width MTP heads are the usual sources.

## Example
`model.layers.1.mlp.experts`: 2 experts stored (0–1), config `num_experts` = 4

## Fix
Make `config.json` agree with the tensors (after pruning, update `num_experts` and the router
shape), or re-export the checkpoint.
"""

from collections.abc import Iterator, Mapping, Sequence

from qscale.engines.families import ExpertNames
from qscale.modules import ModuleKind
from qscale.rules._api import Applicability, Context, Finding, Fix, ModuleQuant, Rule, Severity
from qscale.rules._experts import expert_layers, split_expert

COUNT_KEYS = ("num_experts", "n_routed_experts", "num_local_experts")


def _config_count(ctx: Context) -> tuple[str, int] | None:
    for key in COUNT_KEYS:
        v = ctx.checkpoint.config.get(key)
        if isinstance(v, int) and v > 0:
            return key, v
    return None


def check(ctx: Context) -> Iterator[Finding]:
    """Report MoE layers whose stored experts disagree with the config."""
    cfg = _config_count(ctx)
    inter = ctx.checkpoint.config.get("moe_intermediate_size")
    names = ctx.plan.family.experts if ctx.plan else None
    experts = expert_layers(ctx)  # every layer's indices, also where the map is reduced
    modules = ctx.quant.modules
    layers = _numbers(experts.indices, cfg[1] if cfg else None)
    first = {layer: next(iter(modules[name].module.tensors.values())).name
             for layer, name in experts.first.items()}
    sized = names is not None and isinstance(inter, int)
    right: set[tuple[str, tuple[int, int] | None]] = set()  # (proj, logical shape) judged fine
    words: dict[str, bool] = {}  # projection name -> whether it is all word characters
    for name, mq in modules.items():
        split = split_expert(name, words) if ".experts." in name else None  # the test spares it
        if split is not None:
            proj = split[2]
            if sized and (proj, mq.logical_shape) not in right:
                assert names is not None and isinstance(inter, int)
                wrong = _size(ctx, mq, proj, inter, names)
                if wrong is None:
                    right.add((proj, mq.logical_shape))
                else:
                    yield wrong
        elif mq.module.kind == ModuleKind.FUSED_EXPERTS:
            n = next(iter(mq.module.tensors.values())).shape[0]
            if name not in experts.indices:  # per-expert modules under the name win
                layers[name] = range(n)  # never a set: n comes from the header, unbounded
                first[name] = next(iter(mq.module.tensors.values())).name
    if cfg is None:
        return
    key, want = cfg
    for layer, idx in sorted(layers.items()):
        if _exactly(idx, want):
            continue
        span = f"{min(idx)}–{max(idx)}" if idx else "none"
        gaps = _first_gaps(idx)
        extra = f", missing {', '.join(map(str, gaps))}" if gaps else ""
        yield RULE.finding(
            f"`{layer}`: {len(idx)} experts stored ({span}{extra}), config `{key}` = {want}",
            ctx.at(first[layer]),
            fix=FIX,
        )


def _numbers(indices: Mapping[str, Sequence[str]], want: int | None
             ) -> dict[str, set[int] | range]:
    """Each layer's expert indices as numbers: ``range(want)`` for a layer that stores
    exactly ``0`` … ``want−1``, spelt as decimals are (compared as text: 10^5 indices on a
    400B-class MoE), else the set of their values."""
    canonical: set[str] | None = None  # str(0) … str(want-1), once a layer has want indices
    out: dict[str, set[int] | range] = {}
    for layer, idx in indices.items():  # an index once per projection that stores it
        texts = set(idx)
        if want is not None and len(texts) == want:
            if canonical is None:
                canonical = {str(i) for i in range(want)}  # bounded: want indices are stored
            if canonical.issuperset(texts):  # want distinct canonical texts: 0 … want-1
                out[layer] = range(want)
                continue
        out[layer] = set(map(int, texts))
    return out


def _exactly(idx: set[int] | range, want: int) -> bool:
    """Whether ``idx`` is exactly 0 … want−1, without building that range (``want`` is the
    config's count, ``idx`` may come from a header: either may be huge)."""
    if isinstance(idx, range):
        return len(idx) == want
    return len(idx) == want and (not idx or (min(idx) == 0 and max(idx) == want - 1))


def _first_gaps(idx: set[int] | range, count: int = 5) -> list[int]:
    """The first ``count`` indices below ``max(idx)`` that ``idx`` lacks, in bounded time."""
    if isinstance(idx, range) or not idx:
        return []
    gaps: list[int] = []
    top, i = max(idx), 0
    while i < top and len(gaps) < count:  # at most len(idx) + count steps
        if i not in idx:
            gaps.append(i)
        i += 1
    return gaps


def _size(
    ctx: Context, mq: ModuleQuant, proj: str, inter: int, names: ExpertNames
) -> Finding | None:
    """The finding for an expert whose size disagrees with ``moe_intermediate_size``."""
    if mq.logical_shape is None:
        return None
    out, inp = mq.logical_shape
    got = out if proj in (names.gate, names.up) else inp if proj == names.down else None
    if got is None or got == inter:
        return None
    first = next(iter(mq.module.tensors.values())).name
    return RULE.finding(
        f"`{mq.module.name}` is {out}×{inp}; config `moe_intermediate_size` = {inter}",
        ctx.at(first),
        fix=FIX,
    )


FIX = Fix(
    "make config.json's expert count and size agree with the stored experts",
    Applicability.MANUAL,
)

RULE = Rule(
    code="QS208",
    name="expert-count-mismatch",
    severity=Severity.ERROR,
    doc=__doc__ or "",
    check=check,
    expert_symmetric=True,  # counts from `expert_layers`, which keeps every index
    family_part="expert sizes against `moe_intermediate_size`",
)
