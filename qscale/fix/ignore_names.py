"""Ignore/exclude lists rewritten into names both the engine and the checkpoint match (class 1).

Two edits, planned together and checked together:

- every entry :func:`qscale.fix.ignores.find_ignore_mismatches` reports is replaced by the
  exact checkpoint names of the modules it was meant to cover (vLLM renames exact entries
  through its mapper, so these match there too); an entry that covers nothing is dropped;
- a module stored unquantized that the config quantizes (QS202) is added, with every other
  shard of its fused layer, when all of them are stored unquantized (what the quantizer meant).

Only modules stored unquantized are ever newly ignored, so no stored FP8/FP4 bytes are read as
BF16. The edits are then simulated (the rules re-run on the edited config, tensors unchanged):
the findings that disappear are the ones the change resolves; if the simulation finds a new
error, nothing is changed.
"""

from __future__ import annotations

from collections.abc import Iterator

from qscale.findings import Applicability, Severity
from qscale.fix.context import FixContext, ignore_key, simulate
from qscale.fix.ignores import find_ignore_mismatches
from qscale.fix.model import Change, ConfigAction, ConfigEdit, Refusal, finding_key
from qscale.formats import ModuleQuant, QuantConfigRef
from qscale.rules._structure import QUANT_PARAMS, stored_unquantized

NAME = "ignore-names"


def _unquantized_on_disk(mq: ModuleQuant | None) -> bool:
    if mq is None:
        return False
    w = mq.module.tensors.get("weight")
    return (
        w is not None
        and w.dtype in ("BF16", "F16", "F32")
        and not (QUANT_PARAMS & mq.module.tensors.keys())
    )


def _renames(
    ctx: FixContext, ref: QuantConfigRef, key: str
) -> tuple[list[ConfigEdit], list[Refusal]]:
    edits, refusals = [], []
    for m in find_ignore_mismatches(ctx.checkpoint, ctx.engine, ctx.quant):
        stored = [r for r in m.replacement if not _unquantized_on_disk(ctx.quant.modules.get(r))]
        if stored:  # the entry would newly ignore a module stored quantized: leave it
            refusals += [
                Refusal(
                    f,
                    f"rewriting it would ignore `{stored[0]}`, which is stored quantized;"
                    " decide by hand which naming the entry was meant for",
                )
                for f in ctx.findings("QS204")
                if f"`{m.entry}`" in f.message
            ]
            continue
        edits.append(
            ConfigEdit(ref.file, ref.at(key), ConfigAction.REPLACE, list(m.replacement), m.entry)
        )
    return edits, refusals


def _additions(ctx: FixContext, ref: QuantConfigRef, key: str) -> list[ConfigEdit]:
    if ctx.plan is None:
        return []
    by_source = {s.source: p for p in ctx.plan.params.values() for s in p.sources}
    names: dict[str, None] = {}
    for f in ctx.findings("QS202", "QS207"):
        module = (f.location.tensor or "").rpartition(".")[0]
        p = by_source.get(f"{module}.weight")
        shards = [s.source.rpartition(".")[0] for s in p.sources] if p else [module]
        mqs = [ctx.quant.modules.get(s) for s in shards]
        if shards and all(mq is not None and stored_unquantized(mq) for mq in mqs):
            names.update(dict.fromkeys(shards))
    return [ConfigEdit(ref.file, ref.at(key), ConfigAction.APPEND, n) for n in names]


def plan(ctx: FixContext) -> Iterator[Change | Refusal]:
    """One change with every ignore-list edit, if the simulation shows it resolves findings."""
    ref, key = ctx.quant_config(), ignore_key(ctx)
    if ref is None or key is None:
        return
    renames, refusals = _renames(ctx, ref, key)
    yield from refusals
    covered = {n for e in renames for n in e.value}
    edits = renames + [e for e in _additions(ctx, ref, key) if e.value not in covered]
    if not edits:
        return
    after = simulate(ctx, edits)
    before = {finding_key(f) for f in ctx.report.findings}
    now = {finding_key(f) for f in after.findings}
    new_errors = [
        f for f in after.findings if finding_key(f) not in before and f.severity >= Severity.ERROR
    ]
    resolved = tuple(f for f in ctx.report.findings if finding_key(f) not in now)
    if new_errors or not resolved:
        return  # nothing asked for it, or it would break something: leave the list alone
    n_drop = sum(e.action == ConfigAction.REPLACE and not e.value for e in edits)
    n_ren = sum(e.action == ConfigAction.REPLACE for e in edits) - n_drop
    n_add = sum(e.action == ConfigAction.APPEND for e in edits)
    what = [
        f"{n} {label}"
        for n, label in (
            (n_ren, "entries rewritten into names the engine matches"),
            (n_drop, "entries that match nothing dropped"),
            (n_add, "modules stored unquantized added"),
        )
        if n
    ]
    yield Change(
        fixer=NAME,
        title=f"Rewrite `{key}`: {', '.join(what)}",
        applicability=Applicability.SAFE,
        edits=tuple(edits),
        resolves=resolved,
        detail="only modules stored unquantized become ignored; checked by re-running the rules"
        " on the edited config",
    )
