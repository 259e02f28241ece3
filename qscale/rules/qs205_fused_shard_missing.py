"""A fused layer is missing one of its shards: part of the merged weight is never loaded.

## What it checks
For every merged parameter the engine builds from several checkpoint tensors (q/k/v →
`qkv_proj`, gate/up → `gate_up_proj`, Qwen3.5 `in_proj_qkv` + `in_proj_z` → `in_proj_qkvz`,
`in_proj_b` + `in_proj_a` → `in_proj_ba`, DeepSeek `q_a_proj` + `kv_a_proj_with_mqa` →
`fused_qkv_a_proj`), that the checkpoint stores the weight of every shard the family's stacked
mapping names, and for every routed expert that gate, up and down projections are all there.

## Why it matters
The engine allocates the merged weight for all partitions and copies in the shards it finds.
A missing shard leaves its rows as allocated (`torch.empty`: whatever was in memory). vLLM's
"weights not initialized from checkpoint" check counts parameters, not partitions, so the load
succeeds and the layer computes garbage for those rows.

## Example
`language_model.model.layers.1.self_attn.qkv_proj.weight` gets shards q, k but not v (no
`model.language_model.layers.1.self_attn.v_proj.weight`)

## Fix
Re-export the checkpoint with the missing shard; a pruning or merge script usually dropped it.
"""

from collections.abc import Iterator

from qscale.engines.families import ShardId
from qscale.engines.loader import ExpertSources, MergedParam, fed_by_experts
from qscale.rules._api import Applicability, Context, Finding, Fix, Rule, Severity

WEIGHTS = ("weight", "weight_packed", "qweight")


def _label(shard: ShardId) -> str:
    return shard if isinstance(shard, str) else str(shard)


def check(ctx: Context) -> Iterator[Finding]:
    """Report merged weights whose stacked mapping names a shard the checkpoint lacks."""
    assert ctx.plan is not None
    fam = ctx.plan.family
    for p in ctx.plan.params.values():
        if p.leaf not in WEIGHTS or not p.sources or p.sources[0].expert is not None:
            continue
        present = {s.shard_id for s in p.sources}
        if None in present:
            continue  # fused on disk: one tensor fills every partition
        module = p.name.rpartition(".")[0]
        expected = [st for st in fam.stacked if module.endswith(st.param)]
        missing = [st for st in expected if st.shard not in present]
        if not missing:
            continue
        first = p.sources[0]
        own = next(st.weight for st in expected if st.shard == first.shard_id)
        names = ", ".join(
            f"`{first.source.replace(own + '.', st.weight + '.', 1)}`" for st in missing
        )
        got = ", ".join(_label(st.shard) for st in expected if st.shard in present)
        yield RULE.finding(
            f"`{p.name}` gets shard(s) {got} but not {', '.join(_label(m.shard) for m in missing)}"
            f" (no {names}): those partitions keep uninitialised memory and the engine raises"
            " nothing",
            ctx.at_param(p),
            fix=FIX,
        )
    yield from _experts(ctx)


def _experts(ctx: Context) -> Iterator[Finding]:
    assert ctx.plan is not None
    fam = ctx.plan.family
    if fam.experts is None:
        return
    #: layer -> shard id -> the experts whose tensor feeds it
    have: dict[str, dict[str, set[int]]] = {}
    where: dict[str, MergedParam] = {}
    for p in ctx.plan.params.values():
        if p.leaf.partition("_")[2] not in WEIGHTS or not fed_by_experts(p.sources):
            continue
        layer = p.name.rpartition(".")[0]
        where.setdefault(layer, p)
        shards = have.setdefault(layer, {})
        if isinstance(p.sources, ExpertSources):  # alike experts: read by block
            for sid, experts in p.sources.by_shard().items():
                if isinstance(sid, str):
                    shards.setdefault(sid, set()).update(experts)
            continue
        for s in p.sources:
            if s.expert is not None and isinstance(s.shard_id, str):
                shards.setdefault(s.shard_id, set()).add(s.expert)
    names = {"w1": fam.experts.gate, "w3": fam.experts.up, "w2": fam.experts.down}
    for layer, shards in sorted(have.items()):
        seen = set().union(*shards.values())
        missing = {x: seen - shards.get(x, set()) for x in names}
        for e in sorted(set().union(*missing.values())):
            lost = sorted(x for x in names if e in missing[x])
            if lost:
                yield RULE.finding(
                    f"`{layer}` expert {e} has no {', '.join(names[x] for x in lost)} weight:"
                    " its slice of the fused expert weights keeps uninitialised memory",
                    ctx.at_param(where[layer]),
                    fix=FIX,
                )


FIX = Fix("re-export the checkpoint with every shard of the fused layer", Applicability.MANUAL)

RULE = Rule(
    code="QS205",
    name="fused-shard-missing",
    severity=Severity.ERROR,
    doc=__doc__ or "",
    check=check,
    needs_plan=True,
)
