"""What each engine release builds for GPTQ and AWQ (weight-only int, "WNA16"), as data.

Every row holds over a release range ``[low, high)`` and cites the files of the released wheels
it was read from (``vllm/model_executor/layers/quantization/…`` and, for the dense kernels,
``vllm/model_executor/kernels/linear/mixed_precision/marlin.py``). Read in the wheels of
0.18.0 and of every release from 0.20.0 to 0.33.0; a change between two releases read is
pinned to the later one (0.19 was not read: 0.18.0 and 0.20.0 agree on every fact here).

The formats (:mod:`qscale.formats.gptq`) ask :func:`facts` which configs the release refuses
at start-up; the layout rules (:mod:`qscale.constraints`) ask whether its dense Marlin kernel
checks thread tiles per partition.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

from qscale.engines.profiles import INF_VERSION

Version = tuple[int, ...]


class MarlinTiles(str, Enum):
    """How the dense Marlin linear kernel treats a partition that is not whole thread tiles
    (``output % 64``, ``input % 128``: ``check_marlin_supports_shape`` in
    ``utils/marlin_utils.py``)."""

    #: ``MarlinLinearKernel.can_implement`` refuses it; vLLM tries the next mixed-precision
    #: kernel (Machete on Hopper, Exllama for float16 activations) and fails when none fits
    STRICT = "strict"
    #: zero-padded at weight prep, except under act order (``has_g_idx``), which stays strict
    STRICT_WITH_ACT_ORDER = "strict-with-act-order"
    PADDED = "padded"  #: always zero-padded (act order is refused anyway)
    #: SGLang 0.5.23 calls ``check_marlin_supports_shape`` and ignores its answer: Marlin runs
    #: on any partition (what it computes there is not verified), nothing refuses or falls back
    UNCHECKED = "unchecked"


@dataclass(frozen=True, slots=True)
class WNA16Facts:
    """GPTQ / AWQ behaviour of one engine over ``[low, high)``."""

    engine: str
    low: Version
    high: Version
    #: (bits, sym) the Marlin GPTQ config builds (``TYPE_MAP``)
    gptq_marlin_types: frozenset[tuple[int, bool]]
    #: ``MARLIN_SUPPORTED_GROUP_SIZES``
    marlin_group_sizes: tuple[int, ...]
    #: bits the non-Marlin ``GPTQConfig`` (exllama / ``gptq_gemm``) builds, for any sym and
    #: group size, when the config is not Marlin-compatible; empty: no fallback, refused
    gptq_fallback_bits: frozenset[int]
    #: ``desc_act`` with a group size is refused (else built with act order, reading ``g_idx``)
    desc_act_refused: bool
    awq_bits: frozenset[int]  #: bits the non-Marlin AWQ config builds (any group size)
    marlin_tiles: MarlinTiles
    #: AWQ layers the Marlin kernel refuses fall back per layer to the AWQ GEMM / Triton kernel
    awq_tile_fallback: bool
    sources: tuple[str, ...]
    #: bits the AWQ Marlin config builds (Marlin group sizes only)
    awq_marlin_bits: frozenset[int] = frozenset({4})
    #: GPTQ's fused-MoE Marlin check (``check_moe_marlin_supports_layer``): STRICT asks the
    #: rank's intermediate size to be a multiple of ``max(64, group)``; padded ones only of
    #: the group (the hidden size a multiple of 128 in both)
    moe_marlin_tiles: MarlinTiles = MarlinTiles.STRICT

    @property
    def range_label(self) -> str:
        """``>=0.18.0,<0.22.0`` style."""
        lo = ".".join(map(str, self.low))
        if self.high == INF_VERSION:
            return f">={lo}"
        return f">={lo},<{'.'.join(map(str, self.high))}"


_MARLIN_TYPES = frozenset({(4, True), (8, True)})
_MARLIN_GROUPS = (-1, 32, 64, 128)
_Q = "vllm/model_executor/layers/quantization/"
_K = "vllm/model_executor/kernels/linear/mixed_precision/marlin.py"

VLLM: tuple[WNA16Facts, ...] = (
    # gptq_marlin.py: GPTQMarlinConfig.TYPE_MAP {(4, sym), (8, sym)}; override_quantization_method
    # keeps `gptq` (gptq.py: GPTQConfig, bits 2/3/4/8, any group, asym) when
    # is_gptq_marlin_compatible fails; MarlinLinearKernel.can_implement calls
    # check_marlin_supports_shape; awq_marlin.py falls back to AWQConfig (awq.py, 4 bits only)
    # per layer when check_marlin_supports_layer fails. Read: 0.18.0, 0.20.0, 0.21.0.
    WNA16Facts(
        "vllm", (0, 18), (0, 22), _MARLIN_TYPES, _MARLIN_GROUPS, frozenset({2, 3, 4, 8}),
        desc_act_refused=False, awq_bits=frozenset({4}), marlin_tiles=MarlinTiles.STRICT,
        awq_tile_fallback=True,
        sources=(f"{_Q}gptq_marlin.py", f"{_Q}gptq.py", f"{_Q}awq_marlin.py", f"{_Q}awq.py",
                 f"{_Q}utils/marlin_utils.py", _K),
    ),
    # auto_gptq.py: AutoGPTQConfig serves `gptq` and `gptq_marlin` (no non-Marlin fallback:
    # "Unsupported quantization config"; AutoGPTQLinearMethod calls verify_marlin_supported);
    # the dense kernel still checks tiles. Read: 0.22.0, 0.23.0.
    WNA16Facts(
        "vllm", (0, 22), (0, 24), _MARLIN_TYPES, _MARLIN_GROUPS, frozenset(),
        desc_act_refused=False, awq_bits=frozenset({4}), marlin_tiles=MarlinTiles.STRICT,
        awq_tile_fallback=True,
        sources=(f"{_Q}auto_gptq.py", f"{_Q}awq_marlin.py", f"{_Q}utils/marlin_utils.py", _K),
    ),
    # marlin.py: "Tile misalignment is fixed by zero-padding" unless has_g_idx; auto_awq.py
    # passes allow_tile_padding=True. The fused-MoE check stays strict
    # (check_moe_marlin_supports_layer(layer, group_size)). Read: 0.24.0.
    WNA16Facts(
        "vllm", (0, 24), (0, 25), _MARLIN_TYPES, _MARLIN_GROUPS, frozenset(),
        desc_act_refused=False, awq_bits=frozenset({4}),
        marlin_tiles=MarlinTiles.STRICT_WITH_ACT_ORDER, awq_tile_fallback=False,
        sources=(f"{_Q}auto_gptq.py", f"{_Q}auto_awq.py", f"{_Q}utils/marlin_utils.py", _K),
    ),
    # auto_gptq.py AutoGPTQConfig.get_quant_method: check_moe_marlin_supports_layer(...,
    # allow_tile_padding=not self.desc_act); the rest as 0.24. Read: 0.25.0, 0.26.0, 0.27.0,
    # 0.28.0, 0.29.0.
    WNA16Facts(
        "vllm", (0, 25), (0, 30), _MARLIN_TYPES, _MARLIN_GROUPS, frozenset(),
        desc_act_refused=False, awq_bits=frozenset({4}),
        marlin_tiles=MarlinTiles.STRICT_WITH_ACT_ORDER, awq_tile_fallback=False,
        moe_marlin_tiles=MarlinTiles.STRICT_WITH_ACT_ORDER,
        sources=(f"{_Q}auto_gptq.py", f"{_Q}auto_awq.py", f"{_Q}utils/marlin_utils.py", _K),
    ),
    # utils/gptq_utils.py: normalize_and_validate_gptq_desc_act refuses desc_act with a group
    # size ("no longer supported"), also through `dynamic`; base_config.py
    # QuantizationConfig.get_checkpoint_weight_mapper drops `.g_idx`; marlin.py always pads,
    # and auto_gptq.py passes allow_tile_padding=True to the MoE check. Read: 0.30.0, 0.31.0,
    # 0.32.0, 0.33.0.
    WNA16Facts(
        "vllm", (0, 30), INF_VERSION, _MARLIN_TYPES, _MARLIN_GROUPS, frozenset(),
        desc_act_refused=True, awq_bits=frozenset({4}), marlin_tiles=MarlinTiles.PADDED,
        awq_tile_fallback=False, moe_marlin_tiles=MarlinTiles.PADDED,
        sources=(f"{_Q}auto_gptq.py", f"{_Q}utils/gptq_utils.py", f"{_Q}base_config.py",
                 f"{_Q}auto_awq.py", f"{_Q}utils/marlin_utils.py", _K),
    ),
)


_SG = "python/sglang/srt/layers/quantization/"
#: SGLang, read in the 0.5.23 wheel only (earlier releases not read; the row covers SGLang's
#: profile range). Its GPTQ is vLLM 0.18–0.21's: ``gptq/gptq.py`` ``GPTQMarlinConfig`` when
#: ``is_gptq_marlin_compatible``, else ``GPTQConfig`` (2/3/4/8 bits); act order is built and
#: reads ``g_idx`` (emptied otherwise, ``gptq_kernels.py``); AWQ Marlin (``awq/awq.py``)
#: builds 4 and 8 bits, the non-Marlin ``AWQConfig`` 4 only. Differences from vLLM: the dense
#: Marlin kernel's tile check is ignored (``GPTQMarlinLinearKernel.process_weights_after_loading``
#: drops ``check_marlin_supports_shape``'s answer), and GPTQ routed experts always get
#: ``GPTQMarlinMoEMethod`` (no MoE WNA16 fallback; not modelled in qscale.constraints).
SGLANG: tuple[WNA16Facts, ...] = (
    WNA16Facts(
        "sglang", (0,), INF_VERSION, _MARLIN_TYPES, _MARLIN_GROUPS, frozenset({2, 3, 4, 8}),
        desc_act_refused=False, awq_bits=frozenset({4}), marlin_tiles=MarlinTiles.UNCHECKED,
        awq_tile_fallback=False, awq_marlin_bits=frozenset({4, 8}),
        moe_marlin_tiles=MarlinTiles.UNCHECKED,
        sources=(f"{_SG}gptq/gptq.py", f"{_SG}awq/awq.py", f"{_SG}marlin_utils.py",
                 "python/sglang/srt/hardware_backend/gpu/quantization/gptq_kernels.py"),
    ),
)
_BY_ENGINE = {"vllm": VLLM, "sglang": SGLANG}


def facts(engine: str, version: Version | None) -> WNA16Facts | None:
    """The row for a release (None: ``version`` is the newest); None for an engine without
    rows. Versions past the table use its last row, versions before it its first (QS010
    calls those checks partial)."""
    rows = _BY_ENGINE.get(engine)
    if rows is None:
        return None
    if version is None:
        return rows[-1]
    for row in rows:
        if row.low <= version < row.high:
            return row
    return rows[0] if version < rows[0].low else rows[-1]


@dataclass(frozen=True, slots=True)
class AutoRoundFacts:
    """What vLLM's ``INCConfig`` (``quant_method: auto-round``) builds over ``[low, high)``, on
    CUDA (CPU and XPU take other kernels; not modelled)."""

    low: Version
    high: Version
    bits: frozenset[int]  #: ``INCConfig.SUPPORTED_BITS``
    data_types: frozenset[str]  #: ``SUPPORTED_DTYPES`` (``mx_fp`` also as a substring)
    #: GPTQ-packed int layers outside Marlin fall back to ``GPTQConfig`` (2/3/4/8 bits)
    gptq_fallback: bool
    #: int bits built through the Humming kernels on CUDA (``CUDA_HUMMING_SUPPORTED_BITS``)
    humming_bits: frozenset[int]
    sources: tuple[str, ...]
    #: ``SUPPORTED_FORMATS`` (``packing_format``; anything else: "Unsupported packing_format")
    formats: frozenset[str] = frozenset({"auto_round:auto_gptq", "auto_round:auto_awq"})
    #: int data asserts a GPTQ / AWQ packing (``_validate_int_quantization``); before it, an
    #: int config with another accepted packing is built in a way not modelled
    int_packing_checked: bool = False
    #: ``fp`` / ``mx_fp`` configs are validated as :func:`qscale.formats.auto_round` models
    #: (``_validate_fp8_block_quantization`` / ``_validate_mxfp8_quantization``)
    float_validated: bool = False

    @property
    def range_label(self) -> str:
        """``vllm>=0.22.0,<0.27.0`` style."""
        lo = "vllm>=" + ".".join(map(str, self.low))
        if self.high == INF_VERSION:
            return lo
        return f"{lo},<{'.'.join(map(str, self.high))}"


#: ``SUPPORTED_BACKENDS``, the same in every release read (0.18.0, 0.20.0-0.33.0)
AUTO_ROUND_BACKENDS = frozenset({"auto", "gptq", "gptq:marlin", "awq", "awq:marlin", "marlin"})
_AR_INT = frozenset({"auto_round:auto_gptq", "auto_round:auto_awq"})
_AR_LLMC = _AR_INT | {"auto_round:llm_compressor"}


VLLM_AUTO_ROUND: tuple[AutoRoundFacts, ...] = (
    # inc.py apply_gptq_quant_layer: GPTQMarlinConfig, else GPTQConfig. Read: 0.18.0, 0.20.0,
    # 0.21.0.
    AutoRoundFacts((0, 18), (0, 22), frozenset({2, 3, 4, 8}), frozenset({"int"}), True,
                   frozenset(), (f"{_Q}inc.py",)),
    # inc.py (0.22, 0.23) / inc/schemes/inc_wna16_linear.py (0.24-0.26): Marlin or
    # NotImplementedError ("Only 4-bit and 8-bit symmetric quantization is supported with
    # Marlin kernels"). Read: 0.22.0, 0.23.0, 0.24.0, 0.25.0, 0.26.0.
    AutoRoundFacts((0, 22), (0, 27), frozenset({2, 3, 4, 8}), frozenset({"int"}), False,
                   frozenset(), (f"{_Q}inc.py", f"{_Q}inc/inc.py",
                                 f"{_Q}inc/schemes/inc_wna16_linear.py")),
    # inc/inc.py: SUPPORTED_DTYPES gains "mx_fp" (also as a substring, MXFP8 constants) and
    # SUPPORTED_FORMATS "auto_round:llm_compressor", without the field checks of 0.29 (not
    # modelled). Read: 0.27.0, 0.28.0.
    AutoRoundFacts((0, 27), (0, 29), frozenset({2, 3, 4, 8}), frozenset({"int", "mx_fp"}),
                   False, frozenset(), (f"{_Q}inc/inc.py", f"{_Q}inc/schemes/factory.py",
                                        f"{_Q}inc/schemes/inc_wna16_linear.py"),
                   formats=_AR_LLMC),
    # inc/inc.py SUPPORTED_DTYPES gains "fp" (FP8 block) and SUPPORTED_FORMATS
    # "auto_round:fp8"; _validate_int_quantization / _validate_fp8_block_quantization /
    # _validate_mxfp8_quantization assert each data type's fields. Read: 0.29.0.
    AutoRoundFacts((0, 29), (0, 30), frozenset({2, 3, 4, 8}), frozenset({"int", "mx_fp", "fp"}),
                   False, frozenset(), (f"{_Q}inc/inc.py", f"{_Q}inc/schemes/factory.py"),
                   formats=_AR_LLMC | {"auto_round:fp8"}, int_packing_checked=True,
                   float_validated=True),
    # SUPPORTED_BITS 2–8; inc_wna16_scheme.py sends bits 2/3/5/6/7 to the Humming kernels on
    # CUDA. Read: 0.30.0, 0.31.0, 0.32.0, 0.33.0.
    AutoRoundFacts((0, 30), INF_VERSION, frozenset(range(2, 9)),
                   frozenset({"int", "mx_fp", "fp"}), False, frozenset({2, 3, 5, 6, 7}),
                   (f"{_Q}inc/inc.py", f"{_Q}inc/schemes/inc_wna16_scheme.py",
                    f"{_Q}inc/schemes/inc_wna16_linear.py"),
                   formats=_AR_LLMC | {"auto_round:fp8"}, int_packing_checked=True,
                   float_validated=True),
)


def auto_round_facts(engine: str, version: Version | None) -> AutoRoundFacts | None:
    """The AutoRound row for a vLLM release (as :func:`facts`); None for other engines."""
    if engine != "vllm":
        return None
    rows = VLLM_AUTO_ROUND
    if version is None:
        return rows[-1]
    for row in rows:
        if row.low <= version < row.high:
            return row
    return rows[0] if version < rows[0].low else rows[-1]
