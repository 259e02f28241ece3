"""An ignore/exclude entry does not match the modules the engine sees.

## What it checks
Every entry of the quantization config's skip list — compressed-tensors `ignore`, Quark
`exclude`, ModelOpt `exclude_modules`, `quant_method: fp8` `ignored_layers` /
`modules_to_not_convert`, `fbgemm_fp8` and `fp_quant` `modules_to_not_convert` — against the
checkpoint's modules, in both namings that matter:

- the checkpoint's own names, which the quantizer matched when it exported;
- the engine's names. vLLM renames exact entries with the model's name mapper (so
  Hugging Face names are right), but matches `re:` entries unchanged against **its own**
  module names — for the Qwen3.5 VL class `language_model.model.layers.…`, for the text-only
  class `model.layers.…`, never `model.language_model.layers.…`.

A regex that skips modules under the checkpoint's names but not under the engine's is an
error: the engine builds those modules quantized while they are stored unquantized. FP-Quant
entries are name suffixes, which vLLM's `FPQuantConfig.get_quant_method` tests against its own
layer prefixes (`prefix.endswith(entry)`, `fp_quant.py`): an entry that ends a shard's name
(`self_attn.q_proj`) but not its fused layer's (`self_attn.qkv_proj`), or the other way round,
is an error. An entry
that matches nothing in either naming is a warning, with the closest module names, or with
the part of the model that the checkpoint does not hold at all (`model.visual` when the
vision tower was left out).

An exact entry that names an LM head by a shorter name than the checkpoint's
(Kimi-K2.5's `lm_head` for `language_model.lm_head`) is not reported when the head is stored
unquantized and the engine builds it unquantized: neither the quantizer nor vLLM matches
the entry (compressed-tensors and vLLM compare exact entries for equality), but nothing
would change if they did. vLLM builds a `ParallelLMHead` quantized under compressed-tensors
only when a target names it by name or `re:` regex (`CompressedTensorsConfig.get_quant_method`;
the `Linear` class target does not reach it); real vLLM 0.33.0 returns no quantization
method for Kimi-K2.5's `language_model.lm_head`.

The engine's names are the family's: where qscale has no family for the architecture on
the engine version (QS103), `re:` entries are judged on the checkpoint's names only, and the
report lists the engine-name part as not checked.

## Why it matters
Ignore lists that do not match are the most frequent reason a quantized checkpoint fails to
load or loads garbage: prefix drift after a fine-tune or a VLM wrapper, fused names
(`qkv_proj`) where the checkpoint stores `q_proj`/`k_proj`/`v_proj`, regexes anchored on the
Hugging Face prefix.

## Example
`re:^model\\.language_model\\.layers\\.\\d+\\.mlp\\.shared_expert\\..*` skips 6 modules under the
checkpoint's names but none under vLLM's (`language_model.model.layers.0.mlp.shared_expert.…`)

## Fix
Write the entry so it matches both namings (`re:.*mlp\\.shared_expert\\..*`), or list the
modules by their exact Hugging Face names (`qscale fix` rewrites the list).
"""

import bisect
import difflib
import heapq
from collections.abc import Callable, Collection, Iterable, Iterator, Sequence

from qscale.engines.families import Family
from qscale.engines.loader import engine_name
from qscale.formats import quant_config_ref
from qscale.formats._api import SkipList, wildcard
from qscale.formats._layers import is_lm_head
from qscale.module_map import ExpertBlock, ModuleMap
from qscale.modules import ModuleKind
from qscale.rules._api import (
    Applicability,
    Context,
    Finding,
    Fix,
    Location,
    ModuleQuant,
    Rule,
    Severity,
)
from qscale.rules._structure import FLOAT_WEIGHTS, QUANT_PARAMS, head_built_unquantized


def check(ctx: Context) -> Iterator[Finding]:
    """Report skip-list entries that match nothing, or match differently in the engine."""
    fmt = ctx.quant.format
    skips = fmt.skip_list() if fmt is not None else None
    if skips is None:
        return
    if skips.on_engine_layers:
        yield from _suffix_entries(ctx, fmt.config_key if fmt else None, skips)
    else:
        yield from _skip_list_entries(ctx, skips)


def _list_location(ctx: Context, key: str, config_key: str | None = None) -> Location:
    """Where the skip list is stored: its file and JSON pointer (``/quantization_config/…``,
    ``/text_config/quantization_config/…``, hf_quant_config.json's ``/quantization/…``)."""
    ref = quant_config_ref(ctx.checkpoint)
    if ref is None:  # a format parsed from elsewhere: the format's own file
        fmt = ctx.quant.format
        return Location(file=config_key or (fmt.config_key if fmt else None),
                        key=f"/quantization_config/{key}")
    return Location(file=ref.file, key=ref.at(key))


def _skip_list_entries(ctx: Context, skips: SkipList) -> Iterator[Finding]:
    """The skip-list entries matched against the checkpoint's and the engine's module names,
    as the engine matches them."""
    key, entries, match = skips.key, skips.entries, skips.match
    # the engine's names are the family's: without one (QS103) the `re:` entries are judged on
    # the checkpoint's names alone (FAMILY_PART), not on another engine's or release's names
    fam = ctx.plan.family if ctx.plan else None
    names = list(ctx.quant.modules)  # every module: an exclude may name a conv or a norm
    known = ctx.quant.modules
    # `wildcard` also matches names with `language_model.` dropped: those, sorted, for
    # `_wildcard_hit` (names are sorted already)
    stripped = sorted(
        (n.replace("language_model.", "", 1), n) for n in names if "language_model." in n
    ) if match is wildcard else []
    at = _list_location(ctx, key)
    near = _Near(names, known)
    parts: _Parts | None = None  # built for the first entry that needs it
    acting = skips.acting  # entries that match no module and still act (Quark's)
    for entry in entries:
        if match is not wildcard and not entry.startswith("re:"):
            hits = [entry] if entry in known else []  # exact names: a set lookup
        elif not entry.startswith("re:"):  # only whether it matches anything is asked below
            if entry in known:
                hits = [entry]
            else:
                parts = parts or _Parts(names)
                hits = _wildcard_hit(entry, names, stripped, parts)
        else:
            hits = [n for n in names if match(n, entry)]
        if entry.startswith("re:") and fam is not None and hits:
            engine_hits = [n for n in hits if match(engine_name(fam, n), entry)]
            lost = [n for n in hits if n not in engine_hits]
            if lost:
                yield RULE.finding(
                    f"`{entry}` skips {len(hits)} module(s) under the checkpoint's names but"
                    f" {len(engine_hits)} of them under vLLM's, which `re:` entries are matched"
                    f" against: `{engine_name(fam, lost[0])}` (checkpoint `{lost[0]}`) is built"
                    " quantized",
                    at,
                    fix=FIX,
                )
            continue
        if hits or entry.startswith("re:") or entry in acting:
            continue
        if _harmless_head_entry(ctx, entry):
            continue  # the head it names loads as BF16 whether the entry matches or not
        shards = _shards(fam, entry, known) if fam else []
        close = shards or near.drifted(entry)
        absent = None
        if not close:
            close, absent = near.walk(entry)
        label = "the engine fuses it from" if shards else "closest:"
        hint = f"; {label} {', '.join(f'`{c}`' for c in close)}" if close else ""
        if absent is not None:
            hint = f"; the checkpoint has no module under `{absent}`"
        yield RULE.finding(
            f"`{entry}` matches no module of the checkpoint{hint}",
            at,
            fix=FIX,
            severity=Severity.WARNING,
        )


def _suffix_entries(ctx: Context, config_key: str | None, skips: SkipList) -> Iterator[Finding]:
    """Entries tested against the engine's layer names (FP-Quant's ``modules_to_not_convert``):
    suffixes of the checkpoint's module names (what fp_quant's
    ``replace_with_fp_quant_linear`` tests) and of vLLM's layer names (what
    ``FPQuantConfig.get_quant_method`` tests; a fused layer is one name for its shards)."""
    match = skips.match
    at = _list_location(ctx, skips.key, config_key)
    engine: dict[str, str] = {}  # checkpoint module -> the engine layer it loads into
    for p in (ctx.plan.params.values() if ctx.plan is not None else ()):
        layer = p.name.rpartition(".")[0]
        for src in p.sources:
            if src.expert is None:
                engine.setdefault(src.source.rpartition(".")[0], layer)
    names = [n for n, mq in ctx.quant.modules.items() if mq.module.kind == ModuleKind.LINEAR]
    for entry in skips.entries:
        ours = [n for n in names if match(n, entry)]
        lost = [n for n in ours if n in engine and not match(engine[n], entry)]
        gained = [n for n in names if n not in ours and match(engine.get(n, ""), entry)]
        for n, how in ((lost[:1], "skips `{n}` by its checkpoint name, but vLLM tests its own"
                        " layer name, `{e}`, which does not end with it: the layer is built"
                        " FP-Quant while `{n}` is stored for an unquantized one"),
                       (gained[:1], "ends vLLM's layer name `{e}` but not the checkpoint's"
                        " `{n}`: vLLM builds the layer unquantized while `{n}` is stored for"
                        " an FP-Quant one")):
            if n:
                yield RULE.finding(
                    f"`{entry}` " + how.format(n=n[0], e=engine[n[0]]), at,
                    fix=Fix("list the engine's layer name (the fused one) and store all its"
                            " shards alike", Applicability.MANUAL))
        if not ours and not gained:
            yield RULE.finding(f"`{entry}` matches no module of the checkpoint", at, fix=FIX,
                               severity=Severity.WARNING)


def _wildcard_hit(
    entry: str,
    names: Sequence[str],
    stripped: Sequence[tuple[str, str]],
    parts: "_Parts | None" = None,
) -> list[str]:
    """``[a module `wildcard` matches]``, or ``[]``. Only names that can match are tried: those
    that start with a glob's literal head (bisection), else those that hold the entry's
    literal text (:class:`_Parts`). A ModelOpt list of 10^2–10^3 entries against 10^5 expert
    modules would otherwise cost 10^8 substring tests or 10^7 fnmatch calls."""
    cut = next((i for i, c in enumerate(entry) if c in "*?["), None)
    if cut is None or (cut == 0 and "[" not in entry):
        parts = parts or _Parts(names)
        for n in parts.candidates(entry):
            if wildcard(n, entry):
                return [n]
        return []
    head = entry[:cut]
    start = bisect.bisect_left(names, head)
    few = _fewer_than_under_head(entry, names, head, start, parts)
    if few is not None:
        return next(([n] for n in few if wildcard(n, entry)), [])
    # the run of names under the head, sliced by bisection too: `names[start:]` copied the
    # rest of the list for every entry (quadratic in the model for a per-layer list)
    stop = bisect.bisect_left(names, head + _TOP, start)
    for n in names[start:stop]:
        if wildcard(n, entry):
            return [n]
    start = bisect.bisect_left(stripped, (head, ""))
    stop = bisect.bisect_left(stripped, (head + _TOP, ""), start)
    for _, n in stripped[start:stop]:
        if wildcard(n, entry):
            return [n]
    return []


#: a character above every character of a name: ``head + _TOP`` sorts after every name that
#: starts with ``head``
_TOP = "\U0010ffff"


def _fewer_than_under_head(
    entry: str, names: Sequence[str], head: str, start: int, parts: "_Parts | None"
) -> list[str] | None:
    """The names holding the glob's literal pieces, where they are fewer than the long run of
    names under its head (an MTP layer's experts under ``mtp.layers.0*_v5``), else None."""
    if "[" in entry or parts is None:
        return None
    stop = bisect.bisect_left(names, head + _TOP, start)
    if stop - start <= _Parts.FEW:
        return None
    few = parts.candidates(entry)
    return few if len(few) < stop - start else None


class _Parts:
    """The dotted components of the module names (and of the names with `language_model.`
    dropped, which :func:`wildcard` also tries), each with the names that hold it: the names
    that can contain a text are those holding each of its inner components, one ending with
    its first piece, one starting with its last."""

    #: a candidate set this small is taken as it is, without looking for a smaller one
    FEW = 64

    def __init__(self, names: Sequence[str]) -> None:
        self.names = names
        self.by_part: dict[str, list[int]] = {}
        for k, n in enumerate(names):
            bits = set(n.split("."))
            if "language_model." in n:
                bits.update(n.replace("language_model.", "", 1).split("."))
            for b in bits:
                self.by_part.setdefault(b, []).append(k)

    def _holding(self, test: Callable[[str], bool]) -> set[int]:
        out: set[int] = set()
        for b, ks in self.by_part.items():
            if test(b):
                out.update(ks)
        return out

    def _for_text(self, text: str) -> set[int] | list[int]:
        pieces = text.split(".")
        if len(pieces) >= 3:
            inner = [self.by_part.get(p, []) for p in pieces[1:-1]]
            best = min(inner, key=len)
            if len(best) > self.FEW and pieces[-1]:  # e.g. only `1` of `layers.1.mlp.x`
                last = pieces[-1]  # names whose component starts with it: often far fewer
                side = self._holding(lambda b: b.startswith(last))
                return side if len(side) < len(best) else best
            return best
        if len(pieces) == 2:
            first, last = pieces
            sides = []
            if first:
                sides.append(self._holding(lambda b: b.endswith(first)))
            if last:
                sides.append(self._holding(lambda b: b.startswith(last)))
            return min(sides, key=len) if sides else set(range(len(self.names)))
        return self._holding(lambda b: text in b)

    def candidates(self, entry: str) -> list[str]:
        """The names, in name order, that may match ``entry`` (a substring or a glob without
        ``[``): each must hold every literal piece between its ``*`` and ``?``."""
        texts = [t for t in entry.replace("?", "*").split("*") if t]
        if not texts:
            return list(self.names)
        best = min((self._for_text(t) for t in texts), key=len)
        return [self.names[k] for k in sorted(best)]


class _Near:
    """Closest-name hints for entries that match nothing, each computed against a bounded
    candidate set: a whole-checkpoint ``difflib`` search per entry cost ~5 s per entry on a
    400B-class checkpoint (10^5 modules), minutes for a skip list of 10^2 absent entries.
    ``names`` is sorted; indexes are built on first use, once per check."""

    #: the most names one ``difflib`` search compares the entry with
    LIMIT = 256

    def __init__(self, names: Sequence[str], known: Collection[str]) -> None:
        self.names = names
        self._known = known
        self._reversed: list[str] | None = None
        #: alike expert blocks by (projection, each tail of their layer that follows a dot,
        #: and ""), built with the reversed names: :meth:`_members_ending` looks them up
        self._blocks: dict[tuple[str, str], list[ExpertBlock]] = {}

    def drifted(self, entry: str) -> list[str]:
        """Modules whose name ends like the entry once its first one or two components are
        dropped (prefix drift: ``model.layers.0.mlp.gate`` for
        ``model.language_model.layers.0.mlp.gate``), the first two in name order."""
        parts = entry.split(".")
        for cut in range(1, min(3, len(parts) - 1)):
            found = self._ending(("." + ".".join(parts[cut:]))[::-1])
            if found:
                return found
        return []

    def _ending(self, rtail: str) -> list[str]:
        """The first two names (in name order) that end with the reversed ``rtail``: a
        bisection of the reversed names, sorted once per check, and, for the members of alike
        expert blocks (10^5 names that are not sorted so), a test per block."""
        if self._reversed is None:
            self._reversed = sorted(n[::-1] for n in self._index_blocks())
        rev = self._reversed
        lo = bisect.bisect_left(rev, rtail)
        hi = bisect.bisect_left(rev, rtail[:-1] + chr(ord(rtail[-1]) + 1), lo)
        hits = [r[::-1] for r in heapq.nsmallest(2, rev[lo:hi], key=lambda r: r[::-1])]
        return heapq.nsmallest(2, [*hits, *self._members_ending(rtail[::-1])])

    def _index_blocks(self) -> Iterable[str]:
        """Index the alike expert blocks a map holds, and give the names outside them (every
        name, for a map without blocks)."""
        known = self._known
        if not isinstance(known, ModuleMap) or not known.blocks:
            return self.names
        for b in known.blocks.values():
            parts = b.layer.split(".")
            for tail in ("", *(".".join(parts[k:]) for k in range(1, len(parts)))):
                self._blocks.setdefault((b.proj, tail), []).append(b)
        firsts = {b.first.name for b in known.blocks.values()}
        return [n for n in known.known if n not in firsts]

    def _members_ending(self, tail: str) -> list[str]:
        """The block members whose name ends with ``tail``: ``.`` then two or more components
        (:meth:`drifted` keeps at least two). A member ``{layer}.{idx}.{proj}`` does when the
        tail's last component is its projection, the one before its index, and any before
        that a tail of its layer that follows a dot: one lookup, whatever the block count."""
        head, _, proj = tail[1:].rpartition(".")
        assert head, tail
        pre, _, idx = head.rpartition(".")
        return [b.name(idx) for b in self._blocks.get((proj, pre), ()) if idx in b.members]

    def _range(self, prefix: str) -> tuple[int, int]:
        """The names equal to ``prefix`` or under ``prefix.``, as a slice of ``names``."""
        lo = bisect.bisect_left(self.names, prefix)
        hi = bisect.bisect_left(self.names, prefix + "/", lo)  # "/" follows "." in ASCII
        return lo, hi

    def _exists(self, prefix: str) -> bool:
        """Whether a module is named ``prefix`` or lies under ``prefix.``."""
        names = self.names
        i = bisect.bisect_left(names, prefix)
        if i < len(names) and names[i] == prefix:
            return True
        i = bisect.bisect_left(names, prefix + ".", i)
        return i < len(names) and names[i].startswith(prefix + ".")

    def walk(self, entry: str) -> tuple[list[str], str | None]:
        """Follow the entry's components down the module tree, replacing a component no module
        has by the closest one that exists there (``difflib``, among that level's children:
        ``layer`` → ``layers``). Returns (closest module names, None), or ([], the first missing
        path) where a component before the last has nothing close: the entry names a part of
        the model the checkpoint does not hold (a vision tower or MTP block left out)."""
        parts = entry.split(".")
        path = ""
        for k, comp in enumerate(parts):
            here = f"{path}.{comp}" if path else comp
            if self._exists(here):
                path = here
                continue
            # an index (layer, expert) that is not there is absent, not misspelt
            near = [] if comp.isdigit() else difflib.get_close_matches(
                comp, self._children(path), n=1)
            if near:
                path = f"{path}.{near[0]}" if path else near[0]
            elif k < len(parts) - 1:
                return [], here
            else:
                return self._close_leaf(entry, path), None
        return ([path] if path in self._known and path != entry else []), None

    def _close_leaf(self, entry: str, prefix: str) -> list[str]:
        """Up to two names close to ``entry`` under ``prefix`` (at most :attr:`LIMIT` of them
        are compared)."""
        lo, hi = self._range(prefix) if prefix else (0, len(self.names))
        return difflib.get_close_matches(entry, self.names[lo : min(hi, lo + self.LIMIT)], n=2)

    def _children(self, prefix: str) -> list[str]:
        """The components that follow ``prefix`` in module names (at most 4 × :attr:`LIMIT`),
        one bisection per child."""
        head = prefix + "." if prefix else ""
        lo, hi = self._range(prefix) if prefix else (0, len(self.names))
        names = self.names
        out: list[str] = []
        pos = lo
        while pos < hi and len(out) < 4 * self.LIMIT:
            n = names[pos]
            if not n.startswith(head) or n == prefix:
                pos += 1
                continue
            comp = n[len(head):].split(".", 1)[0]
            out.append(comp)
            pos = bisect.bisect_left(names, head + comp + "/", pos + 1, hi)
        return out


def _harmless_head_entry(ctx: Context, entry: str) -> bool:
    """Whether an exact entry that matches no module names an LM head (``lm_head``) that is
    stored unquantized under a longer name (``language_model.lm_head``) and that the engine
    builds unquantized: matched or not, the head is BF16 on disk and in the engine."""
    if not is_lm_head(entry):
        return False
    tail = "." + entry
    mods = ctx.quant.modules  # the names first: an alike expert's record is built on demand
    heads = [mods[name] for name in mods if name.endswith(tail)]
    return bool(heads) and all(_unquantized_head(ctx, mq) for mq in heads)


def _unquantized_head(ctx: Context, mq: ModuleQuant) -> bool:
    """An LM head stored as a plain float weight that the engine builds unquantized."""
    w = mq.module.tensors.get("weight")
    return (is_lm_head(mq.module.name) and w is not None and w.dtype in FLOAT_WEIGHTS
            and not QUANT_PARAMS & mq.module.tensors.keys()
            and (mq.scheme is None or head_built_unquantized(ctx, mq) is True))


def _shards(fam: Family, entry: str, names: Collection[str]) -> list[str]:
    """The checkpoint modules a fused engine name (``…qkv_proj``) is built from."""
    out = []
    for st in fam.stacked:
        if entry.endswith(st.param):
            shard = entry[: -len(st.param)] + st.weight
            if shard in names:
                out.append(shard)
    return out


FIX = Fix(
    "rewrite the entry into names both the quantizer and the engine match (qscale fix)",
    Applicability.SAFE,
)

#: what this rule cannot judge without the engine's family (the report lists it as not checked)
FAMILY_PART = "`re:` entries against the engine's module names"

RULE = Rule(
    code="QS204",
    name="ignore-entry-mismatch",
    severity=Severity.ERROR,
    doc=__doc__ or "",
    check=check,
    fixable=Applicability.SAFE,
    family_part=FAMILY_PART,
)
