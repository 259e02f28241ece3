"""read_shapes(): every engine layer as the engine shards it over tensor parallel.

One entry per distinct layer shape and scheme (a 512-expert, 60-layer checkpoint reads as a
few dozen entries), so that qscale.constraints can check a layout in microseconds. Which
engine layers split their output (column), their input (row) or nothing (replicated) follows
the engines' model files (docs/engine-loader-facts §2, §7).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from enum import Enum
from typing import TYPE_CHECKING, Any, cast

from qscale.checkpoint import Checkpoint
from qscale.engines.families import Family
from qscale.engines.loader import LoadPlan, ShardSlot
from qscale.engines.templates import index_blind_literals
from qscale.formats import ModuleQuant, QuantMap
from qscale.formats._api import loaded_instance
from qscale.modules import ModuleKind
from qscale.schemes import QuantScheme

if TYPE_CHECKING:
    from qscale.formats.gptq import WNA16Config

#: Engine leaves that split their input over TP (RowParallelLinear).
ROW_LEAVES = frozenset({"o_proj", "down_proj", "out_proj", "dense", "fc2"})
#: Engine leaves built as ReplicatedLinear (routers, DeepSeek's MLA A-projections).
REPLICATED_LEAVES = frozenset(
    {
        "gate",
        "shared_expert_gate",
        "router",
        "fused_qkv_a_proj",
        "fused_qkv_a_proj_with_mqa",  # SGLang's name for it
        "q_a_proj",
        "kv_a_proj_with_mqa",
    }
)
#: Engine prefixes qscale does not shard-check: vocab-parallel layers pad, the vision tower
#: has its own parallel layout.
SKIPPED = ("visual.", "vision_tower.", "vision_model.")
SKIPPED_LEAVES = frozenset({"lm_head", "embed_tokens"})


class Split(str, Enum):
    """How the engine shards a layer over TP."""

    COLUMN = "column"
    ROW = "row"
    QKV = "qkv"
    REPLICATED = "replicated"


@dataclass(frozen=True, slots=True)
class LayerShape:
    """One engine layer (and every other layer of the same shape and scheme)."""

    name: str  #: engine module name of the first such layer
    tensor: str  #: a checkpoint weight feeding it
    split: Split
    parts: tuple[int, ...]  #: output partitions, full size
    inp: int
    scheme: QuantScheme | None
    shared_expert: bool
    count: int = 1


@dataclass(frozen=True, slots=True)
class ExpertShape:
    """The routed experts of one MoE layer (and of every layer alike)."""

    name: str
    tensor: str
    experts: int
    inter: int  #: moe_intermediate_size
    scheme: QuantScheme | None
    count: int = 1
    hidden: int | None = None  #: hidden_size: the gate/up input and the down output


@dataclass(frozen=True, slots=True)
class Shapes:
    """What the sharding checks look at."""

    family: str
    heads: int | None
    kv_heads: int | None
    gdn_heads: tuple[int, int] | None  #: (key heads, value heads) of Gated DeltaNet layers
    layers: tuple[LayerShape, ...]
    experts: tuple[ExpertShape, ...]
    heads_param: str | None  #: an attention layer, for locations
    #: GPTQ act order in the config (``desc_act`` with a group size; per-module ``dynamic``
    #: overrides are not followed here): vLLM 0.24–0.29 keeps Marlin's strict tile check then
    act_order: bool = False
    #: the activation dtype the engine picks by default (``torch_dtype`` / ``dtype``)
    act_dtype: str | None = None


# --------------------------------------------------------------------------- reading


def read_shapes(ckpt: Checkpoint, quant: QuantMap, plan: LoadPlan) -> Shapes:
    """The checkpoint's layers as the engine shards them. Not cached here: a check computes
    them once per context (``rules._layout``), ``supported_layouts`` once per table; a
    module-level cache kept the last plan (~190k objects) alive after every check."""
    text = ckpt.config.text
    layers = _layers(quant, plan)
    shapes = Shapes(
        family=plan.family.name,
        heads=_int(text, "num_attention_heads"),
        kv_heads=_int(text, "num_key_value_heads") or _int(text, "num_attention_heads"),
        gdn_heads=_gdn(text),
        layers=layers,
        experts=_experts(quant, text, plan.family),
        heads_param=next((x.name for x in layers if x.split == Split.QKV), None),
        act_order=(w := _wna16(quant.format)) is not None and w.desc_act and w.group_size != -1,
        act_dtype=_dtype(ckpt.config.raw, text),
    )
    return shapes


def _dtype(raw: Mapping[str, Any], text: Mapping[str, Any]) -> str | None:
    for cfg in (text, raw):
        for key in ("torch_dtype", "dtype"):
            if isinstance(cfg.get(key), str):
                return str(cfg[key]).removeprefix("torch.")
    return None


def _int(text: Mapping[str, Any], key: str) -> int | None:
    v = text.get(key)
    return v if isinstance(v, int) and v > 0 else None


def _gdn(text: Mapping[str, Any]) -> tuple[int, int] | None:
    nk, nv = _int(text, "linear_num_key_heads"), _int(text, "linear_num_value_heads")
    return (nk, nv) if nk and nv else None


def _split(module: str, parts: tuple[int, ...], family: Family | None = None) -> Split:
    if family is not None and family.tp_splits:
        hit = next((v for k, v in family.tp_splits.items() if module.endswith(k)), None)
        if hit is not None:
            return Split(hit)
    leaf = module.rsplit(".", 1)[-1]
    if leaf in REPLICATED_LEAVES:
        return Split.REPLICATED
    if leaf in ROW_LEAVES:
        return Split.ROW
    return Split.QKV if leaf == "qkv_proj" and len(parts) == 3 else Split.COLUMN


def _layers(quant: QuantMap, plan: LoadPlan) -> tuple[LayerShape, ...]:
    shared = plan.family.shared_expert or "\0"
    seen: dict[tuple[object, ...], LayerShape] = {}
    for p in plan.params.values():
        module = p.name.rpartition(".")[0]
        leaf = module.rsplit(".", 1)[-1]
        if p.leaf not in ("weight", "weight_packed", "qweight", "_weight_qdata") \
                or p.sources[0].expert is not None:  # _weight_qdata: torchao
            continue
        if module.startswith(SKIPPED) or leaf in SKIPPED_LEAVES or ".experts" in module:
            continue
        src = p.sources[0].source
        mq = quant.modules.get(src.rpartition(".")[0])
        if mq is None or mq.logical_shape is None:
            continue
        parts = p.partitions or (mq.logical_shape[0],)
        if p.leaf == "qweight":  # GPTQ / AWQ: the loader's partitions are not output sizes
            parts = _qweight_parts(p.sources, quant) or (mq.logical_shape[0],)
        layer = LayerShape(
            module, src, _split(module, parts, plan.family), parts, mq.logical_shape[1], mq.scheme,
            shared in module + ".",
        )
        key = (layer.split, parts, layer.inp, _scheme_key(mq.scheme), layer.shared_expert, leaf)
        prev = seen.get(key)
        seen[key] = layer if prev is None else _more(prev)
    return tuple(seen.values())


#: the order of a merged layer's shards (vLLM shard ids)
_SHARD_ORDER = {"q": 0, "k": 1, "v": 2}


def _qweight_parts(sources: Sequence[ShardSlot], quant: QuantMap) -> tuple[int, ...] | None:
    """Output size of each shard of a merged GPTQ / AWQ layer, in shard order, from its
    checkpoint modules (one per shard, int or q/k/v shard ids; None otherwise)."""
    out: list[tuple[int, int]] = []
    for src in sources:
        sid = src.shard_id
        order = _SHARD_ORDER.get(sid) if isinstance(sid, str) else sid
        mq = quant.modules.get(src.source.rpartition(".")[0])
        if not isinstance(order, int) or mq is None or mq.logical_shape is None:
            return None if len(sources) > 1 else (
                (mq.logical_shape[0],) if mq is not None and mq.logical_shape else None)
        out.append((order, mq.logical_shape[0]))
    return tuple(n for _, n in sorted(out))


def _more(s: LayerShape) -> LayerShape:
    return LayerShape(s.name, s.tensor, s.split, s.parts, s.inp, s.scheme, s.shared_expert,
                      s.count + 1)


def _scheme_key(s: QuantScheme | None) -> object:
    return None if s is None else (s.format, s.label, s.weights)


def _experts(
    quant: QuantMap, text: Mapping[str, Any], family: Family
) -> tuple[ExpertShape, ...]:
    n = next((v for k in ("num_experts", "n_routed_experts", "num_local_experts")
              if (v := _int(text, k))), None)
    inter = _int(text, "moe_intermediate_size") or _int(text, "intermediate_size")
    if n is None or inter is None:
        return ()
    hidden = _int(text, "hidden_size")
    seen: dict[str, ExpertShape] = {}
    # the first expert of each layer: a block's members share its layer and its verdict,
    # unless a skip prefix could name an expert index
    for name, mq, _ in quant.walk(index_blind_literals(family.skip_prefixes)):
        head, sep, _ = name.partition(".experts")
        if (not sep or head in seen or not is_expert(mq)
                or not family.loaded_by_main_model(name, text)):
            continue
        seen[head] = ExpertShape(f"{head}.experts", _weight_of(mq), n, inter, mq.scheme,
                                 hidden=hidden)
    merged: dict[object, ExpertShape] = {}
    for e in seen.values():
        key = _scheme_key(e.scheme)
        prev = merged.get(key)
        merged[key] = e if prev is None else ExpertShape(
            prev.name, prev.tensor, n, inter, prev.scheme, prev.count + 1, hidden)
    return tuple(merged.values())


def is_expert(mq: ModuleQuant) -> bool:
    """``….experts.<e>.<proj>`` per expert, or a fused ``….experts`` module."""
    tail = mq.module.name.partition(".experts")[2]
    if not tail:
        return mq.module.kind == ModuleKind.FUSED_EXPERTS
    bits = tail.split(".")
    return len(bits) >= 3 and bits[0] == "" and bits[1].isdigit()


def _weight_of(mq: ModuleQuant) -> str:
    """The module's weight tensor (``weight``, ``weight_packed``, …), else its first tensor."""
    t = mq.module.tensors
    spec = mq.scheme.weight_spec.param if mq.scheme and mq.scheme.tensors else "weight"
    key = next((k for k in (spec, "weight", "weight_packed") if k in t), next(iter(t)))
    return t[key].name




def _wna16(fmt: object) -> WNA16Config | None:
    """A GPTQ / AWQ config (its parser is loaded only for such a checkpoint)."""
    return cast("WNA16Config | None", loaded_instance(fmt, "gptq", "WNA16Config"))
