"""A MoE layer's routed experts judged by one of them, where they are stored alike.

A 400B-class MoE checkpoint holds ~10^5 per-expert modules (``….experts.{e}.{proj}``) and a
few hundred other modules; per layer and projection the experts almost always follow one
template. Rules marked :attr:`Rule.expert_symmetric` judge a module by what the module itself
holds, never by its expert index, how many experts its layer stores, or tensor values, so a
layer whose experts are alike in all of that gives the same verdict for each of them. The
runner runs those rules on :func:`reduce`'s map (each such layer's experts by its first one);
a rule that reports anything there is run again on every module, so every finding still
comes from the full map, with its own names and files. :func:`expert_layers` keeps what the
reduction drops: each layer's expert indices, for the rules that count them (QS208).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from operator import itemgetter

from qscale.formats import ModuleQuant, QuantMap
from qscale.module_map import ExpertBlock, ModuleMap
from qscale.rules._api import Context

#: a tensor's (dtype, shape): all of a TensorInfo an expert-symmetric rule may judge it by
#: (its name and file reach findings only, and those come from the full map)
_DTYPE_SHAPE = itemgetter(1, 2)


@dataclass(frozen=True, slots=True)
class ExpertLayers:
    """The per-expert modules of a check, by MoE layer (``….experts``)."""

    #: layer -> the expert index of each of its modules (digit strings, by projection)
    indices: Mapping[str, list[str]]
    #: layer -> the name of its first module in module order
    first: Mapping[str, str]
    #: layer -> whether its experts are alike (see :func:`reduce`)
    alike: Mapping[str, bool]
    #: the check's modules with each alike layer's experts by the first expert's modules
    reduced: Mapping[str, ModuleQuant]


#: a per-expert module name: (layer, expert index, projection)
EXPERT = re.compile(r"^(.*\.experts)\.(\d+)\.(\w+)$")
_WORD = re.compile(r"\w+")


def split_expert(name: str, words: dict[str, bool]) -> tuple[str, str, str] | None:
    """``EXPERT.match(name).groups()`` (``model.layers.3.mlp.experts.17.gate_proj`` ->
    layer, index digits, projection), or None for any other module: by splitting off the
    last two components (the regex's greedy head leaves exactly those), with the regex
    itself for any name the split cannot judge (a newline, which ``.`` does not cross).
    ``words`` caches whether a projection name is all word characters."""
    head, _, proj = name.rpartition(".")
    layer, dot, idx = head.rpartition(".")
    word = words.get(proj)
    if word is None:
        word = words[proj] = _WORD.fullmatch(proj) is not None
    if word and dot and idx.isdecimal() and layer.endswith(".experts") and "\n" not in name:
        return layer, idx, proj
    m = EXPERT.match(name)
    return None if m is None else (m[1], m[2], m[3])


def group_experts(modules: Mapping[str, ModuleQuant]) -> ExpertLayers:
    """Group the per-expert modules by layer and reduce the layers whose experts are alike.

    A layer's experts are alike when every projection stores the same expert indices and,
    per projection, every expert's module has the first one's resolution, scheme, logical
    shape, kind, parameter names, and each tensor's dtype and shape; and the scheme's
    tensors are all stored under their own names (a module that lacks one is judged against
    tensors outside it, QS209's other spellings, so its layer is kept whole)."""
    if isinstance(modules, ModuleMap):
        return _from_blocks(modules)
    by_layer: dict[str, dict[str, tuple[list[str], list[ModuleQuant]]]] = {}
    first: dict[str, str] = {}
    reduced: dict[str, ModuleQuant] = {}
    words: dict[str, bool] = {}
    for name, mq in modules.items():
        if ".experts." not in name:  # the test spares the split
            reduced[name] = mq
            continue
        # split_expert(name, words), inline (10^5 calls)
        head, _, proj = name.rpartition(".")
        layer, dot, idx = head.rpartition(".")
        word = words.get(proj)
        if not (word and dot and idx.isdecimal() and layer.endswith(".experts")
                and "\n" not in name):
            split = split_expert(name, words)
            if split is None:
                reduced[name] = mq
                continue
            layer, idx, proj = split
        projs = by_layer.get(layer)
        if projs is None:
            by_layer[layer] = projs = {}
            first[layer] = name
        members = projs.get(proj)
        if members is None:
            projs[proj] = ([idx], [mq])
        else:
            members[0].append(idx)
            members[1].append(mq)
    alike = {layer: _alike(projs) for layer, projs in by_layer.items()}
    indices = {layer: [i for ids, _ in projs.values() for i in ids]
               for layer, projs in by_layer.items()}
    for layer, projs in by_layer.items():
        for _, mqs in projs.values():
            if alike[layer]:
                reduced[mqs[0].module.name] = mqs[0]
            else:
                for mq in mqs:
                    reduced[mq.module.name] = mq
    return ExpertLayers(indices, first, alike, reduced)


def _from_blocks(modules: ModuleMap) -> ExpertLayers:
    """:func:`group_experts` of a map that holds alike blocks (every per-expert module is in
    one, :func:`qscale.module_map.group_blocks`): the same layers, indices and reduced map in
    the same order, reading each block's first member only. A block's members share its
    first one's resolution, logical shape, kind, parameters, dtypes and shapes, so a layer is
    alike when its projections store the same indices and each stores its scheme's tensors."""
    blocks = modules.blocks
    firsts = {b.first.name for b in blocks.values()}
    reduced = {n: mq for n, mq in modules.known.items() if n not in firsts}
    by_layer: dict[str, list[ExpertBlock]] = {}
    for b in blocks.values():  # in name order of first members: the rules' layer order
        found = by_layer.get(b.layer)
        if found is None:
            by_layer[b.layer] = [b]
        else:
            found.append(b)
    first = {layer: bs[0].first.name for layer, bs in by_layer.items()}
    indices = {layer: [i for b in bs for i in b.indices] for layer, bs in by_layer.items()}
    alike = {layer: _blocks_alike(bs) for layer, bs in by_layer.items()}
    for layer, bs in by_layer.items():
        for b in bs:
            if alike[layer]:
                assert b.quant is not None
                reduced[b.first.name] = b.quant
            else:
                for idx in b.indices:
                    name = b.name(idx)
                    reduced[name] = modules[name]
    return ExpertLayers(indices, first, alike, reduced)


def _blocks_alike(blocks: list[ExpertBlock]) -> bool:
    expected = set(blocks[0].indices)
    for b in blocks:
        if len(b.indices) != len(expected) or not expected.issuperset(b.indices):
            return False
        rep = b.quant
        assert rep is not None
        scheme = rep.scheme
        if scheme is not None and scheme.tensors and not rep.module.tensors.keys() >= scheme.params:
            return False
    return True


def _alike(projs: Mapping[str, tuple[list[str], list[ModuleQuant]]]) -> bool:
    expected: set[str] | None = None
    for ids, members in projs.values():
        if expected is None:
            expected = set(ids)
        elif len(ids) != len(expected) or not expected.issuperset(ids):
            return False
        rep = members[0]
        scheme, res, shape, kind = rep.scheme, rep.resolution, rep.logical_shape, rep.module.kind
        stored = rep.module.tensors
        if scheme is not None and scheme.tensors and not stored.keys() >= scheme.params:
            return False
        keys = stored.keys()
        names = list(stored)
        sig = list(map(_DTYPE_SHAPE, stored.values()))
        by_param = dict(zip(keys, sig, strict=True))
        for mq in members:
            t = mq.module.tensors
            if (mq.scheme is not scheme or (mq.resolution is not res and mq.resolution != res)
                    or mq.logical_shape != shape or mq.module.kind is not kind
                    or t.keys() != keys):
                return False
            # in header order (names and dtypes alike), which a file may choose otherwise
            if (list(map(_DTYPE_SHAPE, t.values())) != sig or list(t) != names) \
                    and dict(zip(t, map(_DTYPE_SHAPE, t.values()), strict=True)) != by_param:
                return False
    return True


def reduce(quant: QuantMap) -> tuple[QuantMap, ExpertLayers]:
    """``quant`` with each alike layer's experts by its first expert's modules, and the layers
    (the map itself when nothing is reduced)."""
    layers = group_experts(quant.modules)
    if len(layers.reduced) == len(quant.modules):
        return quant, layers
    return QuantMap(quant.format, layers.reduced), layers


def expert_layers(ctx: Context) -> ExpertLayers:
    """This check's :class:`ExpertLayers`, of the full map also in a reduced context."""
    return ctx.shared(_expert_layers)


def _expert_layers(ctx: Context) -> ExpertLayers:
    return group_experts(ctx.quant.modules)


def reduced_context(ctx: Context) -> Context | None:
    """A context like ``ctx`` whose map has each alike layer's experts by its first expert's
    modules, sharing ``ctx``'s :func:`expert_layers`; None when no layer is reduced."""
    quant, layers = reduce(ctx.quant)
    ctx.share(_expert_layers, layers)
    if quant is ctx.quant:
        return None
    out = Context(ctx.checkpoint, quant, ctx.plan, deployment=ctx.deployment, engine=ctx.engine)
    out.share(_expert_layers, layers)
    return out
