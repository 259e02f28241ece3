"""Routed experts resolved once per (layer, projection), and a module map that holds them so.

A 400B-class MoE stores ~10^5 per-expert modules (``….experts.<e>.<proj>``) and a few hundred
others. Where every expert of a projection stores the same parameters with the same dtypes and
shapes, and the quantization config and the engine family cannot tell one expert index from
another (:func:`qscale.formats.resolve_quantization` decides that), every expert of that
projection resolves as its first one does. :func:`group_blocks` finds those
:class:`ExpertBlock` s in the pass that groups tensors into modules; :class:`ModuleMap` is the
``QuantMap.modules`` that keeps each block as its first expert's record and builds any other
member's on first use, so a check whose rules read blocks never builds the other 10^5.

The map is a ``Mapping`` like any other: iteration gives every module name in name order,
``map[name]`` any module's record (built once, then kept), so a consumer that reads every module
sees exactly what a plain dict would give. :meth:`ModuleMap.units` is the cheap walk for
consumers whose verdict on a module depends only on what a block's members share.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from operator import itemgetter
from typing import TYPE_CHECKING

from qscale.modules import ModuleInfo, ModuleKind, _module_info, kind_of
from qscale.safetensors_io import TensorInfo

if TYPE_CHECKING:
    from qscale.formats import ModuleQuant

#: a per-expert module name: (layer, expert index, projection); the rules' own pattern
EXPERT = re.compile(r"^(.*\.experts)\.(\d+)\.(\w+)$")
_WORD = re.compile(r"\w+")
_DTYPE, _SHAPE = itemgetter(1), itemgetter(2)  # a TensorInfo's dtype, shape


@dataclass(slots=True)
class ExpertBlock:
    """Every expert of one MoE layer's projection, stored alike."""

    layer: str  #: ``model.layers.3.mlp.experts``
    proj: str  #: ``gate_proj``
    kind: ModuleKind
    #: expert index digit strings, in module-name order (the first is the representative)
    indices: list[str]
    #: the parameters each member stores, by index digits
    members: dict[str, dict[str, TensorInfo]]
    #: the first member's module (what the block is resolved by)
    first: ModuleInfo
    #: the first member's record, once resolved
    quant: ModuleQuant | None = field(default=None)
    _numbers: frozenset[int] | None = field(default=None, repr=False, compare=False)

    def name(self, idx: str) -> str:
        """A member's module name."""
        return f"{self.layer}.{idx}.{self.proj}"

    def numbers(self) -> frozenset[int]:
        """The members' expert indices as numbers (converted once: each block feeds several
        engine parameters)."""
        if self._numbers is None:
            self._numbers = frozenset(map(int, self.indices))
        return self._numbers


@dataclass(slots=True)
class Grouped:
    """Modules grouped from tensors, with the alike expert blocks kept apart."""

    #: every module name, in name order
    order: list[str]
    #: every module outside the blocks, in name order
    loose: dict[str, ModuleInfo]
    #: (layer, projection) -> block, in the order their first members come
    blocks: dict[tuple[str, str], ExpertBlock]
    #: the first member's name of each block -> the block
    firsts: dict[str, ExpertBlock]


def group_blocks(grouped: Mapping[str, dict[str, TensorInfo]]) -> Grouped | None:
    """:func:`qscale.modules.by_module`'s groups as modules, the per-expert ones in alike
    blocks; None when some per-expert module does not fit a block (a projection whose experts
    differ, a name only the rules' regex splits, a stored ``weight_shape``) or there are none,
    so that the caller takes the module-by-module path.

    One pass splits the names (in the groups' order); each block's members are then compared
    a parameter at a time, across all of them at once (:func:`_alike`)."""
    split: dict[tuple[str, str], dict[str, dict[str, TensorInfo]]] = {}
    others: list[str] = []
    for name, params in grouped.items():
        if ".experts." in name:
            head, _, proj = name.rpartition(".")
            layer, _, idx = head.rpartition(".")
            members = split.get((layer, proj))
            if members is not None:  # a layer and projection _opens_block accepted
                if idx.isdecimal():
                    members[idx] = params
                    continue
            elif _opens_block(layer, idx, proj):
                split[layer, proj] = {idx: params}
                continue
            if EXPERT.match(name) is not None:
                return None  # a per-expert name the split above cannot judge
        others.append(name)
    if not split:
        return None  # no routed experts: nothing to gain
    kinds: dict[tuple[str, int], ModuleKind] = {}
    made: list[ExpertBlock] = []
    for (layer, proj), members in split.items():
        if not _alike(members):
            return None
        # digit strings sort as the member names do (a name goes on with `.`, below a digit)
        indices = sorted(members)
        params = members[indices[0]]
        if "weight_shape" in params:
            return None  # its logical shape is a value: module by module
        first = _module_info(f"{layer}.{indices[0]}.{proj}", kind_of(proj, params, kinds), params)
        made.append(ExpertBlock(layer, proj, first.kind, indices,
                                {i: members[i] for i in indices}, first))
    made.sort(key=_first_name)
    loose: dict[str, ModuleInfo] = {}
    for name in sorted(others):
        params = grouped[name]
        loose[name] = _module_info(name, kind_of(name[name.rfind(".") + 1 :], params, kinds),
                                   params)
    return Grouped(sorted(grouped), loose, {(b.layer, b.proj): b for b in made},
                   {b.first.name: b for b in made})


def _opens_block(layer: str, idx: str, proj: str) -> bool:
    """Whether ``{layer}.{idx}.{proj}`` is a per-expert module name a block can hold: a layer
    ending in ``.experts``, index digits, a one-word projection, no line break."""
    return layer.endswith(".experts") and idx.isdecimal() and _WORD.fullmatch(proj) is not None \
        and "\n" not in layer


def _alike(members: dict[str, dict[str, TensorInfo]]) -> bool:
    """Whether every member stores the same parameters with the same dtypes and shapes (in
    whatever order its files list them)."""
    each = members.values()
    sizes = list(map(len, each))
    if sizes.count(sizes[0]) != len(sizes):
        return False
    try:
        for param in next(iter(each)):  # every member has it (KeyError) with one spec
            col = list(map(itemgetter(param), each))
            # list.count compares each with the first, identity first: the header scan
            # gives equal specs one dtype and one shape object, so this is a C loop of
            # pointer tests (another reader's equal objects compare by value)
            for field in (list(map(_DTYPE, col)), list(map(_SHAPE, col))):
                if field.count(field[0]) != len(field):
                    return False
    except KeyError:
        return False
    return True


def _first_name(block: ExpertBlock) -> str:  # sort key: blocks in their first members' order
    return block.first.name



class ModuleMap(Mapping[str, "ModuleQuant"]):
    """``QuantMap.modules`` with alike expert blocks held as their first member's record.

    ``known`` holds every module outside the blocks and each block's first member, resolved,
    in name order; any other member's record is built from its block when first asked for,
    and kept."""

    __slots__ = ("_blocks", "_built", "_known", "_order")

    def __init__(self, order: list[str], known: dict[str, ModuleQuant],
                 blocks: dict[tuple[str, str], ExpertBlock]) -> None:
        self._order = order
        self._known = known
        self._blocks = blocks
        self._built: dict[str, ModuleQuant] = {}

    def __len__(self) -> int:
        return len(self._order)

    def __iter__(self) -> Iterator[str]:
        return iter(self._order)

    def __contains__(self, name: object) -> bool:
        return name in self._known or self._member(name) is not None

    def __getitem__(self, name: str) -> ModuleQuant:
        mq = self._known.get(name) or self._built.get(name)
        if mq is not None:
            return mq
        found = self._member(name)
        if found is None:
            raise KeyError(name)
        block, idx = found
        first = block.quant
        assert first is not None
        module = _module_info(name, block.kind, block.members[idx])
        mq = self._built[name] = _same_quant(module, first)
        return mq

    def _member(self, name: object) -> tuple[ExpertBlock, str] | None:
        if not isinstance(name, str):
            return None
        head, _, proj = name.rpartition(".")
        layer, _, idx = head.rpartition(".")
        block = self._blocks.get((layer, proj))
        if block is None or idx not in block.members:
            return None
        return block, idx

    @property
    def known(self) -> Mapping[str, ModuleQuant]:
        """Every module outside the blocks and each block's first member, in name order."""
        return self._known

    @property
    def blocks(self) -> Mapping[tuple[str, str], ExpertBlock]:
        """The alike expert blocks, by (layer, projection), in the order of their first
        members."""
        return self._blocks

    def units(self) -> Iterator[tuple[ModuleQuant, int]]:
        """Each module outside the blocks with 1, and each block's first member with the
        block's size, in name order of those records (not every record is built)."""
        sizes = {b.first.name: len(b.indices) for b in self._blocks.values()}
        for name, mq in self._known.items():
            yield mq, sizes.get(name, 1)

    def count_quantized(self) -> int:
        """How many modules have a scheme, without building any record."""
        return sum(n for mq, n in self.units() if mq.scheme is not None)


_make_quant = None  # set on first use (qscale.formats imports this module)


def _same_quant(module: ModuleInfo, first: ModuleQuant) -> ModuleQuant:
    """A member's record: its own module, the first member's resolution and logical shape."""
    global _make_quant
    if _make_quant is None:
        from qscale.formats import _module_quant

        _make_quant = _module_quant
    return _make_quant(module, first.resolution, first.logical_shape)


__all__ = ["EXPERT", "ExpertBlock", "Grouped", "ModuleMap", "group_blocks"]
