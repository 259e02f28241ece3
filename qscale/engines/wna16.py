"""What each engine release builds for GPTQ and AWQ (weight-only int, "WNA16") and for
AutoRound, as rows over release ranges.

vLLM's rows are built from the engine catalogue (``qscale/engines/data/vllm.json``,
``formats`` section): each field is one catalogued fact, read by the generator from every
release's wheel (``TYPE_MAP``, ``MARLIN_SUPPORTED_GROUP_SIZES``, the bits ``GPTQConfig`` /
``AWQConfig`` accept, ``INCConfig.SUPPORTED_*``, which validators exist) or, for the kernels'
tile handling (control flow, not constants), a hand-written entry citing the releases and
files it was read in (``extract.HAND_FORMAT_FACTS``). A row spans consecutive releases whose
facts agree. SGLang is not catalogued: its row is written here, read in its 0.5.23 wheel.

The formats (:mod:`qscale.formats.gptq`) ask :func:`facts` which configs the release refuses
at start-up; the layout rules (:mod:`qscale.constraints`) ask whether its dense Marlin kernel
checks thread tiles per partition.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from enum import Enum
from functools import cache
from typing import Any, TypeVar

from qscale.engines import catalogue, parse_version
from qscale.engines.profiles import INF_VERSION

Version = tuple[int, ...]
R = TypeVar("R")


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

#: ``allow_tile_padding`` as the GPTQ config passes it to the fused-MoE Marlin check (None:
#: not passed, the check's default False) -> how that check treats misaligned tiles
_PADDING = {None: MarlinTiles.STRICT, "not self.desc_act": MarlinTiles.STRICT_WITH_ACT_ORDER,
            "True": MarlinTiles.PADDED}

#: WNA16Facts field -> the catalogue fact it is read from (``data/vllm.json`` ``formats``,
#: generated from each release's wheel; ``extract.FORMAT_READERS`` / ``HAND_FORMAT_FACTS``
#: say where) and how the JSON value becomes the field's
_VLLM_FIELDS: dict[str, tuple[str, Callable[[Any], Any]]] = {
    "gptq_marlin_types": ("gptq.marlin_types",
                          lambda v: frozenset((int(b), bool(s)) for b, s in v)),
    "marlin_group_sizes": ("marlin.group_sizes", lambda v: tuple(int(x) for x in v)),
    "gptq_fallback_bits": ("gptq.fallback_bits", lambda v: frozenset(int(x) for x in v)),
    "desc_act_refused": ("gptq.desc_act_refused", bool),
    "awq_bits": ("awq.bits", lambda v: frozenset(int(x) for x in v)),
    "marlin_tiles": ("wna16.marlin_tiles", MarlinTiles),
    # a layer the AWQ Marlin shape check refuses falls back to the AWQ kernel; with
    # allow_tile_padding=True it refuses none
    "awq_tile_fallback": ("awq.tile_padding", lambda v: v != "True"),
    "awq_marlin_bits": ("awq.marlin_bits", lambda v: frozenset(int(x) for x in v)),
    "moe_marlin_tiles": ("gptq.moe_tile_padding", lambda v: _PADDING[v]),
}


def unknown_values(engine: str, version: Version | None) -> tuple[str, ...]:
    """The catalogued facts at the release that models ``version`` whose value these rows
    do not know (a new ``allow_tile_padding`` expression, say): that release's row is the
    one before it, so :func:`qscale.engines.unmodelled` calls a check there partial."""
    out = []
    for fields in (_VLLM_FIELDS, _AUTO_ROUND_FIELDS):
        for name, convert in fields.values():
            fact = catalogue.format_fact(engine, name, version)
            if fact is None:
                continue
            try:
                convert(fact.value)
            except (KeyError, TypeError, ValueError):
                out.append(name)
    return tuple(out)


def _rows(fields: Mapping[str, tuple[str, Callable[[Any], Any]]],
          make: Callable[[Version, Version, dict[str, Any], tuple[str, ...]], R]
          ) -> tuple[R, ...]:
    """One row per run of catalogued vLLM releases whose facts agree, ``[low, high)`` (the
    next run's first release; the last row open-ended), citing every file its facts were
    read from. A release some fact has no entry for, or a value :func:`unknown_values`
    names, is left to the row before it (and :func:`qscale.engines.unmodelled` calls a
    check at it partial)."""
    cat = catalogue.load("vllm")
    if cat is None:
        return ()
    runs: list[tuple[str, dict[str, Any], tuple[str, ...]]] = []
    for release in cat.releases:
        got = {f: catalogue.format_fact("vllm", name, parse_version(release))
               for f, (name, _) in fields.items()}
        try:
            values = {f: fields[f][1](g.value) for f, g in got.items() if g is not None}
        except (KeyError, TypeError, ValueError):  # a value this model does not know
            continue
        if len(values) < len(fields):
            continue
        sources = tuple(dict.fromkeys(g.source.split(":")[0] for g in got.values()
                                      if g is not None))
        if runs and runs[-1][1] == values:  # one row while the behaviour holds
            runs[-1] = (runs[-1][0], values, tuple(dict.fromkeys(runs[-1][2] + sources)))
        else:
            runs.append((release, values, sources))
    lows = [_threshold(r) for r, _, _ in runs]
    return tuple(make(low, high, values, sources) for low, high, (_, values, sources)
                 in zip(lows, [*lows[1:], INF_VERSION], runs, strict=True))


def _threshold(release: str) -> Version:
    """``0.22.0`` -> ``(0, 22)``: how the hand-written rows named their bounds."""
    v = list(parse_version(release))
    while len(v) > 2 and v[-1] == 0:
        v.pop()
    return tuple(v)


@cache
def _vllm_rows() -> tuple[WNA16Facts, ...]:
    return _rows(_VLLM_FIELDS, lambda lo, hi, v, src: WNA16Facts("vllm", lo, hi, sources=src, **v))


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
_BY_ENGINE: dict[str, Callable[[], tuple[WNA16Facts, ...]]] = {
    "vllm": _vllm_rows, "sglang": lambda: SGLANG}


def facts(engine: str, version: Version | None) -> WNA16Facts | None:
    """The row for a release (None: ``version`` is the newest); None for an engine without
    rows. Versions past the table use its last row, versions before it its first (QS010
    calls those checks partial)."""
    table = _BY_ENGINE.get(engine)
    if table is None:
        return None
    rows = table()
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


_AUTO_ROUND_FIELDS: dict[str, tuple[str, Callable[[Any], Any]]] = {
    "bits": ("auto_round.bits", lambda v: frozenset(int(x) for x in v)),
    "data_types": ("auto_round.data_types", frozenset),
    "gptq_fallback": ("auto_round.gptq_fallback", bool),
    "humming_bits": ("auto_round.humming_bits", lambda v: frozenset(int(x) for x in v)),
    "formats": ("auto_round.formats", frozenset),
    "int_packing_checked": ("auto_round.int_packing_checked", bool),
    "float_validated": ("auto_round.float_validated", bool),
}


@cache
def _auto_round_rows() -> tuple[AutoRoundFacts, ...]:
    return _rows(_AUTO_ROUND_FIELDS,
                 lambda lo, hi, v, src: AutoRoundFacts(lo, hi, sources=src, **v))


@cache
def _auto_round_backends() -> frozenset[str]:
    """``INCConfig.SUPPORTED_BACKENDS`` of the newest release (the same in every release
    catalogued: tests/test_catalogue_formats.py)."""
    fact = catalogue.format_fact("vllm", "auto_round.backends", None)
    return frozenset(fact.value) if fact is not None else frozenset()


def __getattr__(name: str) -> Any:
    """``VLLM``, ``VLLM_AUTO_ROUND`` and ``AUTO_ROUND_BACKENDS``: built from the catalogue
    when first asked for (the data file is not read at import)."""
    built = {"VLLM": _vllm_rows, "VLLM_AUTO_ROUND": _auto_round_rows,
             "AUTO_ROUND_BACKENDS": _auto_round_backends}.get(name)
    if built is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return built()


def auto_round_facts(engine: str, version: Version | None) -> AutoRoundFacts | None:
    """The AutoRound row for a vLLM release (as :func:`facts`); None for other engines."""
    if engine != "vllm":
        return None
    rows = _auto_round_rows()
    if version is None:
        return rows[-1]
    for row in rows:
        if row.low <= version < row.high:
            return row
    return rows[0] if version < rows[0].low else rows[-1]
