"""QuantArgs, QuantScheme, TensorSpec: a format-neutral account of how one module is quantized.

Every format parser (``qscale/formats``) turns its config into these types. A scheme lists the
tensors a module must carry on disk, each with its accepted dtypes and a shape rule computed
from the module's logical weight shape ``(out, in)``, the way the quantizer's compressor
writes them and the engine's quantization method registers them.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import Enum

#: Float dtypes engines accept for scales (they convert on load).
FLOAT_SCALE = frozenset({"F32", "BF16", "F16"})
FP8 = frozenset({"F8_E4M3"})
U8 = frozenset({"U8"})
E8M0 = frozenset({"U8", "F8_E8M0"})

Shapes = tuple[tuple[int, ...], ...]
ShapeRule = Callable[[int, int], Shapes]


class Strategy(str, Enum):
    """How many scales a tensor has (compressed-tensors' vocabulary)."""

    TENSOR = "tensor"
    CHANNEL = "channel"
    GROUP = "group"
    BLOCK = "block"
    TOKEN = "token"
    TENSOR_GROUP = "tensor_group"
    ATTN_HEAD = "attn_head"


#: Tensors that hold quantization scales (multipliers or divisors), in every format's spelling.
SCALE_PARAMS = frozenset(
    {
        "weight_scale",
        "weight_scale_inv",
        "weight_scale_2",
        "weight_global_scale",
        "input_scale",
        "input_global_scale",
    }
)
#: KV-cache and attention output scales, which engines remap onto their attention layers.
KV_SCALE_PARAMS = frozenset(
    {"k_scale", "v_scale", "q_scale", "kv_scale", "prob_scale", "output_scale"}
)


@dataclass(frozen=True, slots=True)
class QuantArgs:
    """Quantization of one operand (weights or input activations)."""

    type: str  #: "float" or "int"
    num_bits: int
    strategy: Strategy
    group_size: int | None = None
    block: tuple[int, int] | None = None  #: (block_n, block_k)
    symmetric: bool = True
    dynamic: bool | str = False  #: True, False or "local" (NVFP4 activations)
    scale_format: str | None = None  #: "e8m0" for OCP MX

    def describe(self) -> str:
        """Short human text, e.g. ``float8 block 128x128``."""
        kind = f"{self.type}{self.num_bits}"
        detail: str = self.strategy.value
        if self.strategy in (Strategy.GROUP, Strategy.TENSOR_GROUP) and self.group_size:
            detail = f"{detail} {self.group_size}"
        if self.block:
            detail = f"block {self.block[0]}x{self.block[1]}"
        dyn = {True: " dynamic", "local": " dynamic-local"}.get(self.dynamic, "")
        return f"{kind} {detail}{dyn}{'' if self.symmetric else ' asym'}"


Logical = Callable[[tuple[int, ...]], "tuple[int, int] | None"]


def unpacked(factor: int = 1) -> Logical:
    """Logical (out, in) of a 2-D weight stored with ``factor`` values per element along ``in``."""
    return lambda s: (s[0], s[1] * factor) if len(s) == 2 else None


@dataclass(frozen=True, slots=True)
class TensorSpec:
    """One tensor a quantized module must carry: ``<module>.<param>``."""

    param: str
    dtypes: frozenset[str]
    shapes: ShapeRule  #: accepted shapes, given the logical weight shape (out, in)
    logical: Logical | None = None  #: set on weights: (out, in) from the stored shape
    ref: str | None = None  #: the weight whose logical shape sizes this tensor (default: first)
    #: how a fused layer's loader fills it: None, one slot or row range per shard; "weight" or
    #: "act", one value for the whole layer that each shard's copy replaces (a parameter
    #: without ``output_dim``: the shard loaded last stays), acting on the output like a
    #: weight scale ("weight") or quantizing and dequantizing the one input alike ("act")
    overwritten: str | None = None

    def accepted(self, out: int, inp: int) -> Shapes:
        """Accepted shapes for a module of logical shape (out, in)."""
        return self.shapes(out, inp)


@dataclass(frozen=True, slots=True)
class QuantScheme:
    """How one module is quantized, and what it must carry on disk."""

    format: str  #: e.g. "compressed-tensors/float-quantized", "fp8", "quark", "modelopt"
    label: str  #: e.g. "FP8 per-tensor", "NVFP4", "MXFP4"
    weights: QuantArgs
    inputs: QuantArgs | None
    tensors: tuple[TensorSpec, ...]
    #: tensors a checkpoint may carry that the engine drops on load (GPTQ ``g_idx``) or
    #: loads and never reads (vLLM 0.18-0.22 FP-Quant ``backward_hadamard_matrix``)
    tolerated: frozenset[str] = frozenset()
    #: (param, why) for tensors an exporter writes that the engine has no parameter for
    #: (QS203 says why instead of "does not write")
    unregistered: tuple[tuple[str, str], ...] = ()
    #: the ``param`` of each of its tensors (derived from ``tensors``)
    params: frozenset[str] = field(init=False, repr=False, compare=False)
    #: ``params`` and ``tolerated``: what a module under this scheme may store
    accepts: frozenset[str] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "params", frozenset(t.param for t in self.tensors))
        object.__setattr__(self, "accepts", self.params | self.tolerated)

    @property
    def weight_spec(self) -> TensorSpec:
        """The spec of the stored weight (always the first)."""
        return self.tensors[0]

    def spec(self, param: str) -> TensorSpec | None:
        """The spec of one parameter, if the scheme has it."""
        return next((t for t in self.tensors if t.param == param), None)

    def describe(self) -> str:
        """One line: label, weights and activations."""
        act = self.inputs.describe() if self.inputs else "none"
        return f"{self.label} (weights {self.weights.describe()}; activations {act})"


# --------------------------------------------------------------------------- shape rules


def per_tensor(_o: int, _i: int) -> Shapes:
    """A scalar: 0-d or [1] (both load into a per-tensor slot)."""
    return ((), (1,))


def per_channel(o: int, _i: int) -> Shapes:
    """One scale per output row, as ``[out, 1]``: compressed-tensors' shape, and the only one
    vLLM 0.33 loads. Its channel schemes (``compressed_tensors_w8a8_fp8.py``,
    ``..._w8a8_int8.py``, ``..._wNa16.py``) register ``ChannelQuantScaleParameter`` /
    ``GroupQuantScaleParameter`` of shape ``(sum(output_partition_sizes), 1)``, and every load
    path of ``vllm/model_executor/parameter.py`` asserts ``param.shape == loaded.shape``
    (``_ColumnvLLMParameter.load_*``, ``BasevLLMParameter._assert_and_load`` for row-parallel
    layers): a stored ``[out]`` is refused with an AssertionError."""
    return ((o, 1),)


def per_channel_1d(o: int, _i: int) -> Shapes:
    """One scale per output row, as ``[out]``: Quark FP8 per-channel. vLLM 0.33
    ``quark/schemes/quark_w8a8_fp8.py`` registers ``ChannelQuantScaleParameter`` of shape
    ``(sum(output_partition_sizes),)`` ("quark's scale is 1 dim", also for MoE), so ``[out, 1]``
    fails the same shape asserts."""
    return ((o,),)


def square(n: int) -> ShapeRule:
    """An ``[n, n]`` matrix, whatever the module's shape (a rotation applied per group)."""
    return lambda _o, _i: ((n, n),)


def full(o: int, i: int) -> Shapes:
    """The unpacked weight."""
    return ((o, i),)


def packed_in(factor: int) -> ShapeRule:
    """A weight packed along the input dimension (e.g. 2 FP4 values per byte)."""
    return lambda o, i: ((o, math.ceil(i / factor)),)


def groups(size: int) -> ShapeRule:
    """One scale per ``size`` inputs of each row."""
    return lambda o, i: ((o, math.ceil(i / size)),)


def blocks(bn: int, bk: int) -> ShapeRule:
    """One scale per (bn x bk) tile."""
    return lambda o, i: ((math.ceil(o / bn), math.ceil(i / bk)),)


def shape_vector(_o: int, _i: int) -> Shapes:
    """``weight_shape``: the logical shape as a 2-vector."""
    return ((2,),)


def scale_rule(args: QuantArgs) -> ShapeRule:
    """The shape rule of a scale tensor for the given strategy."""
    match args.strategy:
        case Strategy.TENSOR:
            return per_tensor
        case Strategy.CHANNEL:
            return per_channel
        case Strategy.GROUP | Strategy.TENSOR_GROUP:
            assert args.group_size, "group strategies carry a group size"
            return groups(args.group_size)
        case Strategy.BLOCK:
            assert args.block, "block strategy carries a block"
            return blocks(*args.block)
        case Strategy.TOKEN | Strategy.ATTN_HEAD:
            return per_tensor
    raise AssertionError(args.strategy)


def input_scale_specs(inputs: QuantArgs | None) -> tuple[TensorSpec, ...]:
    """Static activation scales: ``input_scale`` (and a zero point when asymmetric)."""
    if inputs is None or inputs.dynamic:
        return ()
    specs = [TensorSpec("input_scale", FLOAT_SCALE, per_tensor)]
    if not inputs.symmetric:
        specs.append(TensorSpec("input_zero_point", frozenset({"I8", "F32", "BF16"}), per_tensor))
    return tuple(specs)
