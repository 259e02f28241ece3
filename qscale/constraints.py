"""problems(): the divisibility, block, group and packing constraints a layout breaks.

Checks every engine layer of :mod:`qscale.sharding` against one :class:`~qscale.layout.Layout`,
the way the engine does at start-up (docs/engine-loader-facts §2.3, §4.3–4.6, §6.1, §7):

- divisibility: attention, KV and Gated DeltaNet heads; ``MergedColumnParallelLinear`` asserts
  every output partition divides by TP; row-parallel inputs; MoE intermediate by MoE TP;
  experts over EP (SGLang asserts an even split; vLLM spreads the remainder);
- FP8 block: vLLM's ``validate_fp8_block_shape`` / ``validate_fp8_block_shape_moe``, with the
  merged-layer exemption ``_maybe_allow_fp8_block_shape_mismatch`` for ``quant_method: fp8``;
- groups (NVFP4 16, MXFP4 / OCP-MX 32, W4A16 its group size) along the input of row-parallel
  layers and of the experts' down projection;
- packing: values packed along the input, zero points packed along the output.

Each problem says which sizes of the same axis pass, so the messages can name what works.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass

from qscale.checkpoint import Checkpoint
from qscale.engines import wna16
from qscale.engines.loader import LoadPlan
from qscale.findings import Location, Severity
from qscale.formats import QuantMap
from qscale.layout import Deployment, Layout, resolve
from qscale.schemes import QuantScheme, Strategy
from qscale.sharding import ExpertShape, LayerShape, Shapes, Split, read_shapes

Version = tuple[int, ...]
NEWEST: Version = (10**6,)
#: vLLM builds the shared expert replicated (``disable_tp``) under sequence-parallel MoE from
#: this version on, per family: PR #39181 (0.20.0) for Qwen3-Next / Qwen3.5; DeepSeek read in
#: 0.33.0 (first release not pinned). Qwen2/Qwen3-MoE: never (PR #41763 was closed).
VLLM_SP_REPLICATED_SHARED_EXPERT: Mapping[str, Version] = {
    "qwen3_next": (0, 20),
    "qwen3_5": (0, 20),
    "qwen3_5_vl": (0, 20),
    "deepseek_v2": (0, 33),
}
#: vLLM pads the shared expert's intermediate size up to a whole number of weight blocks per
#: rank when the config has ``weight_block_size`` (those formats), so every TP loads it:
#: ``DeepseekV4MLP.__init__`` and ``DeepseekV4Model._pad_shared_expert_weight``
#: (``vllm/models/deepseek_v4/nvidia/model.py``, read in 0.26.0 and 0.33.0; 0.20.0 does not)
VLLM_PADDED_SHARED_EXPERT: Mapping[str, tuple[Version, frozenset[str]]] = {
    "deepseek_v4": ((0, 26), frozenset({"deepseek_v4_fp8"})),
}
#: the formats built by vLLM's ``Fp8LinearMethod`` (``Fp8Config`` and its DeepSeek-V4
#: subclass), whose merged layers skip the block check (``allow_fp8_block_shape_mismatch``)
FP8_LINEAR_FORMATS = frozenset({"fp8", "deepseek_v4_fp8"})
#: vLLM ``_should_replicate_misaligned_shared_expert`` (``qwen3_next.py``, read in 0.33.0, first
#: release not pinned): an OCP-MX shared expert whose TP slice breaks the 32-group is
#: replicated under EP or sequence-parallel MoE, and refused otherwise.
VLLM_MX_SHARED_REPLICATE_SINCE: Version = (0, 33)
VLLM_MX_SHARED_REPLICATE_FAMILIES = frozenset({"qwen3_next", "qwen3_5", "qwen3_5_vl"})
CANDIDATES = (1, 2, 4, 8, 16, 32, 64)


@dataclass(frozen=True, slots=True)
class EngineRules:
    """Where the engines differ on sharding."""

    uneven_experts: bool  #: vLLM ``determine_expert_map`` spreads a remainder; SGLang asserts
    fp8_merged_exemption: bool  #: vLLM ``_maybe_allow_fp8_block_shape_mismatch`` (0.18–0.33)


ENGINE_RULES: Mapping[str, EngineRules] = {
    "vllm": EngineRules(uneven_experts=True, fp8_merged_exemption=True),
    # SGLang refuses merged misaligned FP8 layers too (Qwen3-Next FP8 in_proj_ba report, PR
    # #23973); its FusedMoE asserts `num_experts % moe_ep_size == 0`.
    "sglang": EngineRules(uneven_experts=False, fp8_merged_exemption=False),
}


@dataclass(frozen=True, slots=True)
class Problem:
    """A constraint one layout breaks (or, for QS504, a note on a partial block)."""

    code: str
    severity: Severity
    message: str
    fix: str
    tensor: str | None = None
    param: str | None = None
    key: str | None = None  #: JSON pointer into config.json's text config


@dataclass(frozen=True, slots=True)
class _Ctx:
    layout: Layout
    family: str
    version: Version
    kv_heads: int | None
    act_order: bool = False  #: GPTQ act order in the config (Shapes.act_order)
    act_dtype: str | None = None

    @property
    def rules(self) -> EngineRules:
        return ENGINE_RULES[self.layout.engine]


def problems(shapes: Shapes, layout: Layout, version: Version | None) -> list[Problem]:
    """Every constraint ``layout`` breaks for these shapes, plus QS504 partial-block notes."""
    c = _Ctx(layout, shapes.family, version or NEWEST, shapes.kv_heads, shapes.act_order,
             shapes.act_dtype)
    out = list(_heads(shapes, c))
    for layer in shapes.layers:
        out += _layer(layer, c)
    for ex in shapes.experts:
        out += _experts(ex, c)
    return out


def works(ok: Callable[[int], bool], extra: int | None = None) -> str:
    """Sizes (powers of two up to 64, and divisors of ``extra``) for which ``ok`` holds."""
    sizes = set(CANDIDATES) | ({d for d in range(1, 65) if extra % d == 0} if extra else set())
    good = [str(s) for s in sorted(sizes) if ok(s)]
    return ", ".join(good) if good else "none up to 64"


def _alike(name: str, count: int) -> str:
    return f"`{name}`" + (f" (and {count - 1} more alike)" if count > 1 else "")


def _divides(n: int) -> Callable[[int], bool]:
    return lambda t: n % t == 0


def _heads(s: Shapes, c: _Ctx) -> Iterator[Problem]:
    tp = c.layout.tp
    counts: list[tuple[str, int | None, str]] = [
        ("attention heads", s.heads, "/num_attention_heads")
    ]
    for kind, heads in zip(("key", "value"), s.gdn_heads or (), strict=False):
        counts.append((f"Gated DeltaNet {kind} heads", heads, f"/linear_num_{kind}_heads"))
    for what, n, key in counts:
        if n and n % tp:
            yield Problem(
                "QS501", Severity.ERROR,
                f"{n} {what} do not split over TP={tp}: each rank takes whole heads;"
                f" TP that works: {works(_divides(n), n)}",
                f"Deploy with a TP that divides {n}", param=s.heads_param, key=key)
    kv = s.kv_heads
    if kv and (kv % tp if kv >= tp else tp % kv):
        yield Problem(
            "QS501", Severity.ERROR,
            f"{kv} KV heads and TP={tp}: the KV heads must split evenly over TP, or TP must be"
            " a multiple of them so each rank holds a replica (`QKVParallelLinear`); TP that"
            f" works: {works(lambda t: (kv % t if kv >= t else t % kv) == 0, kv)}",
            "Deploy with a TP that divides the KV heads or is a multiple of them",
            param=s.heads_param, key="/num_key_value_heads")


def shared_expert_tp(layer: LayerShape, c: _Ctx) -> int:
    """The TP a layer is split over: the layout's, or 1 for a replicated shared expert."""
    lay = c.layout
    if not layer.shared_expert:
        return lay.tp
    if lay.engine == "sglang":
        return 1 if lay.backend.replicates_shared_expert else lay.tp
    since = VLLM_SP_REPLICATED_SHARED_EXPERT.get(c.family)
    if lay.sequence_parallel and since is not None and c.version >= since:
        return 1
    if (lay.ep > 1 or lay.sequence_parallel) and _mx_replicated(layer, c):
        return 1
    return lay.tp


def _mx_replicated(layer: LayerShape, c: _Ctx) -> bool:
    if not _is_ocp_mx(layer.scheme) or c.family not in VLLM_MX_SHARED_REPLICATE_FAMILIES:
        return False
    if c.version < VLLM_MX_SHARED_REPLICATE_SINCE:
        return False
    inter = layer.inp if layer.split == Split.ROW else layer.parts[0]
    return inter % c.layout.tp != 0 or (inter // c.layout.tp) % 32 != 0


def _is_ocp_mx(s: QuantScheme | None) -> bool:
    return s is not None and s.format == "quark" and s.weights.scale_format == "e8m0"


def _padded_shared_expert(layer: LayerShape, c: _Ctx) -> bool:
    """A shared expert the engine pads to whole blocks per rank (any TP loads it)."""
    padded = VLLM_PADDED_SHARED_EXPERT.get(c.family)
    return (padded is not None and layer.shared_expert and c.layout.engine == "vllm"
            and c.version >= padded[0] and layer.scheme is not None
            and layer.scheme.format in padded[1])


def _layer(layer: LayerShape, c: _Ctx) -> list[Problem]:
    if layer.split == Split.REPLICATED or _padded_shared_expert(layer, c):
        return []
    tp = shared_expert_tp(layer, c)
    at = {"tensor": layer.tensor, "param": layer.name}
    name = _alike(layer.name, layer.count)
    out = _partial_block(layer, name, at)
    if layer.split == Split.ROW and layer.inp % tp:
        return [*out, Problem(
            "QS501", Severity.ERROR,
            f"{name}: input size {layer.inp} does not split over TP={tp} (row-parallel layers"
            f" divide their input); TP that works: {works(lambda t: layer.inp % t == 0)}",
            "Deploy with a TP that divides the layer's input size", **at)]
    if layer.split == Split.COLUMN and any(p % tp for p in layer.parts):
        return [*out, Problem(
            "QS501", Severity.ERROR,
            f"{name}: output partitions {list(layer.parts)} do not split over TP={tp}"
            " (`MergedColumnParallelLinear` asserts each one divides by TP); TP that works:"
            f" {works(lambda t: all(p % t == 0 for p in layer.parts))}",
            "Deploy with a TP that divides every output partition", **at)]
    out += _block(layer, tp, c, name, at)
    if layer.split == Split.ROW and tp > 1:
        out += _group(layer.scheme, layer.inp, tp, name, at, _mx_shared_refusal(layer, c))
        out += _packed_input(layer.scheme, layer.inp, tp, name, at, "TP")
    out += _packed_zero_points(layer, tp, name, at)
    out += _torchao_tiles(layer, tp, name, at)
    out += _torchao_act_pre_scale(layer, tp, name, at)
    if c.layout.engine == "vllm" and layer.scheme is not None \
            and layer.scheme.format in WNA16_METHODS:
        out += _marlin_tiles(layer, tp, c, name, at)
    return out


#: ``GPTQ_MARLIN_MIN_THREAD_N`` / ``_K`` (``utils/marlin_utils.py``, 0.18.0–0.33.0)
MARLIN_MIN_N, MARLIN_MIN_K = 64, 128
#: ``MACHETE_PREPACKED_BLOCK_SHAPE`` (``utils/machete_utils.py``): input, output
MACHETE_K, MACHETE_N = 64, 128


def _marlin_built(s: QuantScheme, f: wna16.WNA16Facts) -> bool:
    """Whether the release builds this GPTQ / AWQ scheme with its Marlin linear method (else
    GPTQ's exllama ``GPTQConfig`` or AWQ's GEMM kernel, which take any thread tile)."""
    g = -1 if s.weights.group_size is None else s.weights.group_size
    if s.format == "awq":
        return g in f.marlin_group_sizes and s.weights.num_bits == 4
    return (s.weights.num_bits, s.weights.symmetric) in f.gptq_marlin_types \
        and g in f.marlin_group_sizes


def _marlin_tiles(
    layer: LayerShape, tp: int, c: _Ctx, name: str, at: Mapping[str, str]
) -> list[Problem]:
    """vLLM's dense Marlin kernel and its thread tiles, per rank (:mod:`qscale.engines.wna16`).

    Up to 0.23 (and 0.24–0.29 under GPTQ act order) ``MarlinLinearKernel.can_implement``
    calls ``check_marlin_supports_shape``: output per rank % 64, input per rank % 128. GPTQ
    then takes the next mixed-precision kernel that can (``choose_mp_linear_kernel``):
    Machete on Hopper (input % 64, output % 128, no act order over a split input), Exllama
    for float16 activations (no act order over a split input), else "Failed to find a kernel
    that can implement the WNA16 linear layer". AWQ falls back per layer to its GEMM kernel
    ("Falling back to unoptimized AWQ kernels"). From 0.30 (0.24 without act order) the kernel
    zero-pads the tiles; only a group that straddles ranks stays refused (QS505)."""
    s = layer.scheme
    assert s is not None
    f = wna16.facts("vllm", c.version)
    assert f is not None
    strict = f.marlin_tiles == wna16.MarlinTiles.STRICT or (
        f.marlin_tiles == wna16.MarlinTiles.STRICT_WITH_ACT_ORDER and c.act_order
        and s.format == "gptq")
    if not strict or not _marlin_built(s, f):
        return []
    g = group_size(s)
    if layer.split == Split.ROW:
        n, k = sum(layer.parts), layer.inp // tp
        if g is not None and g < layer.inp and k % g:
            return []  # a group straddles ranks: QS505's
    else:
        n, k = sum(_rank_parts(layer, tp, c.kv_heads)), layer.inp
    bad = ([f"output per rank {n} is not a multiple of {MARLIN_MIN_N}"] if n % MARLIN_MIN_N
           else []) + ([f"input per rank {k} is not a multiple of {MARLIN_MIN_K}"]
                       if k % MARLIN_MIN_K else [])
    if not bad:
        return []

    def marlin_ok(t: int) -> bool:
        if layer.split == Split.ROW:
            return layer.inp % t == 0 and (layer.inp // t) % MARLIN_MIN_K == 0 \
                and sum(layer.parts) % MARLIN_MIN_N == 0
        return all(p % t == 0 for p in layer.parts) \
            and sum(_rank_parts(layer, t, c.kv_heads)) % MARLIN_MIN_N == 0 \
            and layer.inp % MARLIN_MIN_K == 0

    head = (f"{name}: at TP={tp} {' and '.join(bad)}, so vLLM's Marlin kernel does not take"
            f" it (`check_marlin_supports_shape`: min_thread_n {MARLIN_MIN_N}, min_thread_k"
            f" {MARLIN_MIN_K}; {f.range_label}")
    head += ", act order)" if c.act_order and f.marlin_tiles != wna16.MarlinTiles.STRICT else ")"
    keep = f"TP that keeps Marlin: {works(marlin_ok)}"
    if s.format == "awq":
        return [Problem(
            "QS507", Severity.INFO,
            f"{head}; vLLM falls back for this layer to the slower AWQ GEMM kernel ('Falling"
            f" back to unoptimized AWQ kernels'); it loads. {keep}",
            "For the Marlin kernel: deploy with a TP the message lists", **at)]
    split_act = c.act_order and layer.split == Split.ROW and tp > 1
    machete = not split_act and k % MACHETE_K == 0 and n % MACHETE_N == 0
    fp16 = c.act_dtype == "float16"
    if split_act or not (machete or fp16):
        why = ("Machete and Exllama refuse act order over an input split across ranks"
               if split_act else
               f"Machete needs input % {MACHETE_K} and output % {MACHETE_N} per rank, Exllama"
               f" float16 activations (this checkpoint's dtype: {c.act_dtype or 'unknown'})")
        return [Problem(
            "QS507", Severity.ERROR,
            f"{head}; no other WNA16 kernel takes it ({why}): the engine stops with 'Failed"
            f" to find a kernel that can implement the WNA16 linear layer'. {keep}",
            "Deploy with a TP the message lists"
            + ("" if split_act else ", or serve with `--dtype float16` (Exllama kernel)"), **at)]
    alt = " and ".join(x for x, ok in (("Machete (Hopper GPUs only)", machete),
                                       ("Exllama (float16 activations)", fp16)) if ok)
    return [Problem(
        "QS507", Severity.WARNING,
        f"{head}; vLLM picks another WNA16 kernel if one fits this GPU: {alt}, slower than"
        " Marlin; without one it stops ('Failed to find a kernel that can implement the WNA16"
        f" linear layer'). {keep}",
        "Deploy with a TP the message lists for the Marlin kernel", **at)]


def _rank_parts(layer: LayerShape, tp: int, kv_heads: int | None = None) -> tuple[int, ...]:
    if layer.split != Split.QKV or kv_heads is None or tp <= kv_heads:
        return tuple(p // tp for p in layer.parts)
    q, k, v = layer.parts  # TP beyond the KV heads: one replicated KV head per rank
    return (q // tp, k // kv_heads, v // kv_heads)


def _block(
    layer: LayerShape, tp: int, c: _Ctx, name: str, at: Mapping[str, str]
) -> list[Problem]:
    """vLLM ``validate_fp8_block_shape``, with the merged-layer exemption."""
    s = layer.scheme
    if s is None or s.weights.strategy != Strategy.BLOCK or s.weights.block is None:
        return []
    bn, bk = s.weights.block
    if layer.split == Split.ROW:
        k = layer.inp // tp
        if tp == 1 or k % bk == 0:
            return []
        return [Problem(
            "QS503", Severity.ERROR,
            f"{name}: input per rank {k} at TP={tp} is not a multiple of block_k={bk}; the"
            f' engine refuses: "Weight input_size_per_partition = {k} is not divisible by'
            f' weight quantization block_k = {bk}."; TP that works:'
            f" {works(lambda t: layer.inp % t == 0 and (layer.inp // t) % bk == 0)}",
            "Deploy with a TP that keeps every rank's input a multiple of the block", **at)]
    parts = _rank_parts(layer, tp, c.kv_heads)
    if not all(parts):
        return []  # fewer heads than ranks: QS501's
    split = tp > 1 and sum(layer.parts) // sum(parts) == tp
    merged = len(parts) > 1
    checked = parts if split else parts[:-1] if merged else ()
    bad = [n for n in checked if n % bn]
    if not bad:
        return []
    ok = works(lambda t: _block_ok(layer, t, bn))
    if merged and c.rules.fp8_merged_exemption and s.format in FP8_LINEAR_FORMATS:
        return [Problem(
            "QS503", Severity.WARNING,
            f"{name}: per-rank partitions {list(parts)} at TP={tp}; {bad[0]} is not a multiple"
            f" of block_n={bn}. vLLM skips its block check for merged `quant_method: fp8`"
            " layers (`allow_fp8_block_shape_mismatch`), so nothing fails at start-up, but the"
            " block-scale rows of the later partitions are placed at per-partition ceil offsets"
            " that do not follow the block grid (scales overrun or come from a neighbouring"
            f" block; not verified on hardware); TP that keeps blocks whole: {ok}",
            "Prefer a TP that keeps every partition a multiple of the block", **at)]
    return [Problem(
        "QS503", Severity.ERROR,
        f"{name}: per-rank partitions {list(parts)} at TP={tp}; the engine refuses:"
        f' "Weight output_partition_size = {bad[0]} is not divisible by weight quantization'
        f' block_n = {bn}."; TP that works: {ok}',
        "Deploy with a TP that keeps every partition a multiple of the block", **at)]


def _block_ok(layer: LayerShape, t: int, bn: int) -> bool:
    if any(p % t for p in layer.parts):
        return False
    parts = [p // t for p in layer.parts]
    checked = parts if t > 1 else parts[:-1]
    return all(n % bn == 0 for n in checked)


def _partial_block(layer: LayerShape, name: str, at: Mapping[str, str]) -> list[Problem]:
    """Class 24: block-FP8 dimensions not multiples of the block at all (QS504, info)."""
    s = layer.scheme
    if s is None or s.weights.block is None:
        return []
    bn, bk = s.weights.block
    rows = [p for p in layer.parts if p % bn]
    odd = ([f"output partition(s) {rows} of block_n={bn}"] if rows else []) + (
        [f"input {layer.inp} of block_k={bk}"] if layer.inp % bk else []
    )
    if not odd:
        return []
    return [Problem(
        "QS504", Severity.INFO,
        f"{name}: {' and '.join(odd)} are not whole blocks; the scale grid covers a partial"
        " last block (ceil), but a partial block before the last partition of a merged layer,"
        " or a TP that cuts inside a block, is refused or misaligned (QS503)",
        "None needed at TP=1; pick TPs that keep whole blocks per rank", **at)]


def _mx_shared_refusal(layer: LayerShape, c: _Ctx) -> bool:
    """vLLM ≥ 0.33 refuses a TP-split OCP-MX shared expert that breaks its 32-group."""
    return (
        layer.shared_expert
        and c.layout.engine == "vllm"
        and _is_ocp_mx(layer.scheme)
        and c.family in VLLM_MX_SHARED_REPLICATE_FAMILIES
        and c.version >= VLLM_MX_SHARED_REPLICATE_SINCE
    )


def group_size(s: QuantScheme | None) -> int | None:
    """The group along the input dimension of a grouped scheme."""
    if s is None or s.weights.strategy not in (Strategy.GROUP, Strategy.TENSOR_GROUP):
        return None
    return s.weights.group_size


def _group(
    s: QuantScheme | None, inp: int, tp: int, name: str, at: Mapping[str, str], mx_shared: bool
) -> list[Problem]:
    g = group_size(s)
    k = inp // tp
    if g is None or s is None or k % g == 0:
        return []
    if mx_shared:
        said = (
            '"The Quark OCP MX shared expert cannot be tensor-parallelized: intermediate size'
            f" {inp} with TP size {tp} produces a partition of {k}, which is not divisible by"
            f' the OCP MX group size {g}." (vLLM replicates it instead under EP or'
            " sequence-parallel MoE)"
        )
    elif s.format == "quark":
        said = (f'"OCP MX linear layer … has an input size per partition of {k}, which must'
                f' be divisible by the OCP MX group size {g}."')
    elif s.format == "modelopt":
        said = '"Unsupported model when in features size is not multiple of 16"'
    elif s.format == "torchao":  # TorchAOLinearMethod.create_weights quantizes the empty slice
        from qscale.formats import torchao  # loaded: a torchao scheme comes from its config

        said = torchao.group_refusal(s.label, k, g, s.spec("_weight_act_pre_scale") is not None)
    else:
        said = ('"The input size is not aligned with the quantized weight shape. This can be'
                ' caused by too large tensor parallel size."')
    return [Problem(
        "QS505", Severity.ERROR,
        f"{name}: input per rank {k} at TP={tp} is not a multiple of the {s.label} group"
        f" size {g}, so groups would straddle ranks; the engine refuses: {said}; TP that"
        f" works: {works(lambda t: inp % t == 0 and (inp // t) % g == 0)}",
        "Deploy with a TP that keeps every rank's input a multiple of the group", **at)]


def pack_factor(s: QuantScheme | None) -> tuple[int, str] | None:
    """Values stored per element along the input, and the element's name."""
    if s is None or s.weights.num_bits >= 8 or not s.tensors:
        return None
    if "I32" in s.weight_spec.dtypes:
        return 32 // s.weights.num_bits, "int32"
    return 8 // s.weights.num_bits, "byte"


def _packed_input(
    s: QuantScheme | None, inp: int, tp: int, name: str, at: Mapping[str, str], axis: str
) -> list[Problem]:
    pf = pack_factor(s)
    k = inp // tp
    if pf is None or k % pf[0] == 0:
        return []
    n, unit = pf
    return [Problem(
        "QS506", Severity.ERROR,
        f"{name}: input per rank {k} at {axis}={tp} is not a multiple of the {n} values packed"
        f" per {unit}: the rank's slice would start inside a packed {unit}; {axis} that works:"
        f" {works(lambda t: inp % t == 0 and (inp // t) % n == 0)}",
        f"Deploy with a {axis} that keeps every rank's input a multiple of {n}", **at)]


def _torchao_tiles(layer: LayerShape, tp: int, name: str, at: Mapping[str, str]) -> list[Problem]:
    """torchao's tile-packed Int4 (:func:`qscale.formats.torchao.tile_packed_refusal`)."""
    s = layer.scheme
    if s is None or s.label != "torchao Int4TilePackedTo4dTensor" or s.weights.group_size is None:
        return []
    row, g = layer.split == Split.ROW, s.weights.group_size
    if row and (layer.inp // tp) % g:
        return []  # the group fails first (QS505)
    from qscale.formats import torchao  # loaded: a torchao scheme comes from its config

    why = torchao.tile_packed_refusal(row, layer.inp, layer.parts, tp, g)
    if why is None:
        return []
    ok = works(lambda t: torchao.tile_packed_refusal(row, layer.inp, layer.parts, t, g) is None
               and layer.inp % t == 0 and all(p % t == 0 for p in layer.parts)
               and (not row or t == 1 or (layer.inp // t) % g == 0))
    return [Problem(
        "QS506", Severity.ERROR, f"{name}: {why} (vLLM + torchao 0.18); TP that works: {ok}",
        "Deploy with a TP that keeps every rank's input a multiple of 1024 (torchao"
        " Int4TilePackedTo4dTensor), or re-quantize the checkpoint with a format vLLM slices"
        " freely (Intx weight-only)", **at)]


def _torchao_act_pre_scale(layer: LayerShape, tp: int, name: str, at: Mapping[str, str]
                           ) -> list[Problem]:
    """torchao AWQ (:func:`qscale.formats.torchao._awq_built`): a row-parallel rank's parameter
    carries an ``act_pre_scale`` of its own input columns, and torchao's slice of the stored
    Int4Tensor keeps the whole one, so ``copy_`` refuses (real vLLM 0.33 at TP=2)."""
    s = layer.scheme
    if s is None or s.format != "torchao" or s.spec("_weight_act_pre_scale") is None \
            or layer.split != Split.ROW or tp == 1 or s.weights.group_size is None \
            or (layer.inp // tp) % s.weights.group_size:
        return []  # a group split by TP fails first (QS505)
    return [Problem(
        "QS506", Severity.ERROR,
        f"{name}: at TP={tp} each rank's parameter has an AWQ `act_pre_scale` of its"
        f" {layer.inp // tp} input columns, while torchao's slice of the stored Int4Tensor keeps"
        f" all {layer.inp} (Int4Tensor's aten.slice never cuts it): copy_ fails with"
        " \"ValueError: Not supported args for copy_ due to metadata mismatch\" (real vLLM 0.33"
        " + torchao 0.18); TP that works: [1]",
        "Deploy at TP=1 (row-parallel layers cannot take torchao AWQ weights in vLLM 0.33), or"
        " re-quantize without AWQ (Int4WeightOnlyConfig)", **at)]


def _packed_zero_points(
    layer: LayerShape, tp: int, name: str, at: Mapping[str, str]
) -> list[Problem]:
    """pack-quantized zero points (asymmetric group/channel) are packed along the output."""
    s = layer.scheme
    zp = s.spec("weight_zero_point") if s else None
    if s is None or zp is None or zp.dtypes != frozenset({"I32"}) or layer.split == Split.ROW:
        return []
    n = 32 // s.weights.num_bits
    parts = tuple(p // tp for p in layer.parts)
    bad = [p for p in parts if p % n]
    if not bad:
        return []
    return [Problem(
        "QS506", Severity.ERROR,
        f"{name}: per-rank output partitions {list(parts)} at TP={tp}; {bad[0]} is not a"
        f" multiple of the {n} zero points packed per int32 along the output, so the loader's"
        " `shard_size // packed_factor` offsets misalign them silently; TP that works:"
        f" {works(lambda t: all(p % t == 0 and (p // t) % n == 0 for p in layer.parts))}",
        f"Deploy with a TP that keeps every partition a multiple of {n}", **at)]


def _experts(ex: ExpertShape, c: _Ctx) -> list[Problem]:
    lay = c.layout
    at = {"tensor": ex.tensor}
    name = _alike(ex.name, ex.count)
    out = _expert_split(ex, lay, c.rules, name, at)
    mtp, inter = lay.moe_tp, ex.inter
    if inter % mtp:
        return [*out, Problem(
            "QS501", Severity.ERROR,
            f"{name}: moe_intermediate_size {inter} does not split over MoE TP={mtp} (the"
            f" fused-MoE layer asserts `intermediate_size % tp_size == 0`); MoE TP that works:"
            f" {works(lambda t: inter % t == 0)}, or enable expert parallel (MoE TP=1)",
            "Enable expert parallel, or lower the MoE tensor-parallel size", **at)]
    out += _expert_block(ex, mtp, name, at)
    if lay.engine == "vllm" and ex.scheme is not None and ex.scheme.format in WNA16_METHODS:
        out += _wna16_experts(ex, mtp, name, at, c)
    elif mtp > 1:
        out += [_moe(p) for p in _group(ex.scheme, inter, mtp, name, at, False)]
        out += _packed_input(ex.scheme, inter, mtp, name, at, "MoE TP")
    return out


#: GPTQ / AWQ (``qscale.formats.gptq``): their fused-MoE kernels, read in vLLM 0.33.0
WNA16_METHODS = frozenset({"gptq", "awq"})
#: the smallest group ``MoeWNA16Method.create_weights`` accepts after halving (``assert``)
MOE_WNA16_MIN_GROUP = 32


def moe_wna16_group(group: int, inter: int, hidden: int | None) -> int | None:
    """The group MoE WNA16 builds with for a rank's expert slice, or None where it refuses.

    vLLM 0.33.0 ``MoeWNA16Method.create_weights`` (``quantization/moe_wna16.py``) halves the
    group until it divides both the rank's intermediate size and the hidden size, asserting
    ``group_size >= 32`` after each halving (its loader repeats each scale and zero point to
    fit)."""
    g = group
    while inter % g or (hidden is not None and hidden % g):
        g //= 2
        if g < MOE_WNA16_MIN_GROUP:
            return None
    return g


def _moe_marlin_step(s: QuantScheme, g: int, c: _Ctx) -> int:
    """What the rank's expert intermediate size must be a multiple of for vLLM's fused Marlin
    MoE kernel: the group, or ``max(64, group)`` where the release's GPTQ check is strict
    (:attr:`qscale.engines.wna16.WNA16Facts.moe_marlin_tiles`; AWQ's is not read: group)."""
    f = wna16.facts("vllm", c.version)
    if f is None or s.format != "gptq":
        return g
    strict = f.moe_marlin_tiles == wna16.MarlinTiles.STRICT or (
        f.moe_marlin_tiles == wna16.MarlinTiles.STRICT_WITH_ACT_ORDER and c.act_order)
    return max(64, g) if strict else g


def _wna16_experts(ex: ExpertShape, mtp: int, name: str, at: Mapping[str, str], c: _Ctx
                   ) -> list[Problem]:
    """GPTQ / AWQ routed experts on vLLM: the fused Marlin MoE kernel, else MoE WNA16.

    ``AutoGPTQConfig`` / ``AutoAWQConfig.get_quant_method`` (vLLM 0.33.0 ``auto_gptq.py``,
    ``auto_awq.py``) build the Marlin MoE method when ``check_moe_marlin_supports_config``
    (``utils/marlin_utils.py``, tile padding allowed) holds: hidden size a multiple of 128 and
    the rank's intermediate size a multiple of the group; otherwise they warn "… is not
    supported by GPTQMoeMarlin / AutoAWQMoEMarlin. Falling back to Moe WNA16 kernels." and
    build ``MoeWNA16Method``, which loads any slice whose halved group stays ≥ 32
    (:func:`moe_wna16_group`). So a group cut by MoE TP costs speed, not correctness."""
    s = ex.scheme
    g = group_size(s)
    assert s is not None
    if g is None:
        return []  # channel-wise: Marlin takes any intermediate size
    i, hidden = ex.inter // mtp, ex.hidden
    step = _moe_marlin_step(s, g, c)
    if (hidden is None or hidden % 128 == 0) and i % step == 0:
        return []
    fits = works(lambda t: ex.inter % t == 0
                 and moe_wna16_group(g, ex.inter // t, hidden) is not None)
    marlin = works(lambda t: ex.inter % t == 0 and (ex.inter // t) % step == 0)
    if i % g == 0 and i % step:  # whole groups, but not Marlin MoE's 64-wide tiles
        f = wna16.facts("vllm", c.version)
        what = (f"expert intermediate per rank {i} at MoE TP={mtp} is not a multiple of"
                f" {step} (the fused Marlin MoE kernel's tile check, vllm"
                f"{f.range_label if f else ''})")
    else:
        why = (f"expert intermediate per rank {i} at MoE TP={mtp}" if i % g else
               f"hidden size {hidden} is not a multiple of 128")
        what = f"{why} does not hold whole {s.label} groups of {g}"
    fallback = moe_wna16_group(g, i, hidden)
    if fallback is None:
        return [Problem(
            "QS505", Severity.ERROR,
            f"{name}: {what}; vLLM's fused Marlin"
            " MoE kernel does not take it, and the MoE WNA16 fallback halves the group to fit"
            f" the slice and stops below {MOE_WNA16_MIN_GROUP} (`assert group_size >= 32` in"
            f" MoeWNA16Method.create_weights); MoE TP that works: {fits}, or enable expert"
            " parallel (MoE TP=1)",
            "Enable expert parallel, or lower the MoE tensor-parallel size", **at)]
    return [Problem(
        "QS505", Severity.INFO,
        f"{name}: {what}, so vLLM falls back from"
        f" the fused Marlin MoE kernel to the slower MoE WNA16 kernels (group {fallback},"
        ' scales repeated to fit: "Falling back to Moe WNA16 kernels."); it loads. MoE TP'
        f" that keeps Marlin: {marlin}, or enable expert parallel (MoE TP=1)",
        "For the Marlin kernel: enable expert parallel, or lower the MoE tensor-parallel size",
        **at)]


def _moe(p: Problem) -> Problem:
    msg = p.message.replace(" at TP=", " at MoE TP=").replace("; TP that works", "; MoE TP that"
                                                                 " works")
    return Problem(p.code, p.severity, msg + ", or enable expert parallel (MoE TP=1)",
                   "Enable expert parallel, or lower the MoE tensor-parallel size",
                   p.tensor, p.param, p.key)


def _expert_split(
    ex: ExpertShape, lay: Layout, rules: EngineRules, name: str, at: Mapping[str, str]
) -> list[Problem]:
    n, ep = ex.experts, lay.ep
    if ep <= 1 or (n % ep == 0) or (rules.uneven_experts and ep <= n):
        return []
    even = works(lambda e: n % e == 0, n)
    if ep > n:
        why = f"EP={ep} is more ranks than the {n} experts: some ranks would hold none"
    else:
        why = (f"{n} experts do not split evenly over EP={ep}; SGLang asserts"
               " `num_experts % moe_ep_size == 0`")
    return [Problem(
        "QS502", Severity.ERROR, f"{name}: {why}; EP that works: {even}",
        f"Deploy with an EP that divides {n}", **at)]


def _expert_block(ex: ExpertShape, mtp: int, name: str, at: Mapping[str, str]) -> list[Problem]:
    """vLLM ``validate_fp8_block_shape_moe``."""
    s = ex.scheme
    if s is None or s.weights.block is None:
        return []
    bn, bk = s.weights.block
    i = ex.inter // mtp
    ok = works(lambda t: ex.inter % t == 0 and (ex.inter // t) % bn == 0
               and (t == 1 or (ex.inter // t) % bk == 0))
    if i % bn:
        said = (f"The output_size of gate's and up's weight = {i} is not divisible by weight"
                f" quantization block_n = {bn}.")
    elif mtp > 1 and i % bk:
        said = (f"The input_size of down's weight = {i} is not divisible by weight"
                f" quantization block_k = {bk}.")
    else:
        return []
    return [Problem(
        "QS503", Severity.ERROR,
        f"{name}: expert intermediate per rank {i} at MoE TP={mtp}; the engine refuses:"
        f' "{said}"; MoE TP that works: {ok}, or enable expert parallel (MoE TP=1)',
        "Enable expert parallel, or lower the MoE tensor-parallel size", **at)]


def layout_problems(
    ckpt: Checkpoint, quant: QuantMap, plan: LoadPlan, deployment: Deployment
) -> list[Problem]:
    """The problems of the deployment's layout on the plan's engine (for the QS5xx rules)."""
    lay = resolve(deployment, plan.engine)
    return problems(read_shapes(ckpt, quant, plan), lay, plan.engine.version)


def location(p: Problem, ckpt: Checkpoint) -> Location:
    """Where a problem points: the layer's first tensor, or the config key of a head count."""
    if p.tensor is not None:
        t = ckpt.tensors.get(p.tensor)
        return Location(file=t.file if t else None, tensor=p.tensor, param=p.param)
    prefix = "/text_config" if isinstance(ckpt.config.raw.get("text_config"), dict) else ""
    return Location(file="config.json", param=p.param, key=prefix + (p.key or ""))
