"""ModuleInfo and group_modules(): tensors grouped into the modules that own them.

A tensor ``a.b.c.param`` belongs to module ``a.b.c``. The module's kind (linear, embedding,
conv, fused experts, other) is read off its stored tensors, the way a quantizer decides which
modules its ``Linear`` targets cover.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from enum import Enum

from qscale._fast import maker
from qscale.safetensors_io import TensorInfo

#: Module names whose 2-D ``weight`` is an embedding table, not a Linear.
EMBEDDING_NAMES = frozenset(
    {"embed_tokens", "wte", "word_embeddings", "embeddings", "embedding", "tok_embeddings", "wpe"}
)
#: Parameters that hold a (possibly packed) Linear weight.
#: qweight: GPTQ / AWQ; _weight_qdata: a torchao tensor subclass's flattened data
WEIGHT_PARAMS = ("weight", "weight_packed", "qweight", "_weight_qdata")
#: Fused 3-D expert parameters (transformers v5, gpt-oss): ``experts.<param>``.
FUSED_EXPERT_PARAMS = frozenset(
    {"gate_up_proj", "down_proj", "gate_up_proj_blocks", "down_proj_blocks"}
)


class ModuleKind(str, Enum):
    """What kind of module a group of tensors belongs to."""

    LINEAR = "linear"
    EMBEDDING = "embedding"
    CONV = "conv"
    FUSED_EXPERTS = "fused_experts"
    OTHER = "other"  #: norms, biases-only, gates' vectors, A_log, sinks, ...


@dataclass(frozen=True, slots=True)
class ModuleInfo:
    """A module and the tensors stored under it, keyed by parameter name."""

    name: str
    kind: ModuleKind
    tensors: Mapping[str, TensorInfo]

    @property
    def leaf(self) -> str:
        """Last component of the name, e.g. ``q_proj``."""
        return self.name.rsplit(".", 1)[-1]

    def tensor_name(self, param: str) -> str:
        """Full tensor name of one of its parameters."""
        return f"{self.name}.{param}" if self.name else param


def _weight(params: Mapping[str, TensorInfo]) -> TensorInfo | None:
    # WEIGHT_PARAMS, in order
    return params.get("weight") or params.get("weight_packed") or params.get("qweight") \
        or params.get("_weight_qdata")


def _kind_of(leaf: str, params: Mapping[str, TensorInfo], weight: TensorInfo | None) -> ModuleKind:
    if leaf == "experts" and not FUSED_EXPERT_PARAMS.isdisjoint(params):
        return ModuleKind.FUSED_EXPERTS
    if weight is None:
        return ModuleKind.OTHER
    if leaf in EMBEDDING_NAMES or leaf.endswith("_embed") or leaf.startswith("embed_"):
        return ModuleKind.EMBEDDING  # embed_tokens, pos_embed (vision), embed_positions
    if len(weight.shape) == 4 and "_weight_scale_and_zero" in params:
        return ModuleKind.LINEAR  # torchao Int4TilePackedTo4dTensor: qdata [n/8, k/128, 32, 4]
    if len(weight.shape) == 3 or "conv" in leaf:
        return ModuleKind.CONV
    if len(weight.shape) == 2:
        return ModuleKind.LINEAR
    return ModuleKind.OTHER


def by_module(tensors: Iterable[TensorInfo]) -> dict[str, dict[str, TensorInfo]]:
    """Tensors by owning module name, then parameter name, in the tensors' order."""
    grouped: dict[str, dict[str, TensorInfo]] = {}
    get = grouped.get
    for t in tensors:
        module, _, param = t[0].rpartition(".")  # t.name (a NamedTuple field: index is cheaper)
        found = get(module)  # (setdefault would build a dict per tensor)
        if found is None:
            grouped[module] = {param: t}
        else:
            found[param] = t
    return grouped


def kind_of(leaf: str, params: Mapping[str, TensorInfo],
            memo: dict[tuple[str, int], ModuleKind]) -> ModuleKind:
    """A module's kind. It is a function of its leaf and its weight's rank alone, unless the
    leaf is `experts` (fused parameters decide): memoized on that pair in ``memo``, as the
    10^5 experts of a large MoE share a handful of leaves."""
    weight = _weight(params)
    if leaf == "experts":
        return _kind_of(leaf, params, weight)
    key = (leaf, -1 if weight is None else len(weight[2]))  # weight.shape
    known = memo.get(key)
    if known is None:
        known = memo[key] = _kind_of(leaf, params, weight)
    return known


def group_modules(tensors: Iterable[TensorInfo]) -> dict[str, ModuleInfo]:
    """Group tensors by owning module, in name order."""
    return modules_of(by_module(tensors))


def modules_of(grouped: Mapping[str, Mapping[str, TensorInfo]]) -> dict[str, ModuleInfo]:
    """:func:`by_module`'s groups as modules, in name order."""
    out: dict[str, ModuleInfo] = {}
    kinds: dict[tuple[str, int], ModuleKind] = {}
    for name in sorted(grouped):
        params = grouped[name]
        out[name] = _module_info(name, kind_of(name[name.rfind(".") + 1 :], params, kinds), params)
    return out


_module_info = maker(ModuleInfo)  # ModuleInfo(name, kind, params), without __init__'s cost
