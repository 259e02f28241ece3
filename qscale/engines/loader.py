"""ShardSlot, MergedParam, LoadPlan; plan_load() — the engine simulation (pure).

For every checkpoint tensor: the engine parameter it loads into and the shard id it carries
(the family's stacked mapping, in the engine's own substring semantics); for every merged
parameter: its partitions and, for per-tensor scales, the value each slot holds after loading
under the selected engine profile.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from operator import itemgetter
from typing import TYPE_CHECKING, Any, cast, overload

from qscale._fast import maker
from qscale.checkpoint import Checkpoint
from qscale.engines import EngineSpec, TupleScale, parse_engine
from qscale.engines.catalogue import family_for
from qscale.engines.families import FAMILIES, Family, ShardId
from qscale.engines.families._api import Stacked
from qscale.engines.profiles import FP8_SENTINEL, ExpertLoader
from qscale.engines.templates import (
    ExpertMemo,
    index_blind_literals,
    index_blind_regexes,
)
from qscale.engines.wna16 import facts as wna16_facts
from qscale.formats import QuantMap, resolve_quantization
from qscale.formats._api import loaded_instance
from qscale.module_map import ExpertBlock, ModuleMap
from qscale.schemes import QuantScheme, per_tensor

if TYPE_CHECKING:
    from qscale.formats.modelopt import ModelOptConfig

#: Slot values: a float, or None for memory the engine never wrote (torch.empty).
Slot = float | None


@dataclass(frozen=True, slots=True)
class ShardSlot:
    """One checkpoint tensor feeding one engine parameter."""

    source: str  #: checkpoint tensor name
    shard_id: ShardId | None  #: vLLM convention: "q"/"k"/"v", int, tuple, or None (whole)
    expert: int | None = None


#: one alike expert block's parameter feeding an engine parameter whole: (shard id, block,
#: the block's parameter)
BlockPart = tuple[ShardId | None, ExpertBlock, str]


class Places:
    """Each checkpoint tensor's place in checkpoint order, the map built on first use: a plan
    whose routed experts all come in alike blocks never needs it."""

    __slots__ = ("_names", "_pos")

    def __init__(self, names: Collection[str]) -> None:
        self._names = names
        self._pos: dict[str, int] | None = None

    def __call__(self) -> Mapping[str, int]:
        if self._pos is None:
            self._pos = dict(zip(self._names, range(len(self._names)), strict=True))
        return self._pos


class ExpertSources(Sequence[ShardSlot]):
    """The sources of an engine parameter that only alike routed experts feed (the fused
    ``w13_weight`` of a MoE layer: 10^3 tensors), as the sequence of :class:`ShardSlot` the
    tensor-by-tensor plan gives, in checkpoint order. Built on first use past its length;
    :meth:`by_shard` reads the experts each shard id covers and :meth:`scheme_source` a
    source to read the scheme by, neither building it nor placing a tensor. Equal to the
    tuple of the same slots."""

    __slots__ = ("_first", "_items", "_len", "_parts", "_places")

    def __init__(self, parts: list[BlockPart], places: Callable[[], Mapping[str, int]]) -> None:
        self._parts = parts
        self._places = places
        self._len = sum(len(b.indices) for _, b, _ in parts)
        self._first: ShardSlot | None = None
        self._items: tuple[ShardSlot, ...] | None = None

    def _all(self) -> tuple[ShardSlot, ...]:
        if self._items is None:
            pos = self._places()
            rows = sorted((pos[n], n, shard, int(i)) for shard, b, param in self._parts
                          for n, i in zip(_member_names(b, param), b.indices, strict=True))
            self._items = tuple(_shard_slot(n, shard, e) for _, n, shard, e in rows)
        return self._items

    def _head(self) -> ShardSlot:
        """The first source in checkpoint order, without sorting the others."""
        if self._first is None:
            pos = self._places()
            best: tuple[int, ShardId | None, str, str] | None = None
            for shard, b, param in self._parts:
                names = _member_names(b, param)
                at = list(map(pos.__getitem__, names))
                p = min(at)
                if best is None or p < best[0]:
                    i = at.index(p)
                    best = (p, shard, names[i], b.indices[i])
            assert best is not None
            self._first = _shard_slot(best[2], best[1], int(best[3]))
        return self._first

    def scheme_source(self) -> str:
        """A source whose module has the first source's scheme and whose parameter is the
        first source's (what the loader's verdicts on a source read): the first block's first
        member where every block feeding the parameter resolved to one scheme and feeds it
        the same parameter, else the first source itself."""
        _, b, param = self._parts[0]
        quant = b.quant
        assert quant is not None
        if all(p[2] == param and p[1].quant is not None and p[1].quant.scheme is quant.scheme
               for p in self._parts):
            return b.members[b.indices[0]][param][0]
        return self._head().source

    def by_shard(self) -> dict[ShardId | None, set[int]]:
        """Shard id -> the experts whose tensor feeds it."""
        out: dict[ShardId | None, set[int]] = {}
        for shard, b, _ in self._parts:
            out.setdefault(shard, set()).update(b.numbers())
        return out

    def __len__(self) -> int:
        return self._len

    @overload
    def __getitem__(self, i: int) -> ShardSlot: ...
    @overload
    def __getitem__(self, i: slice) -> tuple[ShardSlot, ...]: ...

    def __getitem__(self, i: int | slice) -> ShardSlot | tuple[ShardSlot, ...]:
        if i == 0 and self._items is None:
            return self._head()
        return self._all()[i]

    def __iter__(self) -> Iterator[ShardSlot]:
        return iter(self._all())

    def __eq__(self, other: object) -> bool:
        if isinstance(other, (ExpertSources, tuple)):
            return self._all() == tuple(other)
        return NotImplemented

    def __hash__(self) -> int:
        return hash(self._all())

    def __repr__(self) -> str:
        return repr(self._all())


@dataclass(frozen=True, slots=True)
class MergedParam:
    """One engine parameter and what loads into it."""

    name: str  #: engine parameter name
    #: a tuple, or :class:`ExpertSources` where only alike routed experts feed it
    sources: Sequence[ShardSlot]
    partitions: tuple[int, ...] | None = None  #: output sizes of the merged layer
    slots: tuple[Slot, ...] | None = None  #: per-tensor scales: value per partition
    errors: tuple[str, ...] = ()  #: what makes the engine refuse this parameter
    #: per-tensor scales the loader keeps fewer of than there are shards (SGLang's DeepSeek
    #: concatenation keeps the first 0-d scale): each shard's own value, in partition order
    shard_values: tuple[Slot, ...] | None = None
    #: the scheme's :attr:`TensorSpec.overwritten` role when every shard's copy replaces the
    #: last (``slots`` then holds the one value kept: the shard loaded last)
    overwritten: str | None = None
    kept_from: str | None = None  #: with ``overwritten``: the source whose value stays

    @property
    def leaf(self) -> str:
        """``weight_scale``, ``input_scale``, …"""
        return self.name.rsplit(".", 1)[-1]


@dataclass(frozen=True, slots=True)
class Refusal:
    """A whole-checkpoint reason the engine refuses to load, and the config key behind it."""

    reason: str
    file: str  #: the config file holding the cause (or the safetensors file of ``tensor``)
    key: str | None  #: JSON pointer, e.g. /architectures (None: the cause is a tensor)
    tensor: str | None = None  #: the checkpoint tensor behind it, when there is one
    fix: str | None = None  #: the remedy, when QS402's general one does not fit


@dataclass(frozen=True, slots=True)
class LoadPlan:
    """Output of plan_load."""

    engine: EngineSpec
    family: Family
    params: Mapping[str, MergedParam]
    skipped: tuple[str, ...] = ()  #: tensors the engine skips on purpose (e.g. mtp.*)
    notes: tuple[str, ...] = field(default=())
    refusals: tuple[Refusal, ...] = ()  #: whole-checkpoint reasons the engine refuses to load
    #: checkpoint tensors the engine's loader passes over without a word, leaving the fused
    #: parameters they were meant for unwritten (profile data: ``expert_loaders``)
    dropped: tuple[str, ...] = ()
    #: (checkpoint tensor, the name the engine's stacked rename gives it) for tensors stored
    #: already fused (``in_proj_qkvz``) that the engine renames again (``in_proj_qkvzz``): no
    #: parameter has that name, so the tensor is loaded into none (:func:`renamed_twice`)
    renamed_away: tuple[tuple[str, str], ...] = ()

    def param(self, name: str) -> MergedParam:
        """A parameter by its engine name."""
        return self.params[name]


def expand_shard_id(shard_id: ShardId | None, n_partitions: int) -> tuple[int, ...]:
    """The partition slots a shard id addresses: "q"/"k"/"v" -> 0/1/2, an int -> itself, a
    tuple -> each index, None -> every partition. For loader authors handling tuple ids."""
    if shard_id is None:
        return tuple(range(n_partitions))
    if isinstance(shard_id, tuple):
        return shard_id
    if isinstance(shard_id, str):
        return ({"q": 0, "k": 1, "v": 2}[shard_id],)
    return (shard_id,)


def engine_name(fam: Family, name: str) -> str:
    """The family's renames applied to a checkpoint name (:meth:`Family.engine_name`)."""
    return fam.engine_name(name)


def skipped_by(fam: Family, name: str, eng: str, text: Mapping[str, Any]) -> bool:
    """Whether the engine's main-model loader skips this tensor (draft/MTP layers, names the
    loader or its mapper drops)."""
    if name.startswith(fam.skip_prefixes) or (fam.generated and eng.startswith(fam.skip_prefixes)):
        return True
    for frag in fam.skip_substrings:
        if frag.startswith("re:"):
            if re.search(frag[3:], eng):
                return True
        elif frag.startswith("$:"):
            if eng.endswith(frag[2:]):
                return True
        elif frag in eng or frag in name:
            return True
    return fam.draft(eng, text) or (eng != name and fam.draft(name, text))


def _suffixed(fam: Family, spec: EngineSpec, name: str) -> tuple[str, bool]:
    """Apply the suffix renames (vLLM: every one that matches, in turn); True when the result
    is a fused-MoE parameter (gpt-oss ``experts.gate_up_proj`` -> ``experts.w13_weight``),
    placed under the profile's fused-MoE prefix, which no stacked entry applies to."""
    hit = False
    for old, new in fam.suffix_map:
        if name.endswith(old):
            name = name[: -len(old)] + new
            hit = True
            if not fam.generated:
                break
    if hit:
        head, sep, tail = name.rpartition(".experts.")
        if sep and tail.startswith(("w13_", "w2_")):
            return f"{head}.{spec.profile.expert_prefix}{tail}", True
        if not fam.generated:
            return name, True
    return name, False


def map_tensor(
    fam: Family, spec: EngineSpec, name: str, eng: str | None = None
) -> tuple[str, ShardSlot]:
    """The engine parameter a checkpoint tensor loads into, and its shard (``eng``: the
    name's :func:`engine_name`, where the caller has it already)."""
    if eng is None:
        eng = engine_name(fam, name)
    if fam.suffix_map:
        eng, final = _suffixed(fam, spec, eng)
        if final:
            return eng, ShardSlot(name, None)
    ex = fam.experts
    if ex is not None and ".experts." in eng:
        head, _, tail = eng.partition(".experts.")
        idx, _, rest = tail.partition(".")
        proj, _, param = rest.partition(".")
        if idx.isdigit() and param:
            shard = _expert_shards(ex.gate, ex.up, ex.down).get(proj)
            if shard is not None:
                fused = "w2_" if shard == "w2" else "w13_"
                return (
                    f"{head}.{spec.profile.expert_prefix}{fused}{param}",
                    ShardSlot(name, shard, int(idx)),
                )
    st = _stacked_match(fam, spec, eng)
    if st is not None:
        dot = "." if spec.profile.dotted_stacked else ""
        head, rest = eng[: len(st.scope)], eng[len(st.scope) :]
        return head + rest.replace(st.weight + dot, st.param + dot, 1), ShardSlot(name, st.shard)
    return eng, ShardSlot(name, None)


@lru_cache(maxsize=64)
def _expert_shards(gate: str, up: str, down: str) -> Mapping[str, str]:
    """The fused-MoE shard id of each per-expert projection name."""
    return {gate: "w1", up: "w3", down: "w2"}


def _stacked_match(fam: Family, spec: EngineSpec, eng: str) -> Stacked | None:
    """The first stacked entry whose checkpoint name the engine finds in ``eng``."""
    dot = "." if spec.profile.dotted_stacked else ""
    for st in fam.stacked:
        if st.weight + dot in eng and eng.startswith(st.scope):
            return st
    return None


@lru_cache(maxsize=64)
def _renames_again(stacked: tuple[Stacked, ...]) -> bool:
    """Whether some entry's fused name holds its shard name (``in_proj_qkvz`` holds
    ``in_proj_qkv``): only then can a stored fused name be renamed a second time."""
    return any(st.param != st.weight and st.weight in st.param for st in stacked)


def renamed_twice(
    fam: Family, spec: EngineSpec, name: str, eng: str | None = None
) -> str | None:
    """The engine's name for a tensor stored under the fused name it renames shards to, when
    its stacked rename applies to that name again; else None.

    vLLM matches a stacked entry's shard name as a plain substring and replaces it
    (``name.replace(weight_name, param_name)``): the shard name ``in_proj_qkv`` is a prefix
    of the fused ``in_proj_qkvz``, so a checkpoint that already stores ``in_proj_qkvz`` is
    renamed ``in_proj_qkvzz`` (``in_proj_ba`` -> ``in_proj_baa``). No parameter has that
    name: vLLM 0.33 ``Qwen3_5Model.load_weights`` (``vllm/model_executor/models/qwen3_5.py``)
    finds it in no mapping and skips it with "Parameter ... not found in params_dict, skip
    loading", leaving the fused parameter unwritten. SGLang appends "." to both names, so
    ``in_proj_qkv.`` does not match ``in_proj_qkvz.``.
    """
    if not _renames_again(fam.stacked):
        return None  # no fused name starts with its shard's name: nothing is renamed twice
    return _renamed_twice(fam, spec, name, engine_name(fam, name) if eng is None else eng)


def _renamed_twice(fam: Family, spec: EngineSpec, name: str, eng: str) -> str | None:
    """:func:`renamed_twice` for a family whose stacked names can be renamed again."""
    if fam.suffix_map:
        eng, final = _suffixed(fam, spec, eng)
        if final:
            return None
    if fam.experts is not None and ".experts." in eng:
        return None  # vLLM's stacked loop passes over expert names ("mlp.experts" in name)
    st = _stacked_match(fam, spec, eng)
    if st is None:
        return None
    dot = "." if spec.profile.dotted_stacked else ""
    rest = eng[len(st.scope) :]
    at = rest.find(st.weight + dot)
    if not rest.startswith(st.param, at) or st.param == st.weight:
        return None  # a shard name: renamed once, onto the fused parameter
    return eng[: len(st.scope)] + rest.replace(st.weight + dot, st.param + dot, 1)


def _mapped_away(spec: EngineSpec, quant: QuantMap, name: str) -> bool:
    """A tensor its module's scheme lets the engine drop before any loader sees it (GPTQ
    ``g_idx``: vLLM ``QuantizationConfig.get_checkpoint_weight_mapper`` maps ``.g_idx`` to
    None; real vLLM 0.32.0 and 0.33.0 make no loader call for it and build no parameter). The
    mapper came with the removal of GPTQ group act order, the change that also added the
    ``desc_act`` refusal (``WNA16Facts.desc_act_refused``, vLLM 0.30.0); older releases
    load ``g_idx`` into a parameter."""
    leaves = _droppable_leaves(spec, quant)
    return bool(leaves) and _dropped(quant, leaves, name)


def _droppable_leaves(spec: EngineSpec, quant: QuantMap) -> frozenset[str]:
    """The tensor leaves (``g_idx``) some module's scheme lets this release map away."""
    if spec.engine != "vllm":
        return frozenset()
    rel = wna16_facts(spec.engine, spec.version)
    if rel is None or not rel.desc_act_refused:
        return frozenset()
    return frozenset(t for sch in quant.schemes() for t in sch.tolerated)


def _dropped(quant: QuantMap, leaves: frozenset[str], name: str) -> bool:
    module, _, leaf = name.rpartition(".")
    if leaf not in leaves:
        return False
    mq = quant.modules.get(module)
    return mq is not None and mq.scheme is not None and leaf in mq.scheme.tolerated


#: how plan_load routes one tensor: ("skip" | "twice" | "map", engine name, shard, expert)
_Route = tuple[str, str | None, ShardId | None, int | None]
_SKIP: _Route = ("skip", None, None, None)


def _bind_route(r: _Route, digits: str) -> Callable[[str], _Route] | None:
    """A route computed for expert index ``digits`` as a function of another index's digits
    (:class:`ExpertMemo`), or None when it does not follow the index in a way known here."""
    kind, pname, shard, expert = r
    if expert is not None and expert != int(digits):
        return None
    seg = f".experts.{digits}."
    n = 0 if pname is None else pname.count(seg)
    if n > 1:
        return None
    if n == 0:
        if expert is None:
            return lambda d: r
        return lambda d: (kind, pname, shard, int(d))
    assert pname is not None
    pre, post = pname.split(seg)
    if expert is None:
        return lambda d: (kind, f"{pre}.experts.{d}.{post}", shard, None)
    return lambda d: (kind, f"{pre}.experts.{d}.{post}", shard, int(d))


#: engine parameter -> the block parts that feed it
_Parts = dict[str, list[BlockPart]]


def _member_names(b: ExpertBlock, param: str) -> list[str]:
    """Each member's ``param`` tensor name, in index order (members are kept so)."""
    return list(map(_NAME0, map(itemgetter(param), b.members.values())))


def _block_parts(blocks: Iterable[ExpertBlock], route: Callable[[str], _Route]
                 ) -> tuple[_Parts, list[str]]:
    """Engine parameter -> the (shard id, block, parameter) of each alike expert block's
    parameter that maps into it whole, for a family whose renames and skips are index-blind
    (:func:`_index_blind`): one shard id and one parameter name for every member, which names
    no index, and each member's own index as its expert. That is decided as
    :class:`ExpertMemo` decides it, per number of index digits: the first member's route
    and the second's computed, the second's equal to the first's re-instantiated
    (:func:`_bind_route`). Any other block parameter's tensors are left to the
    tensor-by-tensor routes: the second list."""
    out: _Parts = {}
    rest: list[str] = []
    lengths: dict[tuple[str, ...], list[list[str]]] = {}  # the layers share their indices
    for b in blocks:
        key = tuple(b.indices)
        by_len = lengths.get(key)
        if by_len is None:
            groups: dict[int, list[str]] = {}
            for idx in b.indices:
                groups.setdefault(len(idx), []).append(idx)
            by_len = lengths[key] = list(groups.values())
        for param in b.first.tensors:
            into = _block_route(b, param, by_len, route)
            if into is None:
                rest.extend(_member_names(b, param))
            else:
                out.setdefault(into[0], []).append((into[1], b, param))
    return out, rest


_NAME0 = itemgetter(0)  # a TensorInfo's name


def _by_block(ckpt: Checkpoint, quant: QuantMap, route: Callable[[str], _Route]
              ) -> tuple[_Parts, Iterable[str]]:
    """:func:`_block_parts` of the map's expert blocks, and the tensors left to route one by
    one, in checkpoint order."""
    if not isinstance(quant.modules, ModuleMap):
        return {}, ckpt.tensors
    lazy, rest = _block_parts(quant.modules.blocks.values(), route)
    if not lazy:
        return {}, ckpt.tensors
    # every other tensor (10^3), in checkpoint order: one C-speed pass over the names, where
    # sorting them would need the place of every tensor
    wanted = {*_loose_tensors(quant.modules), *rest}
    return lazy, [n for n in ckpt.tensors if n in wanted]


def _every_source(groups: Mapping[str, list[ShardSlot]], lazy: _Parts, places: Places
                  ) -> dict[str, Sequence[ShardSlot]]:
    """Each engine parameter's sources: those routed one by one, those of the block parts
    (:class:`ExpertSources`), or both merged in checkpoint order."""
    every: dict[str, Sequence[ShardSlot]] = {p: tuple(s) for p, s in groups.items()}
    for p, parts in lazy.items():
        fed_by = ExpertSources(parts, places)
        if p in every:
            pos = places()
            every[p] = tuple(sorted((*every[p], *fed_by), key=lambda slot: pos[slot.source]))
        else:
            every[p] = fed_by
    return every


def fed_by_experts(sources: Sequence[ShardSlot]) -> bool:
    """Whether the parameter's first source (in checkpoint order) is a routed expert's."""
    return isinstance(sources, ExpertSources) or (bool(sources) and sources[0].expert is not None)


def _loose_tensors(modules: ModuleMap) -> list[str]:
    """The tensors of every module outside the expert blocks."""
    firsts = {b.first.name for b in modules.blocks.values()}
    return [t.name for name, mq in modules.known.items() if name not in firsts
            for t in mq.module.tensors.values()]


def _block_route(b: ExpertBlock, param: str, by_len: Iterable[list[str]],
                 route: Callable[[str], _Route]) -> tuple[str, ShardId | None] | None:
    """The (engine parameter, shard id) every member's ``param`` maps into, or None."""
    into: tuple[str, ShardId | None] | None = None
    for idxs in by_len:
        first = idxs[0]
        r = route(b.members[first][param][0])
        kind, pname, shard, expert = r
        if kind != "map" or pname is None or expert != int(first) \
                or f".experts.{first}." in pname or (into is not None and into != (pname, shard)):
            return None
        if len(idxs) > 1:
            make = _bind_route(r, first)
            if make is None or make(idxs[1]) != route(b.members[idxs[1]][param][0]):
                return None
        into = (pname, shard)
    return into


def _index_blind(fam: Family) -> bool:
    """Whether none of the family's renames and skips can tell one expert index from another,
    so that a tensor's route can be computed once per expert template."""
    subs = [s for s in fam.skip_substrings if not s.startswith("re:")]
    literals = [
        *fam.skip_prefixes, *(s.removeprefix("$:") for s in subs),
        *(old for old, _ in fam.substr_map), *(old for old, _ in fam.prefix_map),
        *(old for old, _ in fam.suffix_map),
        *(t for old, _, guard in fam.code_renames for t in (old, guard)),
        *(t for st in fam.stacked for t in (st.weight, st.param, st.scope)),
    ]
    regexes = [p for p, _ in fam.regex_map] + [s[3:] for s in fam.skip_substrings
                                               if s.startswith("re:")]
    return index_blind_literals(literals) and index_blind_regexes(regexes)


def plan_load(
    ckpt: Checkpoint, engine: str | EngineSpec | None = None, quant: QuantMap | None = None
) -> LoadPlan:
    """Predict what the engine's weight loader builds from this checkpoint."""
    spec = engine if isinstance(engine, EngineSpec) else parse_engine(engine)
    fam = family_for(ckpt, spec).for_engine(spec.engine)
    quant = quant or resolve_quantization(ckpt, spec)
    groups: dict[str, list[ShardSlot]] = {}
    skipped = []
    renamed_away: list[tuple[str, str]] = []
    text = ckpt.config.text
    leaves = _droppable_leaves(spec, quant)
    again = _renames_again(fam.stacked)

    def route(name: str) -> _Route:
        eng = fam.engine_name(name)
        if skipped_by(fam, name, eng, text):
            return _SKIP
        twice = _renamed_twice(fam, spec, name, eng) if again else None
        if twice is not None:
            return ("twice", twice, None, None)
        pname, slot = map_tensor(fam, spec, name, eng)
        return ("map", pname, slot.shard_id, slot.expert)

    blind = _index_blind(fam)
    # the parameters only alike expert blocks feed, routed once per block and parameter
    lazy, tensors = _by_block(ckpt, quant, route) if blind and not leaves \
        else ({}, ckpt.tensors)
    kept = [n for n in tensors if not _dropped(quant, leaves, n)] if leaves else tensors
    # every kept tensor's route, in order (a memo per expert template where that is sound)
    routes = iter(ExpertMemo(route, _bind_route).each(kept) if blind else map(route, kept))
    for name in tensors:
        if leaves and _dropped(quant, leaves, name):
            skipped.append(name)
            continue
        kind, pname, shard, expert = next(routes)
        if kind == "skip":
            skipped.append(name)
            continue
        assert pname is not None
        if kind == "twice":
            renamed_away.append((name, pname))
            continue
        slot = _shard_slot(name, shard, expert)
        slots = groups.get(pname)
        if slots is None:
            groups[pname] = [slot]
        else:
            slots.append(slot)
    params = {p: _build(ckpt, quant, fam, spec, p, s)
              for p, s in sorted(_every_source(groups, lazy, Places(ckpt.tensors)).items())}
    notes = (
        ()
        if spec.exact
        else (
            f"{spec.label} is outside the versions qscale has read; modelled as"
            f" {spec.engine} {spec.profile.range_label}",
        )
    )
    refusals = _refusals(ckpt, spec, quant)
    dropped = () if refusals else _expert_loader_drops(ckpt, spec, quant)
    unmatched = _unmatched_experts(fam, groups) if not dropped else ()
    if unmatched:
        gone = set(unmatched)
        params = {p: m for p, m in params.items() if not {s.source for s in m.sources} <= gone}
        dropped = unmatched
    if renamed_away and quant.format is None:
        file = ckpt.tensors[renamed_away[0][0]].file
        refusals = (*refusals, _renamed_refusal(spec, renamed_away, file))
    return LoadPlan(
        spec, fam, params, tuple(skipped), notes, refusals, dropped, tuple(renamed_away)
    )


def _renamed_refusal(
    spec: EngineSpec, renamed: Sequence[tuple[str, str]], file: str
) -> Refusal:
    """An unquantized checkpoint whose fused tensors are renamed away: vLLM 0.33's
    ``DefaultModelLoader.load_weights`` checks that every parameter was loaded when the model
    has no quantization config, and stops with "Following weights were not initialized from
    checkpoint" (quantized models skip that check: QS404 reports them)."""
    source, eng = renamed[0]
    more = f" (and {len(renamed) - 1} more)" if len(renamed) > 1 else ""
    return Refusal(
        f"`{source}`{more} is stored already fused, and the stacked rename applies to it"
        f" again: {spec.engine} looks for `{eng}`, which no parameter is, skips it, and stops"
        " with 'Following weights were not initialized from checkpoint'",
        file,
        None,
        tensor=source,
        fix=RENAME_FIX,
    )


RENAME_FIX = (
    "store the shards under their own names (split in_proj_qkvz into in_proj_qkv and"
    " in_proj_z, in_proj_ba into in_proj_b and in_proj_a), as the engine's loader expects"
)


def _unmatched_experts(fam: Family, groups: Mapping[str, list[ShardSlot]]) -> tuple[str, ...]:
    """Per-expert tensors (``….experts.<i>.<proj>.…``) whose projection name the engine's
    expert mapping does not take (generated families: ``ckpt_names`` / ``ckpt_*_proj_name``):
    vLLM's fused-MoE loader makes no call for them, and the fused experts stay unwritten
    (seen in real vLLM 0.32/0.33 on MiniMax-M2 experts named ``gate_proj``/``up_proj``/
    ``down_proj``, which it maps only as ``w1``/``w3``/``w2``)."""
    ex = fam.experts
    if ex is None or not fam.generated:
        return ()
    known = {ex.gate, ex.up, ex.down}
    known.add("gate_up_proj" if (ex.gate, ex.up) == ("gate_proj", "up_proj") else "w13")
    out = []
    for slots in groups.values():
        for s in slots:
            if s.expert is not None or ".experts." not in s.source:
                continue
            tail = s.source.rpartition(".experts.")[2].split(".")
            if len(tail) >= 3 and tail[0].isdigit() and tail[1] not in known:
                out.append(s.source)
    return tuple(sorted(out))


def _refusals(ckpt: Checkpoint, spec: EngineSpec, quant: QuantMap) -> tuple[Refusal, ...]:
    out = []
    arch = ckpt.config.architecture or ""
    broken = spec.profile.unsupported_architectures.get(arch)
    if broken is not None:
        out.append(Refusal(f"cannot build {arch}: {broken}", "config.json", "/architectures"))
    algos = spec.profile.modelopt_algos
    fmt = cast("ModelOptConfig | None", loaded_instance(quant.format, "modelopt", "ModelOptConfig"))
    if fmt is not None and algos is not None and fmt.algo not in algos:
        reason = (
            f"{spec.engine}'s ModelOpt loader does not support quant_algo {fmt.algo}"
            f" (it supports {', '.join(sorted(algos))})"
        )
        out.append(Refusal(reason, fmt.config_key, "/quant_algo"))
    out.extend(_expert_loader_refusals(ckpt, spec, quant))
    return tuple(out)


def _moe_method(method: str | None, scheme: QuantScheme | None) -> str | None:
    """The vLLM fused-MoE method class experts of this scheme get (vLLM 0.32.0
    ``CompressedTensorsMoEMethod.get_moe_method``, ``Fp8Config``), or None where not modelled."""
    if scheme is None:
        return "UnquantizedFusedMoEMethod"
    if method == "fp8":
        return "Fp8MoEMethod"
    if method != "compressed-tensors":
        return None
    w, a = scheme.weights, scheme.inputs
    fmt = scheme.format.rpartition("/")[2]
    a_kind = None if a is None else f"{a.type}{a.num_bits}"
    if fmt == "mxfp4-pack-quantized":
        return f"CompressedTensorsW4A{8 if a_kind == 'float8' else 4}Mxfp4MoEMethod"
    if fmt == "mxfp8-quantized":
        return "CompressedTensorsW8A8Mxfp8MoEMethod"
    if fmt == "nvfp4-pack-quantized":
        return "CompressedTensorsW4A4Nvfp4MoEMethod"
    if w.type == "int" and a is None:
        return "CompressedTensorsWNA16MoEMethod"
    by_kind = {
        ("float8", "float8"): "CompressedTensorsW8A8Fp8MoEMethod",
        ("int8", "int8"): "CompressedTensorsW8A8Int8MoEMethod",
        ("int4", "float8"): "CompressedTensorsW4A8Fp8MoEMethod",
        ("int4", "int8"): "CompressedTensorsW4A8Int8MoEMethod",
    }
    return by_kind.get((f"{w.type}{w.num_bits}", a_kind or ""))


def _per_expert_names(
    ckpt: Checkpoint, spec: EngineSpec, quant: QuantMap
) -> tuple[ExpertLoader, list[tuple[str, str]]] | None:
    """The model class's own expert loader, and every per-expert tensor (``….experts.<i>.…``)
    with the name that loader renames it to; None when the profile has no such loader for this
    architecture or the checkpoint goes elsewhere."""
    arch = ckpt.config.architecture or ""
    loader = spec.profile.expert_loaders.get(arch)
    fam = FAMILIES.get(arch)
    method = quant.format.method if quant.format is not None else None
    if loader is None or fam is None or method in loader.other_methods:
        return None
    fam = fam.for_engine(spec.engine)
    out = []
    for name in sorted(ckpt.tensors):
        eng = engine_name(fam, name)
        _head, sep, tail = eng.partition(".experts.")
        if not sep or not tail.partition(".")[0].isdigit():
            continue
        for old, new in loader.renames:
            if eng.endswith(old):
                eng = eng[: -len(old)] + new
        out.append((name, eng))
    return loader, out


def _unplaced_expert_tensor(
    loader: ExpertLoader, spec: EngineSpec, quant: QuantMap, name: str, eng: str
) -> str | None:
    """A per-expert tensor (renamed ``eng`` by the class) that its expert loader looks up under
    a name no parameter has: how it gets there, in words, else None."""
    head = eng.partition(".experts.")[0]
    branch = next((does for frag, does in loader.lookups if frag in eng), None)
    if branch is None:
        return None  # not renamed onto an expert branch: the loader skips it (not a refusal)
    leaf = eng.rpartition(".")[2]
    if leaf not in loader.streamed:
        return (
            f"reads experts fused per layer only: it renames per-expert `{name}` to `{eng}`"
            f" and {branch}"
        )
    fmt = quant.format
    mq = quant.modules.get(name.rpartition(".")[0])
    scheme = mq.scheme if mq is not None else None
    moe = _moe_method(fmt.method if fmt is not None else None, scheme)
    if moe is None:
        return None  # which parameters the experts' MoE method builds is not modelled
    kind = leaf.partition("_")[2]  # weight, bias, weight_scale, weight_packed
    if kind == "bias":
        built = moe in loader.bias_methods
    else:
        built = scheme.spec(kind) is not None if scheme is not None else kind == "weight"
    if built:
        return None
    fused = f"{head}.{spec.profile.expert_prefix}{leaf}"
    what = "expert biases" if kind == "bias" else f"`{fused}`"
    return (
        f"streams per-expert `{name}` (renamed `{eng}`) into `{fused}` only when the experts"
        f" have that parameter, and {moe} builds no {what}; it then {branch}"
    )


def _expert_loader_drops(ckpt: Checkpoint, spec: EngineSpec, quant: QuantMap) -> tuple[str, ...]:
    """Per-expert tensors a model class's own expert loader neither renames onto one of its
    branches nor streams: its loop skips names it has no parameter for (seen in real vLLM
    0.32.0 on llm-compressor's W4A16 gpt-oss export: ``gate_proj``/``up_proj`` and
    ``down_proj.weight_packed`` skipped, ``w13_weight_packed``/``w2_weight_packed`` unwritten)."""
    found = _per_expert_names(ckpt, spec, quant)
    if found is None:
        return ()
    loader, names = found
    return tuple(
        name
        for name, eng in names
        # a branch takes it (or refuses it: _expert_loader_refusals), or it is streamed
        if not any(frag in eng for frag, _ in loader.lookups)
        and eng.rpartition(".")[2] not in loader.streamed
    )


def _expert_loader_refusals(ckpt: Checkpoint, spec: EngineSpec, quant: QuantMap) -> list[Refusal]:
    """Per-expert tensors (``experts.<i>.down_proj.bias``) that a model class's own expert
    loader renames onto its fused-expert branches and then cannot find (profile data:
    ``EngineProfile.expert_loaders``)."""
    found = _per_expert_names(ckpt, spec, quant)
    if found is None:
        return []
    loader, names = found
    hits = [
        (name, hit)
        for name, eng in names
        if (hit := _unplaced_expert_tensor(loader, spec, quant, name, eng)) is not None
    ]
    if not hits:
        return []
    name, how = hits[0]
    more = f"; {len(hits) - 1} more per-expert tensor(s) like it" if len(hits) > 1 else ""
    reason = f"{loader.function} {how}{more}"
    fix = (
        "store the routed experts fused per layer (`mlp.experts.gate_up_proj`,"
        " `mlp.experts.down_proj` and their biases), the layout this loader reads"
    )
    return [Refusal(reason, ckpt.tensors[name].file, None, tensor=name, fix=fix)]


def _partitions(
    ckpt: Checkpoint, fam: Family, pname: str, sources: Sequence[ShardSlot],
    quant: QuantMap | None = None,
) -> tuple[int, ...] | None:
    module = pname.rsplit(".", 1)[0]
    leaf = module.rsplit(".", 1)[-1]
    sizes = fam.partition_sizes(leaf, ckpt.config.text)
    if sizes is not None:
        return sizes
    if isinstance(sources, ExpertSources):
        return None  # every source is an expert's (read without building them)
    if all(s.shard_id is None for s in sources) or any(s.expert is not None for s in sources):
        return None
    order = sorted(sources, key=lambda s: expand_shard_id(s.shard_id, 1)[0])
    rows = []
    for s in order:
        w = ckpt.tensors.get(s.source.rsplit(".", 1)[0] + ".weight") or ckpt.tensors.get(
            s.source.rsplit(".", 1)[0] + ".weight_packed"
        )
        if w is not None and w.shape:
            rows.append(w.shape[0])
            continue
        # no `.weight` (GPTQ/AWQ `qweight` is packed, [in/pack, out] or [in, out/pack]):
        # the output size the scheme reads from the packed shape
        mq = quant.modules.get(s.source.rsplit(".", 1)[0]) if quant is not None else None
        rows.append(mq.logical_shape[0] if mq is not None and mq.logical_shape else 0)
    return tuple(rows)


def _is_per_tensor(quant: QuantMap, source: str) -> bool:
    module, _, param = source.rpartition(".")
    mq = quant.modules.get(module)
    sp = mq.scheme.spec(param) if mq and mq.scheme else None
    return sp is not None and sp.shapes is per_tensor


def _scalar(ckpt: Checkpoint, source: str) -> tuple[float | None, int]:
    v = ckpt.value(source)
    if v is None:
        return None, ckpt.tensors[source].numel
    return (float(v.reshape(-1)[0]) if v.size else None), int(v.size)


def _scheme_conflicts(quant: QuantMap, pname: str, sources: Sequence[ShardSlot]) -> list[str]:
    """vLLM resolves one scheme per fused layer from its shards (``should_ignore_layer`` and
    ``find_matched_target`` over ``packed_modules_mapping``)."""
    if len(sources) < 2 or fed_by_experts(sources):
        return []
    if pname.rsplit(".", 1)[-1] not in ("weight", "weight_packed"):
        return []
    modules = [quant.modules.get(s.source.rpartition(".")[0]) for s in sources]
    labels = {m.scheme.label if m and m.scheme else None for m in modules}
    if len(labels) < 2:
        return []
    layer = pname.rpartition(".")[0]
    shards = ", ".join(
        f"`{s.source.rpartition('.')[0].rsplit('.', 1)[-1]}`:"
        f" {m.scheme.label if m and m.scheme else 'unquantized'}"
        for s, m in zip(sources, modules, strict=True)
    )
    if None in labels:
        return [
            f"some but not all shards of `{layer}` are quantized ({shards}); vLLM refuses:"
            ' "Found different quantization schemes for the shards of … vLLM requires all'
            ' to use the same scheme."'
        ]
    return [
        f"the shards of `{layer}` resolve to different schemes ({shards}); vLLM builds the"
        " fused layer with the first shard's scheme and loads the others wrongly"
    ]


def _build(
    ckpt: Checkpoint,
    quant: QuantMap,
    fam: Family,
    spec: EngineSpec,
    pname: str,
    sources: Sequence[ShardSlot],
) -> MergedParam:
    parts = _partitions(ckpt, fam, pname, sources, quant)
    conflicts = _scheme_conflicts(quant, pname, sources)
    if not conflicts and pname.rpartition(".")[0].rpartition(".")[2] in fam.concatenated:
        return _concatenated(ckpt, quant, spec, pname, sources, parts)
    # the first source's scheme decides (any source of the scheme, for alike experts)
    first = (sources.scheme_source() if isinstance(sources, ExpertSources)
             else sources[0].source if sources else "")
    role = _overwritten_role(quant, first) if sources and not conflicts else None
    if role is not None and len(sources) > 1:
        return _overwritten(ckpt, pname, sources, parts, role)
    if conflicts or not sources or not _is_per_tensor(quant, first):
        return MergedParam(pname, sources, parts, errors=tuple(conflicts))
    if fed_by_experts(sources):
        return _expert_slots(ckpt, quant, pname, sources, parts)
    n = len(parts) if parts else _fused_on_disk(fam, pname, sources)
    prof = spec.profile
    init = (
        prof.fp8_input_scale_init
        if pname.endswith("input_scale")
        else (prof.fp8_weight_scale_init if pname.endswith("weight_scale") else None)
    )
    slots: list[Slot] = [init] * n
    errors: list[str] = []
    for s in sources:
        value, numel = _scalar(ckpt, s.source)
        idx = expand_shard_id(s.shard_id, n)
        if numel > 1 and (prof.vector_scale == "assert" or numel != len(idx)):
            errors.append(
                f"`{s.source}` has {numel} elements; the engine's per-tensor slot"
                " takes one (vLLM: `assert loaded_weight.shape[0] == 1`)"
            )
            continue
        if isinstance(s.shard_id, tuple):
            if prof.tuple_scale == TupleScale.UNSUPPORTED:
                errors.append(
                    f"`{s.source}` carries shard id {s.shard_id}; {spec.label}"
                    " has no tuple shard ids"
                )
                continue
            if prof.tuple_scale == TupleScale.FIRST_SLOT:
                idx = (0,)
        for i in idx:
            if i < n:
                slots[i] = value
    return MergedParam(pname, sources, parts, tuple(slots), tuple(errors))


def _overwritten_role(quant: QuantMap, source: str) -> str | None:
    module, _, param = source.rpartition(".")
    mq = quant.modules.get(module)
    sp = mq.scheme.spec(param) if mq and mq.scheme else None
    return sp.overwritten if sp is not None else None


def _natural(name: str) -> tuple[tuple[int, int | str], ...]:
    """vLLM's ``_natural_sort_key`` of a file name (``model-00002-of-00010.safetensors``),
    as a tuple that compares numbers with numbers."""
    return tuple((0, int(p)) if p.isdigit() else (1, p) for p in re.split(r"(\d+)", name))


def load_order(ckpt: Checkpoint, source: str) -> tuple[Any, ...]:
    """Where vLLM's default loader yields a tensor: files in natural order
    (``weight_utils.safetensors_weights_iterator`` sorts them with ``_natural_sort_key``),
    then by name within a file (``safe_open(...).keys()`` is sorted; safetensors 0.8.0).
    Read in vLLM 0.33.0, and seen in its real load of ``tests/fixtures/fp_quant``."""
    return (_natural(ckpt.tensors[source].file.rpartition("/")[2]), source)


def _overwritten(
    ckpt: Checkpoint,
    pname: str,
    sources: Sequence[ShardSlot],
    parts: tuple[int, ...] | None,
    role: str,
) -> MergedParam:
    """A parameter that holds one value for the whole fused layer and no ``output_dim``:
    vLLM 0.33 ``MergedColumnParallelLinear.weight_loader`` / ``QKVParallelLinear.weight_loader``
    (``layers/linear.py``, the branch for a parameter with neither ``output_dim`` nor
    ``needs_scalar_to_array``) copy each shard's tensor over all of it, so the shard loaded
    last (:func:`load_order`) is what stays. For one-element tensors ``slots`` is that value
    and ``shard_values`` each shard's own, in partition order (real vLLM 0.33 on the fixture
    with differing q/k/v global scales kept v_proj's)."""
    order = tuple(sorted(sources, key=lambda s: expand_shard_id(s.shard_id, 1)[0]))
    last = max(sources, key=lambda s: load_order(ckpt, s.source))
    scalar = next((s.source for s in order if ckpt.tensors[s.source].shape == ()), None)
    if scalar is not None:  # the merged loaders reshape nothing (Column/Row ones do)
        return MergedParam(pname, order, parts, overwritten=role, errors=(
            f"`{scalar}` is 0-d; the merged layer's weight_loader asserts"
            " `param_data.shape == loaded_weight.shape` (torch.Size([1]) against"
            " torch.Size([])): store it as [1]",))
    if any(ckpt.tensors[s.source].numel != 1 for s in sources):
        return MergedParam(pname, order, parts, overwritten=role, kept_from=last.source)
    values = tuple(_scalar(ckpt, s.source)[0] for s in order)
    kept = _scalar(ckpt, last.source)[0]
    return MergedParam(pname, order, parts, slots=(kept,), shard_values=values,
                       overwritten=role, kept_from=last.source)


def _fused_on_disk(fam: Family, pname: str, sources: Sequence[ShardSlot]) -> int:
    """Slots of a parameter loaded whole (shard id None): the logical shards the engine
    builds the fused module with (``packed_modules_mapping``), each filled with the one
    value (seen in real vLLM 0.32/0.33: Phi-3 ``qkv_proj.weight_scale`` = [s, s, s])."""
    if len(sources) != 1 or sources[0].shard_id is not None:
        return 1
    leaf = pname.rsplit(".", 2)[-2] if pname.count(".") >= 1 else pname
    return fam.packed.get(leaf, 1)


#: leaves whose tensors do not grow with the output rows: concatenating two of them gives a
#: tensor the fused parameter has no room for (compressed-tensors ``weight_shape`` is ``[2]``)
_NOT_ROW_LEAVES = ("weight_shape",)


def _concatenated(
    ckpt: Checkpoint,
    quant: QuantMap,
    spec: EngineSpec,
    pname: str,
    sources: Sequence[ShardSlot],
    parts: tuple[int, ...] | None,
) -> MergedParam:
    """A parameter loaded whole from the concatenation of its shards' tensors (SGLang DeepSeek
    ``fused_qkv_a_proj_with_mqa``, a ``ReplicatedLinear``: one per-tensor slot, and a loader
    that asserts the loaded shape equals the parameter's)."""
    order = tuple(sorted(sources, key=lambda s: expand_shard_id(s.shard_id, 1)[0]))
    leaf = pname.rpartition(".")[2]
    shapes = [ckpt.tensors[s.source].shape for s in order]
    names = " and ".join(f"`{s.source}` {list(sh)}" for s, sh in zip(order, shapes, strict=True))
    if len(order) < 2:
        return MergedParam(pname, order, parts)  # held back, never loaded: QS205's case
    if leaf in _NOT_ROW_LEAVES:
        total = sum(sh[0] if sh else 1 for sh in shapes)
        return MergedParam(
            pname,
            order,
            parts,
            errors=(
                f"{spec.engine} concatenates {names} into a [{total}] tensor for `{pname}`,"
                f" and its ReplicatedLinear loader asserts the shape equals the parameter's"
                f" {list(shapes[0])}",
            ),
        )
    if not _is_per_tensor(quant, order[0].source):
        return MergedParam(pname, order, parts)  # row-wise tensors concatenate cleanly
    if all(sh == () for sh in shapes):
        values = tuple(_scalar(ckpt, s.source)[0] for s in order)
        return MergedParam(pname, order, parts, slots=values[:1], shard_values=values)
    if any(sh == () for sh in shapes):
        return MergedParam(
            pname,
            order,
            parts,
            errors=(
                f"{spec.engine} concatenates {names} for `{pname}`; torch.cat cannot join a 0-d"
                " tensor with a 1-d one",
            ),
        )
    total = sum(math.prod(sh) for sh in shapes)
    return MergedParam(
        pname,
        order,
        parts,
        errors=(
            f"{spec.engine} concatenates {names} into [{total}] for the one-slot `{pname}` [1],"
            " and its ReplicatedLinear loader asserts equal shapes (it loads two 0-d scales,"
            " and then keeps the first alone; per-channel scales concatenate cleanly)",
        ),
    )


def _expert_slots(
    ckpt: Checkpoint,
    quant: QuantMap,
    pname: str,
    sources: Sequence[ShardSlot],
    parts: tuple[int, ...] | None,
) -> MergedParam:
    """Fused-MoE per-tensor scales start at 1.0. w13 scales are [E, 2] (w1, w3) — except FP8
    input scales, where w1 and w3 share one [E] slot; w2 scales are [E]."""
    n_exp = max(s.expert or 0 for s in sources) + 1
    mq = quant.modules.get(sources[0].source.rpartition(".")[0])
    fp8 = mq is not None and mq.scheme is not None and mq.scheme.weights.num_bits == 8
    shared_input = pname.endswith("input_scale") and fp8
    cols = 2 if "w13_" in pname and not shared_input else 1
    slots: list[Slot] = [1.0] * (n_exp * cols)
    for s in sources:
        value, _ = _scalar(ckpt, s.source)
        assert s.expert is not None
        col = 1 if (cols == 2 and s.shard_id == "w3") else 0
        slots[s.expert * cols + col] = value
    return MergedParam(pname, sources, parts, tuple(slots))


_shard_slot = maker(ShardSlot)  # ShardSlot(source, shard_id, expert): one per tensor


def unfilled_params(plan: LoadPlan, engine_params: Iterable[str]) -> list[str]:
    """Engine parameters (e.g. a loaded model's ``named_parameters()``) that no checkpoint
    tensor fills, leaving out the ones the engine owns (KV-cache scales, act-order indices)."""
    owned = [re.compile(p) for p in plan.engine.profile.engine_owned]
    return sorted(
        p for p in engine_params if p not in plan.params and not any(o.search(p) for o in owned)
    )


def is_sentinel(v: Slot) -> bool:
    """An FP8 slot the loader never wrote (still vLLM's ``FP8_SCALE_SENTINEL``)."""
    return v == FP8_SENTINEL
