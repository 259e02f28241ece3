"""Scan safetensors headers in the compact layout writers emit, without json.loads.

``json.loads`` builds a dict, two lists and several ints per tensor, only for qscale to take
them apart again; on a 190k-tensor checkpoint that costs more than everything else in a read.
Writers (the safetensors library and every tool built on it) emit one compact layout, so the
header can be cut into columns with a few whole-array numpy operations instead.

A scan accepts only text it can prove means what ``json.loads`` would return, and returns None
for anything else: escapes, non-ASCII text, control characters, whitespace, another key order,
duplicate names. The caller then takes the ``json.loads`` path, which accepts every valid
header and names the precise fault of an invalid one. A scan never raises for bad input.

The shard index (``model.safetensors.index.json``: 21 MB and 189k entries for the largest
checkpoints) is matched the same way: :func:`scan_index` locates its ``weight_map`` and
:func:`index_lists_runs` compares it with the names the headers hold, joined into a few long
strings. They accept only an index whose ``json.loads`` result they can prove, and return
None or False otherwise, so that the caller takes the ``json.loads`` path.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping, Sequence
from functools import lru_cache
from typing import Any, NamedTuple

import numpy as np

#: An entry is ``"NAME":{"dtype":"D","shape":[S],"data_offsets":[B,E]}``: ten quotes. The
#: fixed text after quotes 1, 5 and 8, read as little-endian 8-byte words at these offsets.
_FIXED = (
    (1, b'":{"dtype":"', (0, 4)),
    (5, b'","shape":[', (0, 3)),
    (8, b'"data_offsets":[', (0, 8)),
)
_WORD_QUOTES = np.array([c for c, _, ats in _FIXED for _ in ats])
_WORD_OFFSETS = np.array([a for _, _, ats in _FIXED for a in ats])
_WORDS = np.array(
    [int.from_bytes(text[a : a + 8], "little") for _, text, ats in _FIXED for a in ats], np.uint64
)
_DTYPE_AT, _SHAPE_AT, _OFFSETS_AT = 1, 11, 16  #: from quotes 4, 5 and 8 to the text after them
_MAX_DTYPE, _MAX_SHAPE = 8, 32  #: longer texts take the json.loads path
_MAX_DIGITS = 18  #: every 18-digit decimal fits an int64
#: _MASKS[k] keeps the first k bytes of a word; _SHAPE_MASKS[k] the first k of four words.
_MASKS = np.array([(1 << 8 * k) - 1 for k in range(8)] + [2**64 - 1], np.uint64)
_SHAPE_MASKS = _MASKS[np.clip(np.arange(_MAX_SHAPE + 1)[:, None] - [0, 8, 16, 24], 0, 8)]
_SHAPE_WORDS = np.array([0, 8, 16, 24])
_HASH = np.array([0x9E3779B97F4A7C15, 0xC2B2AE3D27D4EB4F, 0x165667B19E3779F9,
                  0xD6E8FEB86659FD93, 0xFF51AFD7ED558CCD], np.uint64)  # fmt: skip
_DIGITS_ONLY = bytes(c if 0x30 <= c <= 0x39 else 0x20 for c in range(256))
_SPACE, _QUOTE, _COMMA, _CLOSE_LIST, _CLOSE_OBJECT = 0x20, 0x22, 0x2C, 0x5D, 0x7D
#: after the shape `],`; after the offsets `]}` then `,` (or `}` closing the header)
_ENDINGS = np.array([_CLOSE_LIST, _COMMA, _CLOSE_LIST, _CLOSE_OBJECT, _COMMA], np.uint8)


class HeaderScan(NamedTuple):
    """The columns of a header in the compact layout, in header order."""

    metadata: dict[str, Any]
    names: list[str]
    dtypes: list[str]
    shapes: list[tuple[int, ...]]
    needed: np.ndarray  #: int64: the bytes each dtype and shape need
    begins: np.ndarray  #: int64: data_offsets as written, relative to the data buffer
    ends: np.ndarray


def scan_header(body: bytes, bits: Mapping[str, int]) -> HeaderScan | None:
    """Cut a compact header into columns, or None if it is not in the compact layout.

    The layout is ``{"__metadata__":{...},"NAME":{"dtype":"D","shape":[..],"data_offsets":
    [B,E]},...}`` then spaces: ASCII, no whitespace, no escape, tensors in any order,
    ``__metadata__`` optional but first. ``bits`` gives the size of each known dtype.

    With no backslash in the text every ``"`` delimits a string, so each tensor has ten
    quotes; the fixed text between them is compared as 8-byte words, the dtype and shape
    texts are parsed once per distinct pair, and the offsets with one C parse per file.
    """
    first = _metadata(body)
    if first is None or not body.isascii() or b"\\" in body or len(body) < 64:
        return None  # escapes and non-ASCII names need json.loads
    u = np.frombuffer(body, np.uint8)
    if u.min() < _SPACE:  # a control character is invalid in JSON strings
        return None
    metadata, start = first
    quotes = np.flatnonzero(u == _QUOTE)
    quotes = quotes[np.searchsorted(quotes, start) :]
    n, rest = divmod(len(quotes), 10)
    end = body.rfind(b"}") + 1  # then only the spaces that pad the header
    if rest or not n or quotes[0] != start or body.count(b" ", end) != len(body) - end:
        return None
    q = quotes.reshape(n, 10)
    words = np.ndarray((len(u) - 7,), "<u8", body, 0, (1,))  # words[i]: bytes i..i+7
    try:
        tails = _check_layout(u, words, q, end)
    except IndexError:  # a quote too near the end of the header for its fixed text
        return None
    specs = None if tails is None else _scan_specs(body, words, q, bits)
    offsets = None if tails is None else _scan_offsets(u, q[:, 8] + _OFFSETS_AT, tails)
    if specs is None or offsets is None:
        return None
    text = body.decode("ascii")
    names = list(map(text.__getitem__, map(slice, (q[:, 0] + 1).tolist(), q[:, 1].tolist())))
    unique = set(names)
    if len(unique) != n or "__metadata__" in unique:  # json.loads keeps the last duplicate
        return None
    return HeaderScan(metadata, names, *specs, offsets[0::2], offsets[1::2])


def _metadata(body: bytes) -> tuple[dict[str, Any], int] | None:
    """The metadata, and the offset of the quote opening the first tensor name."""
    if not body.startswith(b'{"__metadata__":'):
        return ({}, 1) if body.startswith(b'{"') else None
    end = body.find(b'},"', 16)
    try:  # a `},"` inside a string or a nested object leaves text json.loads refuses
        metadata = json.loads(body[16 : end + 1]) if end > 0 else None
    except (ValueError, RecursionError):
        return None
    if type(metadata) is not dict or not set(map(type, metadata.values())) <= {str}:
        return None  # the safetensors library refuses non-string values: json.loads path
    return metadata, end + 2


def _check_layout(u: np.ndarray, words: np.ndarray, q: np.ndarray, end: int) -> np.ndarray | None:
    """The offset of the ``]`` after each tensor's data_offsets, if the fixed text is in place.

    The fixed text holds quotes exactly where ``q`` has them, so column c of ``q`` is quote c
    of every entry, and the text between them is as :data:`_FIXED` says.
    """
    if not np.all(words[q[:, _WORD_QUOTES] + _WORD_OFFSETS] == _WORDS):
        return None
    tails = np.append(q[1:, 0], end) - 3
    shape_ends = q[:, 8] - 2
    at = np.stack((shape_ends, shape_ends + 1, tails, tails + 1, tails + 2), axis=1)
    expected = np.tile(_ENDINGS, (len(q), 1))
    expected[-1, -1] = _CLOSE_OBJECT  # the last entry closes the header
    return tails if np.array_equal(u[at], expected) else None


def _scan_specs(
    body: bytes, words: np.ndarray, q: np.ndarray, bits: Mapping[str, int]
) -> tuple[list[str], list[tuple[int, ...]], np.ndarray] | None:
    """Per tensor: dtype, shape, bytes needed; each distinct (dtype, shape text) parsed once."""
    dtype_at, shape_at = q[:, 4] + _DTYPE_AT, q[:, 5] + _SHAPE_AT
    dtype_len, shape_len = q[:, 5] - dtype_at, q[:, 8] - 2 - shape_at
    if dtype_len.min() < 1 or dtype_len.max() > _MAX_DTYPE or shape_len.max() > _MAX_SHAPE:
        return None
    key = np.empty((len(q), 5), np.uint64)  # dtype text, then shape text, zero-padded
    key[:, 0] = words[dtype_at] & _MASKS[dtype_len]
    shape_words = np.minimum(shape_at[:, None] + _SHAPE_WORDS, len(words) - 1)
    key[:, 1:] = words[shape_words] & _SHAPE_MASKS[shape_len]
    _, first, inverse = np.unique((key * _HASH).sum(axis=1), return_index=True, return_inverse=True)
    inverse = inverse.ravel()
    if not np.array_equal(key, key[first[inverse]]):  # a hash collision: not worth handling
        return None
    dtypes, shapes, needed = [], [], []
    for i in first.tolist():
        dtype_text = body[dtype_at[i] : dtype_at[i] + dtype_len[i]]
        spec = _spec(dtype_text, body[shape_at[i] - 1 : shape_at[i] + shape_len[i] + 1])
        if spec is None or spec[0] not in bits:
            return None
        size = (math.prod(spec[1]) * bits[spec[0]] + 7) >> 3
        if size >= 2**62:
            return None
        dtypes.append(spec[0])
        shapes.append(spec[1])
        needed.append(size)
    # one object per distinct spec, picked for every tensor by numpy's C loop
    distinct = np.empty((2, len(dtypes)), object)
    for i, (dtype, shape) in enumerate(zip(dtypes, shapes, strict=True)):
        distinct[0, i], distinct[1, i] = dtype, shape
    picked = distinct[:, inverse]
    return picked[0].tolist(), picked[1].tolist(), np.array(needed, np.int64)[inverse]


@lru_cache(maxsize=4096)
def _spec(dtype_text: bytes, shape_text: bytes) -> tuple[str, tuple[int, ...]] | None:
    """The dtype and the shape a JSON list of integers >= 0 gives, else None."""
    if b"-" in shape_text:  # `-0` is an int to json.loads, a float to the library
        return None
    try:
        dims = json.loads(shape_text)
    except ValueError:
        return None
    if type(dims) is not list or not all(type(d) is int and d >= 0 for d in dims):
        return None
    return dtype_text.decode("ascii"), tuple(dims)


def _scan_offsets(u: np.ndarray, starts: np.ndarray, tails: np.ndarray) -> np.ndarray | None:
    """``B0, E0, B1, E1, ...``, if each text ``B,E`` from ``starts`` to ``tails`` holds two
    JSON integers below 10**18 (``u[tails]`` is the ``]`` after each)."""
    lengths = tails + 1 - starts  # `B,E]`
    width = int(lengths.max())
    if lengths.min() < 4 or width > 2 * _MAX_DIGITS + 2:
        return None
    padded = np.concatenate((u, np.zeros(width, np.uint8)))  # rows near the end stay inside
    rows = np.lib.stride_tricks.as_strided(padded, (len(u), width), (1, 1))[starts]
    rows = np.where(np.arange(width) < lengths[:, None], rows, _SPACE)
    comma = np.argmax(rows == _COMMA, axis=1)  # the first comma of each row
    after = rows[np.arange(len(rows)), comma + 1]
    # `B,E]`: `]` last (checked by the caller), the first comma splits B from E, every other
    # byte is a digit, and B and E have 1 to 18 digits and no leading zero.
    size_b, size_e = comma, lengths - 2 - comma
    ok = (
        np.array_equal(np.count_nonzero(np.subtract(rows, 0x30) < 10, axis=1), lengths - 2)
        and size_b.min() >= 1
        and size_e.min() >= 1
        and max(int(size_b.max()), int(size_e.max())) <= _MAX_DIGITS
        and not np.any((rows[:, 0] == 0x30) & (size_b > 1))
        and not np.any((after == 0x30) & (size_e > 1))
    )
    if not ok:
        return None
    values = np.fromstring(rows.tobytes().translate(_DIGITS_ONLY), dtype=np.int64, sep=" ")
    return values if len(values) == 2 * len(starts) else None


# --------------------------------------------------------------------------- the shard index

#: JSON whitespace around `:` (between a name and its file) and `,` (between two entries).
_KV = re.compile(rb"[ \t\n\r]*:[ \t\n\r]*")
_PAIR = re.compile(rb"[ \t\n\r]*,[ \t\n\r]*")
_WEIGHT_MAP = re.compile(rb'"weight_map"[ \t\n\r]*:[ \t\n\r]*\{[ \t\n\r]*"')
_MAP_CLOSE = re.compile(rb'"[ \t\n\r]*\}')
#: Stands for the weight_map while the rest of the index is parsed. It is an escape, and an
#: index scanned here holds no backslash, so no other value in it can equal this one.
_STAND_IN, _STAND_IN_VALUE = b'"\\u0000"', "\x00"


class IndexLayout(NamedTuple):
    """Where the ``weight_map`` object of an index is, and how its entries are joined."""

    open: int  #: offset of the `{` that opens the weight_map
    first: int  #: offset of the quote that opens its first name
    kv: bytes  #: the text between a name's closing quote and its file's opening quote
    pair: bytes  #: the text between two entries, as after the first (b"" if none follows)


def scan_index(raw: bytes) -> IndexLayout | None:
    """Locate the ``weight_map`` of an index (its UTF-8 bytes) with no backslash, else None.

    Without a backslash every ``"`` delimits a string, so a ``"weight_map"`` after an even
    number of quotes is a string, and one followed by ``: {`` is an object key. That it is the
    top-level key (the last one, which ``json.loads`` keeps) is proved when the rest of the
    text is parsed with the map replaced (:func:`_rest_holds_map`).
    """
    if b"\\" in raw:
        return None
    for m in _WEIGHT_MAP.finditer(raw):
        if raw.count(b'"', 0, m.start()) % 2 == 0:
            break
    else:
        return None
    first = m.end() - 1
    name_end = raw.find(b'"', first + 1)
    file_start = raw.find(b'"', name_end + 1)
    file_end = raw.find(b'"', file_start + 1)
    if name_end < 0 or file_start < 0 or file_end < 0:
        return None
    kv = raw[name_end + 1 : file_start]
    after = raw.find(b'"', file_end + 1)
    pair = raw[file_end + 1 : after] if after >= 0 else b""
    if not _KV.fullmatch(kv):
        return None
    brace = raw.rfind(b"{", m.start(), first)
    return IndexLayout(brace, first, kv, pair if _PAIR.fullmatch(pair) else b"")


def index_lists_runs(
    raw: bytes, layout: IndexLayout, runs: Sequence[tuple[str, Sequence[str]]]
) -> bool:
    """Whether ``json.loads`` of the index gives a ``weight_map`` of ``{name: file}`` for
    each ``(file, names)`` of ``runs``, in this order and nothing else. The names must be
    distinct (a checkpoint's tensor names are): a name the text lists twice, json.loads keeps
    once.

    Each run is compared as one joined string, so the index is never cut into 10^5 strings.
    Names and files must be plain (no quote, backslash or control character): only then does
    the text mean what it spells.
    """
    if not runs or not all(names for _, names in runs):
        return False
    if not layout.pair and (len(runs) > 1 or len(runs[0][1]) > 1):  # it has a single entry
        return False
    if not all(map(_plain, {file for file, _ in runs})):
        return False
    kv = '"' + layout.kv.decode("ascii") + '"'  # JSON whitespace and `:` or `,`: ASCII
    between = '"' + layout.pair.decode("ascii") + '"'
    between_bytes = between.encode("ascii")
    pos = layout.first + 1
    for i, (file, names) in enumerate(runs):
        if i:
            if not raw.startswith(between_bytes, pos):
                return False
            pos += len(between_bytes)
        if not _plain("".join(names)):  # first: a lone surrogate cannot be encoded
            return False
        tail = kv + file
        run = ((tail + between).join(names) + tail).encode()  # the index is UTF-8
        if not raw.startswith(run, pos):
            return False
        pos += len(run)
    end = _MAP_CLOSE.match(raw, pos)
    return end is not None and _rest_holds_map(raw, layout.open, end.end())


def _plain(text: str) -> bool:
    """Whether a JSON string holding this text, unescaped, means itself: no quote, backslash
    or control character. Non-ASCII text that is not printable (a lone surrogate, which UTF-8
    cannot encode, among others) is refused too; that only costs the ``json.loads`` path."""
    if '"' in text or "\\" in text:
        return False
    if not text.isascii():
        return text.isprintable()
    return not text or int(np.frombuffer(text.encode("ascii"), np.uint8).min()) >= _SPACE


def _rest_holds_map(raw: bytes, start: int, end: int) -> bool:
    """Whether the index, with ``raw[start:end]`` (a JSON object, proved by the caller)
    replaced, is UTF-8 and valid JSON whose top-level ``weight_map`` is that object."""
    try:  # decoded as the json.loads path reads it: strict UTF-8, a BOM kept (and refused)
        obj = json.loads((raw[:start] + _STAND_IN + raw[end:]).decode("utf-8"))
    except (ValueError, RecursionError):  # UnicodeDecodeError included
        return False
    return type(obj) is dict and obj.get("weight_map") == _STAND_IN_VALUE
