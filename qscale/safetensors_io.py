"""Parse safetensors headers strictly, and decode small tensors without torch.

The safetensors layout is: 8 bytes little-endian header length ``N``, ``N`` bytes of JSON
(``{name: {"dtype", "shape", "data_offsets": [begin, end]}, "__metadata__": {...}}``), then the
data buffer. Offsets are relative to the start of the buffer. This module checks every rule of
that layout and says precisely which one a file breaks, which the safetensors library itself
does only in generic terms. Headers in the compact layout writers emit are cut into columns by
:mod:`qscale.safetensors_scan`; any other header, valid or not, goes through ``json.loads``.
Values are decoded with numpy; torch is never imported here.
"""

from __future__ import annotations

import json
import math
import re
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from itertools import chain, repeat
from operator import add, itemgetter, mul, sub
from typing import Any, BinaryIO, NamedTuple

import numpy as np

from qscale._gc import gc_paused
from qscale.errors import HeaderError
from qscale.safetensors_scan import HeaderScan, scan_header

#: Largest header the format allows (the reference implementation refuses more than 100 MB).
MAX_HEADER_BYTES = 100_000_000


class DType(NamedTuple):
    """A safetensors dtype: its name, size in bits, and whether its values are floats."""

    name: str
    bits: int
    is_float: bool


DTYPES: Mapping[str, DType] = {
    d.name: d
    for d in (
        DType("BOOL", 8, False),
        DType("U8", 8, False),
        DType("I8", 8, False),
        DType("U16", 16, False),
        DType("I16", 16, False),
        DType("U32", 32, False),
        DType("I32", 32, False),
        DType("U64", 64, False),
        DType("I64", 64, False),
        DType("F16", 16, True),
        DType("BF16", 16, True),
        DType("F32", 32, True),
        DType("F64", 64, True),
        DType("F8_E4M3", 8, True),
        DType("F8_E5M2", 8, True),
        DType("F8_E8M0", 8, True),
        DType("F4", 4, True),
        DType("F6_E2M3", 6, True),
        DType("F6_E3M2", 6, True),
    )
}

_BITS: dict[str, int] = {name: d.bits for name, d in DTYPES.items()}
#: Bytes per element of the dtypes that fill whole bytes (all but F4 and F6).
_WHOLE_BYTES: dict[str, int] = {n: b >> 3 for n, b in _BITS.items() if b % 8 == 0}


class TensorInfo(NamedTuple):
    """One tensor as a header describes it (a NamedTuple: checkpoints hold 10^5 of these)."""

    name: str
    dtype: str  #: safetensors code, e.g. "F8_E4M3"
    shape: tuple[int, ...]
    file: str  #: file name relative to the checkpoint folder
    begin: int  #: absolute byte offset in the file
    end: int  #: absolute end offset (exclusive)

    @property
    def numel(self) -> int:
        """Number of elements."""
        return math.prod(self.shape)

    @property
    def nbytes(self) -> int:
        """Bytes of data."""
        return self.end - self.begin


@dataclass(frozen=True, slots=True)
class FileHeader:
    """The parsed header of one safetensors file."""

    file: str
    size: int
    data_start: int  #: absolute offset of the data buffer (8 + header length)
    tensors: tuple[TensorInfo, ...]
    metadata: Mapping[str, str]


def _fail(file: str, problem: str, code: str) -> HeaderError:
    return HeaderError(f"{file}: {problem}", code=code)


def parse_header(raw: bytes, *, file: str, file_size: int) -> FileHeader:
    """Parse and validate a header; ``raw`` holds at least the first ``8 + N`` bytes.

    Raises:
        HeaderError: with the code of the rule the file breaks (QS001–QS004).
    """
    if file_size < 8 or len(raw) < 8:
        raise _fail(file, f"file is {file_size} bytes, too short for a safetensors header", "QS001")
    n = int.from_bytes(raw[:8], "little")
    _check_length(file, n, file_size, raw[:_LFS_PROBE])
    return _parse_body(raw[8 : 8 + n], 8 + n, file=file, file_size=file_size)


#: How a Git LFS pointer file begins (https://github.com/git-lfs/git-lfs/blob/main/docs/spec.md).
LFS_POINTER = b"version https://git-lfs.github.com/spec/v1"
_LFS_PROBE = len(LFS_POINTER)


def _check_length(file: str, n: int, file_size: int, head: bytes) -> None:
    """The header length field ``n`` (``head``: the file's first bytes) fits the file and
    the cap."""
    if head.startswith(LFS_POINTER):
        raise HeaderError(
            f"{file}: is a Git LFS pointer, not the file",
            hint="run `git lfs pull` in the clone (or download the file itself)",
            code="QS001",
        )
    if n > MAX_HEADER_BYTES:
        raise _fail(
            file,
            f"header length {n} exceeds qscale's cap of {MAX_HEADER_BYTES} bytes (the"
            " safetensors library's limit)",
            "QS001",
        )
    if 8 + n > file_size:
        raise _fail(
            file,
            f"header length {n} exceeds the file size of {file_size} bytes (truncated?)",
            "QS001",
        )


def _parse_body(body: bytes, data_start: int, *, file: str, file_size: int) -> FileHeader:
    """Parse the header JSON ``body``; its length field was checked, and says the data buffer
    starts at ``data_start``."""
    with gc_paused():  # ~5 container objects per tensor, none in a reference cycle
        scan = scan_header(body, _BITS)  # the usual compact layout, without json.loads
        tensors: Sequence[TensorInfo] | None = None
        if scan is not None:
            tensors = _parse_scan(file, scan, data_start, file_size)
        if scan is not None and tensors is not None:
            metadata = scan.metadata
        else:
            metadata, tensors = _parse_json(body, data_start, file=file, file_size=file_size)
    return FileHeader(file, file_size, data_start, tuple(tensors), metadata)


#: Deepest JSON nesting the safetensors library parses (serde_json's recursion limit: a
#: header object nested 128 deep is refused, 127 is read; safetensors 0.8 ``safe_open``).
MAX_JSON_DEPTH = 127
_ENTRY_KEYS = frozenset(("dtype", "shape", "data_offsets"))
_LONE_SURROGATE = re.compile(r"\\u[dD][89a-fA-F]")  # any surrogate escape, paired or not
_U64 = 2**64


def _strict_int(text: str) -> int | float:
    """``-0`` is a float to serde_json (so the library refuses it as a size), an int to Python."""
    return -0.0 if text == "-0" else int(text)


def _no_constant(name: str) -> None:
    raise ValueError(f"{name} is not JSON")


def _load_json(file: str, body: bytes) -> Any:
    """``json.loads`` held to what the safetensors library (serde_json) accepts: UTF-8 with no
    BOM, no NaN/Infinity, no lone surrogate, nesting at most :data:`MAX_JSON_DEPTH`, and no
    key of a tensor entry or ``__metadata__`` given twice."""
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise _fail(
            file, f"header is not valid JSON (not UTF-8: {exc.reason} at byte {exc.start})",
            "QS001",
        ) from None
    # each entry holds each key once, so more mentions than entries may mean a repeated key
    counts = [text.count(f'"{k}"') for k in _ENTRY_KEYS]
    dups: dict[int, set[str]] = {}
    pinned: list[dict[str, Any]] = []  # keeps each id in ``dups`` from naming a later object

    def pairs(items: list[tuple[str, Any]]) -> dict[str, Any]:
        obj = dict(items)
        if len(obj) != len(items):
            dups[id(obj)] = {k for k, n in Counter(k for k, _ in items).items() if n > 1}
            pinned.append(obj)
        return obj

    try:
        obj = json.loads(text, parse_int=_strict_int if "-0" in text else None,
                         parse_constant=_no_constant)  # fmt: skip
        if isinstance(obj, dict) and (
            text.count('"__metadata__"') > 1
            or any(c > len(obj) - ("__metadata__" in obj) for c in counts)
        ):
            obj = json.loads(text, parse_int=_strict_int if "-0" in text else None,
                             parse_constant=_no_constant, object_pairs_hook=pairs)  # fmt: skip
    except RecursionError:
        raise _fail(file, "header JSON is nested too deeply", "QS001") from None
    except ValueError as exc:
        raise _fail(file, f"header is not valid JSON ({exc})", "QS001") from None
    if not isinstance(obj, dict):
        raise _fail(file, "header is not a JSON object", "QS001")
    _check_repeats(file, obj, dups)
    if _LONE_SURROGATE.search(text):
        try:
            json.dumps(obj, ensure_ascii=False).encode("utf-8")
        except UnicodeEncodeError:
            raise _fail(file, "header holds a lone UTF-16 surrogate (\\udXXX)", "QS001") from None
    return obj


def _check_repeats(file: str, obj: dict[str, Any], dups: Mapping[int, set[str]]) -> None:
    """serde_json refuses a repeated field of a struct (``__metadata__``, a tensor's dtype,
    shape, data_offsets); a repeated tensor name or unknown key keeps the last, as Python."""
    if "__metadata__" in dups.get(id(obj), ()):
        raise _fail(file, "header gives `__metadata__` twice", "QS001")
    for name, entry in obj.items():
        twice = dups.get(id(entry), set()) & _ENTRY_KEYS
        if twice:
            raise _fail(file, f"tensor `{name}` gives `{min(twice)}` twice", "QS001")


def _depth(value: Any) -> int:
    """How deep JSON lists and objects nest in ``value`` (0 for a scalar)."""
    deepest, level = 0, [(value, 1)]
    while level:
        v, d = level.pop()
        items = v.values() if isinstance(v, dict) else v if isinstance(v, list) else None
        if items is not None:
            deepest = max(deepest, d)
            level.extend((x, d + 1) for x in items)
    return deepest


def _check_entries(file: str, obj: dict[str, Any]) -> None:
    """Keys the library ignores may hold anything but JSON nested past its limit."""
    for name, entry in obj.items():
        if isinstance(entry, dict) and len(entry) != len(_ENTRY_KEYS & entry.keys()):
            extra = [v for k, v in entry.items() if k not in _ENTRY_KEYS]
            if 2 + max(map(_depth, extra)) > MAX_JSON_DEPTH:
                raise _fail(file, f"tensor `{name}`: JSON nested too deeply", "QS001")


def _parse_json(
    body: bytes, data_start: int, *, file: str, file_size: int
) -> tuple[dict[str, Any], list[TensorInfo]]:
    """Any valid header, with ``json.loads``; the error of an invalid one."""
    obj = _load_json(file, body)
    metadata = obj.pop("__metadata__", None)
    if metadata is None:
        metadata = {}
    if not isinstance(metadata, dict):
        raise _fail(file, "`__metadata__` is not an object", "QS001")
    for key, value in metadata.items():
        if not isinstance(value, str):
            raise _fail(file, f"`__metadata__` value of `{key}` is not a string", "QS001")
    _check_entries(file, obj)
    tensors = _parse_fast(file, obj, data_start, file_size)
    if tensors is None:  # something is off: the per-tensor path says precisely what
        tensors = [_parse_entry(file, name, entry, data_start) for name, entry in obj.items()]
        _check_layout(file, tensors, data_start, file_size)
    return metadata, tensors


def _parse_scan(
    file: str, scan: HeaderScan, data_start: int, size: int
) -> tuple[TensorInfo, ...] | None:
    """The tensors of a scanned header that passes every check of :func:`_parse_entry` and
    :func:`_check_layout` (the same predicates, on whole columns), else None."""
    begins, ends = scan.begins, scan.ends
    if not np.array_equal(ends - begins, scan.needed):  # QS003
        return None
    if _tiles_array(begins, ends, size - data_start):  # QS002, in header order
        # each tensor begins where the one before it ends: both share one int object
        bounds = (np.append(begins, ends[-1:]) + data_start).tolist()
        starts, stops = bounds[:-1], bounds[1:]
    else:
        order = np.lexsort((ends, begins))
        if not _tiles_array(begins[order], ends[order], size - data_start):
            return None
        starts, stops = (begins + data_start).tolist(), (ends + data_start).tolist()
    fields = zip(
        scan.names,
        scan.dtypes,
        scan.shapes,
        repeat(file),
        starts,
        stops,
        strict=False,  # repeat(file) is endless; the other columns have one item per tensor
    )
    return tuple(map(tuple.__new__, repeat(TensorInfo), fields))


def _tiles_array(begins: np.ndarray, ends: np.ndarray, size: int) -> bool:
    """Whether consecutive [begin, end) spans, in this order, cover [0, size)."""
    return int(begins[0]) == 0 and int(ends[-1]) == size and np.array_equal(begins[1:], ends[:-1])


_get_dtype = itemgetter("dtype")
_get_shape = itemgetter("shape")
_get_offsets = itemgetter("data_offsets")
_INT: frozenset[type] = frozenset((int,))
_LIST: frozenset[type] = frozenset((list,))
_TWO: frozenset[int] = frozenset((2,))


def _parse_fast(
    file: str, obj: dict[str, Any], data_start: int, size: int
) -> list[TensorInfo] | None:
    """All of :func:`_parse_entry` and :func:`_check_layout`, column by column in C loops.

    Returns the tensors of a header that passes every check, else None; the caller then runs
    the per-tensor checks, which raise the first error in header order. Each check here is the
    same predicate as there, so a header accepted here is accepted there, with equal
    ``TensorInfo``s, and a header refused here gets the per-tensor path and its exact error.
    """
    entries = obj.values()
    try:
        dtypes = list(map(_get_dtype, entries))
        raw_shapes = list(map(_get_shape, entries))
        if not set(map(type, raw_shapes)) <= _LIST:
            return None
        shapes = list(map(tuple, raw_shapes))
        offsets = list(map(_get_offsets, entries))
        # data_offsets: JSON lists of two ints; shape: ints >= 0 (type() refuses bool).
        if not (set(map(type, offsets)) <= _LIST and set(map(len, offsets)) <= _TWO):
            return None
        flat = list(chain.from_iterable(offsets))
        if not (
            set(map(type, flat)) <= _INT
            and set(map(type, chain.from_iterable(shapes))) <= _INT
            and min(chain.from_iterable(shapes), default=0) >= 0
            and max(chain.from_iterable(shapes), default=0) < _U64
            and max(flat, default=0) < _U64
        ):
            return None
        kinds = set(dtypes)  # TypeError: unhashable dtype
    except (TypeError, KeyError, ValueError):
        return None
    # QS004: known dtypes; QS003: bytes held == bytes the dtype and shape need.
    if kinds <= _WHOLE_BYTES.keys():
        needed = list(map(mul, map(math.prod, shapes), map(_WHOLE_BYTES.__getitem__, dtypes)))
    elif kinds <= _BITS.keys():
        needed = [
            (n * _BITS[d] + 7) >> 3 for n, d in zip(map(math.prod, shapes), dtypes, strict=True)
        ]
    else:
        return None
    begins, ends = flat[0::2], flat[1::2]
    if needed != list(map(sub, ends, begins)):
        return None
    begins = list(map(add, begins, repeat(data_start)))
    ends = list(map(add, ends, repeat(data_start)))
    # QS002: the spans tile [data_start, size). Writers list tensors in offset order, so try
    # that order first, else sort the (begin, end) pairs as _check_layout does. Sizes are >= 0
    # (checked above), so a tiling chain also keeps every end <= size.
    if not _tiles(begins, ends, data_start, size):
        pairs = sorted(zip(begins, ends, strict=True))
        if not _tiles([p[0] for p in pairs], [p[1] for p in pairs], data_start, size):
            return None
    fields = zip(obj, dtypes, shapes, repeat(file), begins, ends)
    return list(map(tuple.__new__, repeat(TensorInfo), fields))


def _tiles(begins: list[int], ends: list[int], data_start: int, size: int) -> bool:
    """Whether consecutive [begin, end) spans, in this order, cover [data_start, size)."""
    if not begins:
        return data_start == size
    return begins[0] == data_start and ends[-1] == size and begins[1:] == ends[:-1]


def _parse_entry(file: str, name: str, entry: Any, data_start: int) -> TensorInfo:
    try:
        dtype = entry["dtype"]
        shape = tuple(entry["shape"])
        begin, end = entry["data_offsets"]
        if type(entry["shape"]) is not list or type(entry["data_offsets"]) is not list:
            raise TypeError
    except (TypeError, KeyError, ValueError):
        raise _fail(file, f"tensor `{name}` has a malformed header entry", "QS001") from None
    if (
        not all(type(d) is int and 0 <= d < _U64 for d in shape)
        or type(begin) is not int
        or (type(end) is not int)
        or begin >= _U64
        or end >= _U64
    ):
        raise _fail(file, f"tensor `{name}` has a non-integer shape or offset", "QS001")
    dt = DTYPES.get(dtype) if isinstance(dtype, str) else None
    if dt is None:
        raise _fail(file, f"tensor `{name}` has unknown dtype {dtype!r}", "QS004")
    expected = (math.prod(shape) * dt.bits + 7) // 8
    if end - begin != expected:
        raise _fail(
            file,
            f"tensor `{name}` holds {end - begin} bytes but {dtype}{list(shape)} needs {expected}",
            "QS003",
        )
    return TensorInfo(name, dtype, shape, file, data_start + begin, data_start + end)


def _check_layout(file: str, tensors: list[TensorInfo], data_start: int, size: int) -> None:
    """Offsets must tile the data buffer exactly: in bounds, no gap, no overlap."""
    pos = data_start
    for t in sorted(tensors, key=lambda t: (t.begin, t.end)):
        if t.begin < pos:
            raise _fail(file, f"tensor `{t.name}` overlaps the tensor before it", "QS002")
        if t.begin > pos:
            raise _fail(
                file,
                f"{t.begin - pos} unclaimed bytes before tensor `{t.name}` (offset gap)",
                "QS002",
            )
        if t.end > size:
            raise _fail(
                file,
                f"tensor `{t.name}` ends at byte {t.end}, past the end of the file ({size} bytes;"
                " truncated?)",
                "QS002",
            )
        pos = t.end
    if pos != size:
        raise _fail(file, f"{size - pos} bytes after the last tensor are claimed by none", "QS002")


def read_header(fh: BinaryIO, *, file: str, file_size: int) -> FileHeader:
    """Read and parse the header from an open file positioned anywhere."""
    fh.seek(0)
    head = fh.read(8)
    if len(head) < 8:
        return parse_header(head, file=file, file_size=file_size)
    n = int.from_bytes(head, "little")
    if head == LFS_POINTER[:8]:
        head += fh.read(_LFS_PROBE - 8)
        fh.seek(8)
    _check_length(file, n, file_size, head)
    body = fh.read(n)
    if len(body) != n:
        raise _fail(file, f"header is cut short at {8 + len(body)} bytes (truncated?)", "QS001")
    return _parse_body(body, 8 + n, file=file, file_size=file_size)


# --------------------------------------------------------------------------- values

_NUMPY = {
    "BOOL": np.bool_,
    "U8": np.uint8,
    "I8": np.int8,
    "U16": np.uint16,
    "I16": np.int16,
    "U32": np.uint32,
    "I32": np.int32,
    "U64": np.uint64,
    "I64": np.int64,
    "F16": np.float16,
    "F32": np.float32,
    "F64": np.float64,
}


#: The little-endian numpy dtypes of ``_NUMPY``, built once (``decode`` runs per tensor).
_NUMPY_LE: dict[str, np.dtype[Any]] = {k: np.dtype(v).newbyteorder("<") for k, v in _NUMPY.items()}


def _e4m3fn_table() -> np.ndarray:
    out = np.empty(256, dtype=np.float64)
    for b in range(256):
        sign = -1.0 if b & 0x80 else 1.0
        exp, man = (b >> 3) & 0xF, b & 0x7
        if exp == 0xF and man == 0x7:
            out[b] = np.nan
        elif exp == 0:
            out[b] = sign * (man / 8) * 2.0**-6
        else:
            out[b] = sign * (1 + man / 8) * 2.0 ** (exp - 7)
    return out


_E4M3 = _e4m3fn_table()


#: The most dimensions a numpy array holds (``numpy.ndarray``: 64 since numpy 2.0).
MAX_DIMS = 64


def decode(dtype: str, shape: tuple[int, ...], raw: bytes) -> np.ndarray:
    """Decode raw little-endian bytes into a float64 (or integer) numpy array.

    BF16, FP8 (E4M3FN, E5M2) and E8M0 are widened to float64; integers keep their type.
    E8M0 values are the exponent bytes (bias 127); 0xFF is NaN, as in the OCP MX spec.

    Raises:
        HeaderError: ``shape`` has more dimensions than numpy holds (QS001).
    """
    if len(shape) > MAX_DIMS:
        raise HeaderError(
            f"tensor shape has {len(shape)} dimensions; qscale decodes at most {MAX_DIMS}",
            hint="no quantized weight or scale has that many dimensions: re-export the file",
            code="QS001",
        )
    le = _NUMPY_LE.get(dtype)
    if le is not None:
        arr = np.frombuffer(raw, dtype=le).reshape(shape)
        if arr.dtype.kind != "f":
            return arr
        with np.errstate(invalid="ignore"):  # NaN payloads widen to NaN, quietly
            return arr.astype(np.float64)
    b = np.frombuffer(raw, dtype=np.uint8)
    if dtype == "BF16":
        u16 = np.frombuffer(raw, dtype="<u2").astype(np.uint32) << 16
        with np.errstate(invalid="ignore"):  # NaN payloads widen to NaN, quietly
            return u16.view(np.float32).astype(np.float64).reshape(shape)
    if dtype == "F8_E4M3":
        return _E4M3[b].reshape(shape)
    if dtype == "F8_E5M2":
        as_f16 = (b.astype(np.uint16) << 8).view(np.float16)
        return as_f16.astype(np.float64).reshape(shape)
    if dtype == "F8_E8M0":
        vals = np.ldexp(1.0, b.astype(np.int32) - 127)
        vals[b == 0xFF] = np.nan
        return vals.reshape(shape)
    raise HeaderError(f"cannot decode values of dtype {dtype}", code="QS004")


def read_tensors(fh: BinaryIO, tensors: Iterable[TensorInfo]) -> dict[str, np.ndarray]:
    """Read and decode several tensors of one open file, in file order."""
    out: dict[str, np.ndarray] = {}
    for t in sorted(tensors, key=lambda t: t.begin):
        fh.seek(t.begin)
        raw = fh.read(t.nbytes)
        if len(raw) != t.nbytes:
            raise HeaderError(
                f"{t.file}: tensor `{t.name}` is cut short (truncated file)", code="QS002"
            )
        try:
            out[t.name] = decode(t.dtype, t.shape, raw)
        except HeaderError as exc:
            raise HeaderError(f"{t.file}: `{t.name}`: {exc.message}", hint=exc.hint,
                              code=exc.code) from None  # fmt: skip
    return out
