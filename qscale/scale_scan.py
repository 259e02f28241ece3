"""Check every element of every scale tensor, streamed: flat memory, each byte read once.

The header pass decodes small tensors only (:data:`qscale.checkpoint.SMALL_NUMEL`); a
per-channel, group or block scale is thousands to millions of values, and one zero row or one
E8M0 ``0xFF`` (NaN) among them passes a check that reads only the small ones. This module reads
the bytes of every scale tensor (:data:`SCALES`, by parameter name) in file order, in windows
of at most :data:`CHUNK` bytes that join tensors lying next to each other, and keeps per
tensor only a summary of its bad values (:class:`ScaleStats`); a clean tensor leaves nothing.
A local file is read past the page cache where its pages are not there already
(:class:`FileReader`), so that a scan of tens of GB neither evicts the cache nor waits on reclaim.

The test is made on the stored integers: for each encoding the good scales (finite, > 0, below
the float32 sentinel) are one contiguous range of bit patterns read as signed integers, so a
window passes when its ``min`` and ``max`` lie in that range: two SIMD reductions, no
temporary array. Only a window that fails is looked at closer, to say what is wrong and
where, in a number of passes that does not grow with its bad elements: a tensor of one bit
pattern (zeros: a hole in a sparse file) is judged from that pattern, a 1- or 2-byte encoding
from a histogram of its patterns; only a 4- or 8-byte tensor has its bad elements decoded.

Encodings: F32, F64, F16, BF16, F8_E4M3 (block scales), F8_E5M2, and E8M0 stored as
``F8_E8M0`` or as ``U8`` (OCP MX; ``0xFF`` is NaN, every other byte is a power of two > 0).
Torch is never imported.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import mmap
import os
import sys
from collections.abc import Callable, Collection, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from functools import cache
from itertools import pairwise
from operator import itemgetter
from typing import TYPE_CHECKING, Any, NamedTuple

import numpy as np

from qscale import _fpquant
from qscale._dsv4 import scale_params
from qscale.errors import HeaderError
from qscale.safetensors_io import FileHeader, TensorInfo, decode
from qscale.schemes import KV_SCALE_PARAMS, SCALE_PARAMS

if TYPE_CHECKING:
    import ctypes

log = logging.getLogger(__name__)

#: Parameter names that hold scales (multipliers or divisors); every value must be finite, > 0.
SCALES = SCALE_PARAMS | KV_SCALE_PARAMS
#: |value| at or above this is a float32 sentinel (FLT_MAX = 3.4028e38), not a scale.
SENTINEL_MAGNITUDE = 1e38
#: Bytes read at once; a window never holds more.
CHUNK = 16 << 20
#: Scale tensors at most this many bytes apart are read in one window (the bytes between are
#: read and not looked at); locally a few pages, over HTTP one request saved is worth more.
LOCAL_GAP = 16 << 10
_BEGIN = itemgetter(4)  # a TensorInfo's begin
#: Bytes reduced at once (``min`` then ``max``): small enough to stay in the CPU cache.
SLICE = 1 << 20


class Encoding(NamedTuple):
    """How a dtype's good scales look as integers: ``lo <= int <= hi`` in ``view``."""

    view: np.dtype[Any]  #: signed (or, for E8M0, unsigned) integer of the element's width
    lo: int
    hi: int
    decode_as: str  #: the dtype :func:`decode` widens the bad elements with


def _float_bits(value: float, dtype: str) -> int:
    """The largest positive bit pattern of ``dtype`` below ``value``, as a signed integer."""
    if dtype == "BF16":
        f32 = int(np.array(value, dtype="<f4").view("<i4"))
        bits = f32 >> 16
        while float(np.array(bits << 16, dtype="<i4").view("<f4")) >= value:
            bits -= 1
        return bits
    width = {"F32": ("<f4", "<i4"), "F64": ("<f8", "<i8")}[dtype]
    bits = int(np.array(value, dtype=width[0]).view(width[1]))
    while float(np.array(bits, dtype=width[1]).view(width[0])) >= value:
        bits -= 1
    return bits


ENCODINGS: Mapping[str, Encoding] = {
    "F32": Encoding(np.dtype("<i4"), 1, _float_bits(SENTINEL_MAGNITUDE, "F32"), "F32"),
    "F64": Encoding(np.dtype("<i8"), 1, _float_bits(SENTINEL_MAGNITUDE, "F64"), "F64"),
    "BF16": Encoding(np.dtype("<i2"), 1, _float_bits(SENTINEL_MAGNITUDE, "BF16"), "BF16"),
    "F16": Encoding(np.dtype("<i2"), 1, 0x7BFF, "F16"),  # 0x7C00 is inf; max 65504
    "F8_E4M3": Encoding(np.dtype("i1"), 1, 0x7E, "F8_E4M3"),  # E4M3FN: 0x7F is NaN, no inf
    "F8_E5M2": Encoding(np.dtype("i1"), 1, 0x7B, "F8_E5M2"),  # 0x7C is inf
    # E8M0: 0xFF is NaN; 0xFE (2**127) and up lie past the sentinel, as in every encoding
    "F8_E8M0": Encoding(np.dtype("u1"), 0, 0xFD, "F8_E8M0"),
    "U8": Encoding(np.dtype("u1"), 0, 0xFD, "F8_E8M0"),  # E8M0 bytes stored as uint8
}

#: What is wrong with a value, in the order QS303 names them.
KINDS = ("NaN", "inf", "-inf", "sentinel", "zero", "negative")


def scale_names(config: Mapping[str, Any] | None = None) -> frozenset[str]:
    """The leaf names of the tensors that hold scales in a checkpoint of this ``config.json``:
    :data:`SCALES`, and the names its format adds (``scale`` in DeepSeek-V4's
    ``deepseek_v4_fp8`` checkpoints, whose every ``<module>.scale`` vLLM's mapper renames to
    a weight scale; FP-Quant's ``act_global_scale`` and MXFP4 ``scales``)."""
    if not config:
        return SCALES
    extra = scale_params(config) | _fpquant.scale_params(config)
    return SCALES | extra if extra else SCALES


def is_scale(t: TensorInfo, names: Collection[str] = SCALES) -> bool:
    """Whether the deep scan reads this tensor (``names``: :func:`scale_names`)."""
    return t.dtype in ENCODINGS and t.name.rpartition(".")[2] in names


@dataclass(frozen=True, slots=True)
class ScaleStats:
    """The bad values of one scale tensor (a clean tensor has none of these)."""

    name: str
    dtype: str
    shape: tuple[int, ...]
    bad: int  #: elements that are not a finite value > 0 below the sentinel
    counts: Mapping[str, int]  #: kind (:data:`KINDS`) -> how many
    first: int  #: flat index of the first bad element
    first_value: float

    @property
    def numel(self) -> int:
        """Elements of the tensor."""
        n = 1
        for d in self.shape:
            n *= d
        return n

    @property
    def first_index(self) -> tuple[int, ...]:
        """The first bad element's index in the tensor's shape."""
        if not self.shape:
            return ()
        return tuple(int(i) for i in np.unravel_index(self.first, self.shape))


@dataclass(frozen=True, slots=True)
class ScaleScan:
    """What the deep scan of a checkpoint read and found."""

    tensors: int = 0  #: scale tensors read
    nbytes: int = 0  #: their bytes
    bad: Mapping[str, ScaleStats] = field(default_factory=dict)

    @staticmethod
    def merge(parts: Sequence[ScaleScan]) -> ScaleScan:
        """One scan of several files."""
        bad: dict[str, ScaleStats] = {}
        for p in parts:
            bad.update(p.bad)
        return ScaleScan(sum(p.tensors for p in parts), sum(p.nbytes for p in parts), bad)


def classify(values: np.ndarray) -> np.ndarray:
    """Index into :data:`KINDS` of each (bad) float64 value; -1 for a good one."""
    out = np.full(values.shape, -1, dtype=np.int8)
    # assigned in reverse order of precedence, so the first kind that applies wins
    out[values < 0] = 5
    out[values == 0] = 4
    out[np.abs(values) >= SENTINEL_MAGNITUDE] = 3
    out[values == -np.inf] = 2
    out[values == np.inf] = 1
    out[np.isnan(values)] = 0
    return out


#: :func:`_pattern_kinds` of a good pattern; -2 so that it differs from a bad pattern that
#: :func:`classify` gives no kind (-1), which counts as bad and as no kind, as in :meth:`_Acc.add`
_GOOD = -2


@cache
def _pattern_kinds(enc: Encoding) -> np.ndarray:
    """Per bit pattern of a 1- or 2-byte encoding (indexed as unsigned): :data:`_GOOD`
    inside ``lo ..= hi``, else its :func:`classify` kind, from the same :func:`decode`
    that judges bad elements one by one."""
    width = enc.view.itemsize
    patterns = np.arange(1 << (8 * width), dtype=f"<u{width}")
    kinds = classify(decode(enc.decode_as, patterns.shape, patterns.tobytes()))
    ints = patterns.view(enc.view)
    kinds[(ints >= enc.lo) & (ints <= enc.hi)] = _GOOD
    return kinds


class _Acc:
    """Bad values of one tensor, gathered piece by piece."""

    __slots__ = ("bad", "counts", "first", "first_value")

    def __init__(self) -> None:
        self.bad = 0
        self.counts = [0] * len(KINDS)
        self.first = -1
        self.first_value = 0.0

    def add(self, t: TensorInfo, ints: np.ndarray, offset: int) -> None:
        """Judge elements ``offset ...`` of ``t`` held as the integers ``ints``."""
        enc = ENCODINGS[t.dtype]
        if ints.size and ints.min() == ints.max():  # one bit pattern (a hole reads as zeros)
            self._add_uniform(enc, ints[:1], int(ints.size), offset)
            return
        if enc.view.itemsize <= 2:
            self._add_by_pattern(enc, ints, offset)
            return
        idx = np.flatnonzero((ints < enc.lo) | (ints > enc.hi))
        if not idx.size:
            return
        vals = decode(enc.decode_as, (idx.size,), ints[idx].tobytes())
        kinds = classify(vals)
        for k, n in enumerate(np.bincount(kinds[kinds >= 0], minlength=len(KINDS)).tolist()):
            self.counts[k] += n
        self.bad += int(idx.size)
        if self.first < 0:
            self.first, self.first_value = offset + int(idx[0]), float(vals[0])

    def _add_uniform(self, enc: Encoding, one: np.ndarray, n: int, offset: int) -> None:
        """:meth:`add` for ``n`` elements that all hold the bit pattern ``one``."""
        if enc.lo <= int(one[0]) <= enc.hi:
            return
        value = decode(enc.decode_as, (1,), one.tobytes())
        kind = int(classify(value)[0])
        if kind >= 0:
            self.counts[kind] += n
        self.bad += n
        if self.first < 0:
            self.first, self.first_value = offset, float(value[0])

    def _add_by_pattern(self, enc: Encoding, ints: np.ndarray, offset: int) -> None:
        """:meth:`add` for a 1- or 2-byte encoding, in a few passes whatever the number of
        bad elements (a tensor of zeros, such as a sparse file's hole, has only bad ones):
        one histogram of the bit patterns, read through each pattern's kind."""
        kinds = _pattern_kinds(enc)
        hist = np.bincount(ints.view(f"u{enc.view.itemsize}"), minlength=kinds.size)
        bad = int(hist[kinds != _GOOD].sum())
        if not bad:
            return
        for k in range(len(KINDS)):
            self.counts[k] += int(hist[kinds == k].sum())
        self.bad += bad
        if self.first < 0:
            at = int(np.argmax((ints < enc.lo) | (ints > enc.hi)))
            self.first = offset + at
            self.first_value = float(decode(enc.decode_as, (1,), ints[at : at + 1].tobytes())[0])

    def stats(self, t: TensorInfo) -> ScaleStats | None:
        if not self.bad:
            return None
        counts = {k: n for k, n in zip(KINDS, self.counts, strict=True) if n}
        return ScaleStats(t.name, t.dtype, t.shape, self.bad, counts, self.first, self.first_value)


def _clean(buf: memoryview | bytes, enc: Encoding) -> bool:
    """Whether every element of ``buf`` is a good scale (min and max in range), judged in
    slices of :data:`SLICE` bytes, so that the second reduction reads the cache."""
    a = np.frombuffer(buf, dtype=enc.view)
    step = SLICE // enc.view.itemsize
    lo, hi = enc.lo, enc.hi
    for i in range(0, a.size, step):
        part = a[i : i + step]
        if int(part.min()) < lo or int(part.max()) > hi:
            return False
    return True


def windows(
    tensors: Sequence[TensorInfo], gap: int, chunk: int = CHUNK
) -> Iterator[tuple[int, int, list[TensorInfo]]]:
    """``(begin, end, tensors)`` reads that cover the tensors in file order: tensors at most
    ``gap`` bytes apart share a read of at most ``chunk`` bytes; a larger tensor is one read
    of its own (the scanner cuts it into pieces)."""
    run: list[TensorInfo] = []
    begin = end = 0
    for t in sorted(tensors, key=_BEGIN):
        at, stop = t[4], t[5]  # begin, end (by index: 10^5 tensors pass here)
        if run and at - end <= gap and stop - begin <= chunk:
            run.append(t)
            end = stop
            continue
        if run:
            yield begin, end, run
        run, begin, end = [t], at, stop
    if run:
        yield begin, end, run


Reader = Callable[[int, int], "memoryview | bytes"]


def scan_tensors(
    read: Reader, tensors: Sequence[TensorInfo], *, gap: int = LOCAL_GAP, chunk: int = CHUNK
) -> ScaleScan:
    """Scan ``tensors`` of one file; ``read(begin, end)`` gives those bytes (a buffer that
    may be reused by the next call)."""
    bad: dict[str, ScaleStats] = {}
    nbytes = 0
    for begin, end, run in windows(tensors, gap, chunk):
        if end - begin > chunk:  # one large tensor: in pieces of whole elements
            (t,) = run
            enc = ENCODINGS[t.dtype]
            step = chunk - chunk % enc.view.itemsize
            acc = _Acc()
            for pos in range(t.begin, t.end, step):
                stop = min(t.end, pos + step)
                buf = read(pos, stop)
                if not _clean(buf, enc):
                    at = (pos - t.begin) // enc.view.itemsize
                    acc.add(t, np.frombuffer(buf, dtype=enc.view), at)
            nbytes += t.nbytes
            found = acc.stats(t)
            if found is not None:
                bad[t.name] = found
            continue
        buf = read(begin, end)
        for seg in _segments(run):
            enc = ENCODINGS[seg[0].dtype]
            whole = memoryview(buf)[seg[0].begin - begin : seg[-1].end - begin]
            nbytes += len(whole)
            if _clean(whole, enc):
                continue
            for t in seg:
                acc = _Acc()
                part = memoryview(buf)[t.begin - begin : t.end - begin]
                acc.add(t, np.frombuffer(part, dtype=enc.view), 0)
                found = acc.stats(t)
                if found is not None:
                    bad[t.name] = found
    return ScaleScan(len(tensors), nbytes, bad)


def _segments(run: list[TensorInfo]) -> Iterator[list[TensorInfo]]:
    """Runs of touching tensors of one encoding, checked as one array."""
    seg: list[TensorInfo] = []
    last = None
    for t in run:  # by index (begin t[4], end t[5], dtype t[1]); one dtype: one encoding
        if last is not None and (t[4] != last[5] or (
                t[1] != last[1] and ENCODINGS[t[1]] != ENCODINGS[last[1]])):
            yield seg
            seg = []
        seg.append(t)
        last = t
    if seg:
        yield seg


PAGE = mmap.PAGESIZE
#: Windows whose page-cache residency alternates more often than this are read in one go
#: (from the cache if most of their pages are there, else direct) rather than run by run.
MAX_RUNS = 16


@cache
def _libc() -> ctypes.CDLL | None:
    """libc with ``mmap``, ``mincore`` and ``munmap`` typed, or None where there is none."""
    if not sys.platform.startswith("linux"):
        return None
    import ctypes  # here: not on the start-up path of commands that read no scales

    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.mmap.restype = ctypes.c_void_p
        libc.mmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_int,
                              ctypes.c_int, ctypes.c_long]
        libc.mincore.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_void_p]
        libc.munmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t]
        libc.syscall.restype = ctypes.c_long
    except (OSError, AttributeError):
        return None
    return libc


#: ``cachestat(2)`` (Linux 6.5) where its number is known: 451 in the generic table
_CACHESTAT = {"x86_64": 451, "aarch64": 451}.get(os.uname().machine if hasattr(os, "uname") else "")
_no_cachestat: list[bool] = []  #: set once the kernel said ENOSYS (or another refusal)


@cache
def _cachestat_range() -> type:
    """``struct cachestat_range`` (made once: one read window after another asks)."""
    import ctypes

    class Range(ctypes.Structure):
        _fields_ = [("off", ctypes.c_uint64), ("len", ctypes.c_uint64)]

    return Range


def cached_pages(fd: int, begin: int, end: int) -> int | None:
    """How many pages of ``begin .. end`` of the open file are in the page cache
    (``cachestat``, one call whatever the length: ~75× faster than :func:`resident_pages`),
    or None where the kernel has no ``cachestat``."""
    libc = _libc()
    if libc is None or _CACHESTAT is None or _no_cachestat or end <= begin:
        return None
    import ctypes

    stat = (ctypes.c_uint64 * 5)()  # nr_cache, nr_dirty, nr_writeback, nr_evicted, ...
    span = _cachestat_range()(begin, end - begin)
    if libc.syscall(_CACHESTAT, fd, ctypes.byref(span), stat, 0) != 0:
        _no_cachestat.append(True)
        return None
    return int(stat[0])


def resident_pages(fd: int, begin: int, end: int) -> np.ndarray | None:
    """Per page of ``begin .. end`` of the open file (``begin`` a multiple of :data:`PAGE`),
    whether it is in the page cache (``mincore`` on a mapping that is never touched, so
    nothing is read), or None where that cannot be told."""
    libc = _libc()
    if libc is None or end <= begin:
        return None
    import ctypes

    length = end - begin
    addr = libc.mmap(None, length, mmap.PROT_READ, mmap.MAP_SHARED, fd, begin)
    if addr is None or addr == ctypes.c_void_p(-1).value:
        return None
    try:
        vec = (ctypes.c_ubyte * (-(-length // PAGE)))()
        if libc.mincore(addr, length, vec) != 0:
            return None
    finally:
        libc.munmap(addr, length)
    flags: np.ndarray = np.frombuffer(bytes(vec), dtype=np.uint8)
    return (flags & 1).astype(bool)


def _reopen(fd: int) -> tuple[int, int] | None:
    """Two more descriptors of the open file: one ``O_DIRECT``, one buffered without
    readahead (which would bring the pages after each cached run into the cache); None where
    the platform or the file system has no ``O_DIRECT`` (tmpfs refuses it)."""
    flag = getattr(os, "O_DIRECT", 0)
    if not flag or not sys.platform.startswith("linux"):
        return None
    try:
        direct = os.open(f"/proc/self/fd/{fd}", os.O_RDONLY | flag)
    except OSError:
        return None
    try:
        cached = os.open(f"/proc/self/fd/{fd}", os.O_RDONLY)
    except OSError:
        os.close(direct)
        return None
    with contextlib.suppress(OSError):  # a hint: without it readahead caches a little more
        os.posix_fadvise(cached, 0, 0, os.POSIX_FADV_RANDOM)
    return direct, cached


class Buffer:
    """One page-aligned read buffer (anonymous memory, as O_DIRECT needs) that grows on
    demand, shared by the :class:`FileReader` of every file of a checkpoint: a fresh buffer
    per file faulted its pages in again for each one (DeepSeek-R1's 163 files: ~60k page
    faults per check). A buffer given out before stays valid until its last view goes."""

    def __init__(self, chunk: int = CHUNK) -> None:
        self._chunk = chunk
        self._buf = mmap.mmap(-1, PAGE)

    def room(self, n: int) -> memoryview:
        """The buffer, at least ``n`` bytes."""
        if len(self._buf) < n:
            size = max(n, min(self._chunk + 2 * PAGE, 2 * len(self._buf)))
            self._buf = mmap.mmap(-1, -(-size // PAGE) * PAGE)
        return memoryview(self._buf)


class FileReader:
    """``read(begin, end)`` on an open local file, into one reused, page-aligned buffer
    (``buffer``, shared with the other files' readers where given).

    Pages already in the page cache (``cachestat``, then ``mincore`` for a window that is
    partly cached) are read from it, on a descriptor without
    readahead; the others, where the file system takes ``O_DIRECT``, straight into the
    buffer, past the page cache. The deep scan reads each scale byte once, tens of GB on a
    400B-class NVFP4 or INT4 checkpoint: read through the page cache they would evict what
    the engine (or anything else) had cached, and once the cache is full each new page costs
    reclaim, so that the last GB cost more than the first (full-scale Qwen3.5-397B NVFP4
    layout, 24 GB of group scales on a 24 GB machine: 6.2M pages reclaimed and 10 s of
    system time per check, 3 s and none reclaimed with this reader).

    Measured on 5 GB of a file's holes, not cached (system time): buffered 2.4-10 s, filling
    the cache; ``POSIX_FADV_NOREUSE`` 2.3 s, filling it all the same; buffered then
    ``POSIX_FADV_DONTNEED`` per window 0.75 s (but it also drops what was cached before);
    ``O_DIRECT`` 0.11 s. Cached pages are not read direct: from a disk that costs the disk's
    speed (2 GB of real data: 2.4-6.5 s direct, 0.26 s from the cache).

    Not avoided: a cached page that readahead marked still starts an asynchronous readahead
    when it is read, so up to a readahead window (``read_ahead_kb``) after a cached run may
    enter the cache. Where ``O_DIRECT`` is refused (at open, as tmpfs before Linux 6.6, or
    with EINVAL at a read) every read is buffered on ``fd``; where ``mincore`` cannot answer,
    every page counts as not cached.
    """

    def __init__(self, fd: int, file: str, chunk: int = CHUNK, *, direct: bool = True,
                 buffer: Buffer | None = None) -> None:
        self.fd, self.file = fd, file
        self._buffer = buffer or Buffer(chunk)
        fds = _reopen(fd) if direct else None
        self._direct: int | None = None if fds is None else fds[0]
        self._cached: int | None = None if fds is None else fds[1]
        self.cached_bytes = 0  #: bytes read through the page cache
        self.direct_bytes = 0  #: bytes read with O_DIRECT (pages rounded out)

    def close(self) -> None:
        """Close the descriptors it opened; later reads are buffered, on ``fd``."""
        for fd in (self._direct, self._cached):
            if fd is not None:
                os.close(fd)
        self._direct = self._cached = None

    def _room(self, n: int) -> memoryview:
        """The buffer, at least ``n`` bytes."""
        return self._buffer.room(n)

    def __call__(self, begin: int, end: int) -> memoryview:
        if end <= begin:
            return memoryview(b"")
        if self._direct is None:
            view = self._room(end - begin)
            self._buffered(view, 0, begin, end)
            return view[: end - begin]
        lo = begin - begin % PAGE
        hi = -(-end // PAGE) * PAGE
        view = self._room(hi - lo)
        for a, b, cached in self._runs(lo, hi):
            first, last = max(a, begin), min(b, end)
            if cached or self._direct is None:
                self._buffered(view, first - lo, first, last)
            else:
                self._direct_read(view, lo, a, b, first, last)
        return view[begin - lo : end - lo]

    def _runs(self, lo: int, hi: int) -> list[tuple[int, int, bool]]:
        """``lo .. hi`` (whole pages) as runs of pages in and out of the page cache."""
        count = cached_pages(self.fd, lo, hi)
        if count == (hi - lo) // PAGE:
            return [(lo, hi, True)]
        if count == 0:
            return [(lo, hi, False)]
        res = resident_pages(self.fd, lo, hi)
        if res is None:
            return [(lo, hi, False)]
        cuts = (np.flatnonzero(res[1:] != res[:-1]) + 1).tolist()
        if len(cuts) >= MAX_RUNS:
            return [(lo, hi, bool(2 * int(res.sum()) >= res.size))]
        edges = [0, *cuts, res.size]
        return [(lo + PAGE * i, min(hi, lo + PAGE * j), bool(res[i]))
                for i, j in pairwise(edges)]

    def _buffered(self, view: memoryview, at: int, begin: int, end: int) -> None:
        """File bytes ``begin .. end`` into ``view[at:]``, through the page cache."""
        got = 0
        n = end - begin
        fd = self.fd if self._cached is None else self._cached
        while got < n:
            k = os.preadv(fd, [view[at + got : at + n]], begin + got)
            if k <= 0:
                raise self._short(begin + got)
            got += k
        self.cached_bytes += n

    def _direct_read(
        self, view: memoryview, lo: int, a: int, b: int, first: int, last: int
    ) -> None:
        """Pages ``a .. b`` into ``view[a - lo:]`` with O_DIRECT; at least ``first .. last``
        must come back (the file may end inside the last page). A refusal (EINVAL: the
        file system or device wants another alignment) turns O_DIRECT off for this file
        and reads the rest through the page cache."""
        assert self._direct is not None
        pos = a
        while pos < last:
            try:
                k = os.preadv(self._direct, [view[pos - lo : b - lo]], pos)
            except OSError as exc:
                if exc.errno != errno.EINVAL:
                    raise
                self.close()
                start = max(pos, first)
                self._buffered(view, start - lo, start, last)
                return
            if k <= 0:
                raise self._short(pos)
            pos += k
            self.direct_bytes += k

    def _short(self, at: int) -> HeaderError:
        return HeaderError(
            f"{self.file}: cut short at byte {at} while reading scales"
            " (the file changed or is truncated)",
            code="QS002",
        )


def scan_file(fd: int, header: FileHeader, skip: Collection[str] = (),
              names: Collection[str] = SCALES, buffer: Buffer | None = None) -> ScaleScan:
    """Scan every scale tensor (leaf name in ``names``, :func:`scale_names`) of one open
    local file but those named in ``skip`` (the small ones, decoded with the header and
    judged from their values), read into one reused buffer by :class:`FileReader`: from the
    page cache what is there, the rest with ``O_DIRECT``.

    Not mapped: a 400B-class checkpoint holds tens of GB of group scales, more than the
    page cache holds, and faulting them in through a mapping cost more system time than
    reading them (full-scale Kimi-K2.5 INT4 layout, ~63 GB of group scales: 27 s and 84 s
    of system time mapped, 22 s and 23 s read, two runs each)."""
    # is_scale(t, names), inline (10^5 tensors): dtype, then the name's last component
    scales = [t for t in header.tensors if t[1] in ENCODINGS
              and t[0].rpartition(".")[2] in names and t[0] not in skip]
    if not scales:
        return ScaleScan()
    reader = FileReader(fd, header.file, buffer=buffer)
    try:
        return scan_tensors(reader, scales)
    finally:
        reader.close()
        log.debug("scanned %s: %d B from the page cache, %d B direct",
                  header.file, reader.cached_bytes, reader.direct_bytes)
