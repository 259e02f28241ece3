"""The layout of a rewritten safetensors file, and a streaming writer for it.

A rewritten file keeps the source's tensor order and ``__metadata__``. Tensors a change does
not touch are copied byte for byte from the source file range by range (a bounded buffer,
``copy_file_range`` where the OS has it), so a file of any size is rewritten without loading
it; only new contents are held in memory. Holes of a sparse source file stay holes. The header
is compact JSON padded with spaces to a multiple of 8 bytes, as safetensors itself writes it.
"""

from __future__ import annotations

import errno
import json
import os
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass

from qscale.fix.model import DropTensor, Edit, RenameTensor, TensorData, WriteTensor, nbytes
from qscale.safetensors_io import FileHeader, TensorInfo

COPY_CHUNK = 16 << 20  #: bytes per read/write when copy_file_range is unavailable


@dataclass(frozen=True, slots=True)
class OutTensor:
    """One tensor of an output file: copied from ``source`` or written from new contents."""

    name: str
    dtype: str
    shape: tuple[int, ...]
    source: TensorInfo | None  #: None: new contents (a WriteTensor edit)

    @property
    def nbytes(self) -> int:
        """Bytes of data."""
        return nbytes(self.dtype, self.shape)


def layout_file(header: FileHeader, edits: Iterable[Edit]) -> list[OutTensor]:
    """The output tensors of one file, in order, after applying its tensor edits."""
    writes: dict[str, WriteTensor] = {}
    after: dict[str | None, list[WriteTensor]] = {}
    renames: dict[str, str] = {}
    drops: set[str] = set()
    stored = {t.name for t in header.tensors}
    for e in edits:
        if isinstance(e, WriteTensor):
            if e.name in stored:
                writes[e.name] = e
            else:
                after.setdefault(e.after if e.after in stored else None, []).append(e)
        elif isinstance(e, RenameTensor):
            renames[e.old] = e.new
        elif isinstance(e, DropTensor):
            drops.add(e.name)
    out: list[OutTensor] = []
    for t in sorted(header.tensors, key=lambda t: t.begin):
        w = writes.get(t.name)
        if w is not None:
            out.append(OutTensor(w.name, w.dtype, w.shape, None))
        elif t.name not in drops:
            out.append(OutTensor(renames.get(t.name, t.name), t.dtype, t.shape, t))
        out.extend(OutTensor(n.name, n.dtype, n.shape, None) for n in after.get(t.name, ()))
    out.extend(OutTensor(n.name, n.dtype, n.shape, None) for n in after.get(None, ()))
    return out


def header_bytes(tensors: Sequence[OutTensor], metadata: Mapping[str, str]) -> bytes:
    """The 8-byte length and the JSON header, padded with spaces to a multiple of 8."""
    obj: dict[str, object] = {}
    if metadata:
        obj["__metadata__"] = dict(metadata)
    pos = 0
    for t in tensors:
        obj[t.name] = {
            "dtype": t.dtype,
            "shape": list(t.shape),
            "data_offsets": [pos, pos + t.nbytes],
        }
        pos += t.nbytes
    body = json.dumps(obj, separators=(",", ":")).encode()
    body += b" " * (-len(body) % 8)
    return len(body).to_bytes(8, "little") + body


def file_size(tensors: Sequence[OutTensor], metadata: Mapping[str, str]) -> int:
    """Size of the output file."""
    return len(header_bytes(tensors, metadata)) + sum(t.nbytes for t in tensors)


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def _data_regions(fd: int, begin: int, end: int) -> list[tuple[int, int]]:
    """The [start, stop) ranges of ``fd`` within [begin, end) that hold data; holes of a
    sparse file are left out. One region when the file system cannot tell."""
    regions, pos = [], begin
    try:
        while pos < end:
            start = os.lseek(fd, pos, os.SEEK_DATA)
            if start >= end:
                break
            stop = min(os.lseek(fd, start, os.SEEK_HOLE), end)
            regions.append((start, stop))
            pos = stop
    except OSError as exc:
        if exc.errno == errno.ENXIO:  # no data after pos: the rest is a hole
            return regions
        return [(begin, end)]  # SEEK_DATA unsupported: copy everything
    return regions


def copy_range(src_fd: int, dst_fd: int, begin: int, length: int) -> None:
    """Append ``length`` bytes at offset ``begin`` of ``src_fd`` to ``dst_fd``; holes in the
    source stay holes (the caller sets the final size with ``ftruncate``)."""
    base = os.lseek(dst_fd, 0, os.SEEK_CUR)
    for start, stop in _data_regions(src_fd, begin, begin + length):
        os.lseek(dst_fd, base + start - begin, os.SEEK_SET)
        _copy(src_fd, dst_fd, start, stop - start)
    os.lseek(dst_fd, base + length, os.SEEK_SET)


def _copy(src_fd: int, dst_fd: int, offset: int, left: int) -> None:
    if hasattr(os, "copy_file_range"):
        try:
            while left:
                n = os.copy_file_range(src_fd, dst_fd, left, offset)
                if n == 0:
                    break
                offset, left = offset + n, left - n
        except OSError:
            pass  # e.g. across file systems on old kernels: fall back to read/write
    while left:
        chunk = os.pread(src_fd, min(COPY_CHUNK, left), offset)
        if not chunk:
            raise OSError(f"source ended {left} bytes early")
        _write_all(dst_fd, chunk)
        offset, left = offset + len(chunk), left - len(chunk)


def write_file(
    path: str,
    src_path: str,
    tensors: Sequence[OutTensor],
    metadata: Mapping[str, str],
    contents: Callable[[str], TensorData],
    *,
    on_half: Callable[[], None] | None = None,
) -> None:
    """Write a new file at ``path`` (which must not exist) and fsync it.

    Args:
        contents: the new contents of a tensor written from scratch, by name.
        on_half: called once half of the tensors are written (a crash-test fail point).
    """
    dst = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    try:
        src = os.open(src_path, os.O_RDONLY)
        try:
            _write_all(dst, header_bytes(tensors, metadata))
            for i, t in enumerate(tensors):
                if t.source is not None:
                    copy_range(src, dst, t.source.begin, t.source.nbytes)
                else:
                    _write_all(dst, _checked(contents(t.name), t))
                if on_half is not None and i == len(tensors) // 2:
                    on_half()
        finally:
            os.close(src)
        os.ftruncate(dst, os.lseek(dst, 0, os.SEEK_CUR))  # materialises a trailing hole
        os.fsync(dst)
    finally:
        os.close(dst)


def _checked(data: TensorData, t: OutTensor) -> bytes:
    if (data.dtype, data.shape) != (t.dtype, t.shape) or len(data.data) != t.nbytes:
        raise AssertionError(
            f"`{t.name}`: computed {data.dtype}{list(data.shape)}, planned {t.dtype}{list(t.shape)}"
        )
    return data.data
