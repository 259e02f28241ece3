"""How the deep scan reads scale bytes (qscale.scale_scan.FileReader): from the page cache
what is there, the rest with O_DIRECT past it, the same bytes at every alignment either way."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from qscale.safetensors_io import read_header
from qscale.scale_scan import (
    PAGE,
    FileReader,
    cached_pages,
    resident_pages,
    scan_file,
    scan_tensors,
)

needs_linux = pytest.mark.skipif(not hasattr(os, "O_DIRECT"), reason="no O_DIRECT here")


def _drop(path: Path) -> None:
    """Write the file back and drop its pages from the page cache."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    finally:
        os.close(fd)


def _supports_direct(path: Path) -> bool:
    try:
        fd = os.open(path, os.O_RDONLY | os.O_DIRECT)
    except OSError:
        return False
    os.close(fd)
    return True


def _resident(path: Path) -> np.ndarray:
    fd = os.open(path, os.O_RDONLY)
    try:
        res = resident_pages(fd, 0, os.path.getsize(path))
    finally:
        os.close(fd)
    assert res is not None
    return res


def _ranges(size: int, rng: np.random.Generator) -> list[tuple[int, int]]:
    """Ranges at odd offsets and lengths, whole pages, the file's last bytes, one byte."""
    out = [(0, size), (size - 1, size), (size - 123, size), (PAGE, 3 * PAGE), (PAGE - 1, PAGE + 1),
           (7, 8), (5 * PAGE + 17, 9 * PAGE - 3)]
    for _ in range(40):
        a = int(rng.integers(0, size))
        out.append((a, int(rng.integers(a + 1, min(size, a + 6 * PAGE) + 1))))
    return out


@needs_linux
@pytest.mark.parametrize("state", ["cold", "every-third-page-cached", "warm"])
def test_every_range_reads_its_bytes(tmp_path, state):
    rng = np.random.default_rng(7)
    path = tmp_path / "blob.bin"
    data = rng.integers(0, 256, size=37 * PAGE + 1234, dtype=np.uint8).tobytes()  # not whole pages
    path.write_bytes(data)
    _drop(path)
    fd = os.open(path, os.O_RDONLY)
    try:
        if state == "warm":
            os.pread(fd, len(data), 0)
        elif state == "every-third-page-cached":  # without readahead: only those pages
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_RANDOM)
            for p in range(0, len(data), 3 * PAGE):
                os.pread(fd, 1, p)
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_NORMAL)
        cached_before = _resident(path)
        count = cached_pages(fd, 0, cached_before.size * PAGE)  # None before Linux 6.5
        assert count is None or count == int(cached_before.sum())
        reader = FileReader(fd, path.name, chunk=4 * PAGE)
        try:
            for a, b in _ranges(len(data), rng):
                assert bytes(reader(a, b)) == data[a:b], (state, a, b)
        finally:
            reader.close()
    finally:
        os.close(fd)
    direct = _supports_direct(path)
    assert (reader.direct_bytes > 0) == (direct and state != "warm")
    assert reader.cached_bytes > 0 or (direct and state == "cold")
    if direct:  # what was not cached before is not cached after; what was, still is
        after = _resident(path)
        assert not (after & ~cached_before).any()
        assert (after >= cached_before).all()


def _tmpfs() -> Path | None:
    with open("/proc/mounts") as fh:
        for line in fh:
            _, mount, kind, *_ = line.split()
            if kind == "tmpfs" and os.access(mount, os.W_OK) and mount in ("/dev/shm", "/run"):
                return Path(mount)
    return None


@needs_linux
def test_tmpfs_reads_the_same_bytes(tmp_path_factory):
    """tmpfs refuses O_DIRECT before Linux 6.6 (every read buffered) and takes it since."""
    root = _tmpfs()
    if root is None:
        pytest.skip("no writable tmpfs")
    path = root / f"qscale-test-{os.getpid()}.bin"
    data = np.random.default_rng(3).integers(0, 256, size=5 * PAGE + 77, dtype=np.uint8).tobytes()
    path.write_bytes(data)
    try:
        fd = os.open(path, os.O_RDONLY)
        try:
            reader = FileReader(fd, path.name)
            assert bytes(reader(PAGE - 3, 5 * PAGE + 77)) == data[PAGE - 3 :]
            assert bytes(reader(1, 2)) == data[1:2]
            reader.close()
        finally:
            os.close(fd)
        assert reader.cached_bytes + reader.direct_bytes >= len(data) - PAGE + 4
        if not _supports_direct(path):
            assert reader.direct_bytes == 0 and reader.cached_bytes == len(data) - PAGE + 4
    finally:
        path.unlink()


def _scales_file(path: Path) -> Path:
    """Large F32 and F8 scale tensors at offsets that are not page multiples, with BF16
    weights between them; a zero and a NaN planted in two of them."""
    g = torch.Generator().manual_seed(0)
    tensors: dict[str, torch.Tensor] = {}
    for i in range(6):
        tensors[f"m.{i}.weight"] = torch.zeros(int(PAGE * 3.3) + 2 * i, dtype=torch.bfloat16)
        tensors[f"m.{i}.weight_scale"] = torch.rand(1_000_000 + 13 * i, generator=g) + 0.5
    tensors["m.6.weight_scale"] = torch.ones(1_300_001).to(torch.float8_e4m3fn)
    tensors["m.2.weight_scale"][123_457] = 0.0
    tensors["m.6.weight_scale"][999_999] = float("nan")
    save_file(tensors, str(path))
    return path


def _scan(path: Path, *, direct: bool):
    fd = os.open(path, os.O_RDONLY)
    try:
        with os.fdopen(os.dup(fd), "rb") as fh:
            header = read_header(fh, file=path.name, file_size=path.stat().st_size)
        scales = [t for t in header.tensors if t.name.endswith("weight_scale")]
        assert any(t.begin % PAGE for t in scales)
        reader = FileReader(fd, path.name, chunk=64 * PAGE, direct=direct)
        try:
            return scan_tensors(reader, scales, chunk=64 * PAGE), header, reader
        finally:
            reader.close()
    finally:
        os.close(fd)


@needs_linux
def test_direct_and_buffered_scans_find_the_same(tmp_path):
    path = _scales_file(tmp_path / "s.safetensors")
    _drop(path)
    direct, _, r1 = _scan(path, direct=True)
    buffered, _, r2 = _scan(path, direct=False)
    assert r2.direct_bytes == 0
    assert (r1.direct_bytes > 0) == _supports_direct(path)
    assert direct.tensors == buffered.tensors == 7 and direct.nbytes == buffered.nbytes
    assert sorted(direct.bad) == ["m.2.weight_scale", "m.6.weight_scale"]
    assert {k: repr(v) for k, v in direct.bad.items()} == {
        k: repr(v) for k, v in buffered.bad.items()}
    assert direct.bad["m.2.weight_scale"].first == 123_457
    assert dict(direct.bad["m.6.weight_scale"].counts) == {"NaN": 1}


@needs_linux
def test_deep_scan_leaves_the_page_cache_as_it_found_it(tmp_path):
    path = _scales_file(tmp_path / "s.safetensors")
    if not _supports_direct(path):
        pytest.skip("this file system refuses O_DIRECT")
    _drop(path)
    with open(path, "rb") as fh:
        header = read_header(fh, file=path.name, file_size=path.stat().st_size)
        by_name = {t.name: t for t in header.tensors}
        kept = by_name["m.4.weight_scale"]  # cached before the scan, by someone else
        os.pread(fh.fileno(), kept.nbytes, kept.begin)
        before = _resident(path)
        scan = scan_file(fh.fileno(), header)
    after = _resident(path)
    assert set(scan.bad) == {"m.2.weight_scale", "m.6.weight_scale"}
    first, last = -(-kept.begin // PAGE), kept.end // PAGE
    assert after[first:last].all()  # still cached
    # ~6,000 pages scanned that were not cached; what readahead adds after the cached pages
    # (the header's, m.4's) stays under a few read-ahead windows
    assert (after >= before).all()
    assert int(after.sum()) - int(before.sum()) <= (2 << 20) // PAGE
    assert int(after.sum()) < after.size // 2


def _refusing_direct_reads(monkeypatch, after: int) -> list[int]:
    """``os.preadv`` as on a file system that opens with O_DIRECT but refuses such reads
    (EINVAL) from the ``after``-th one on; returns the list of direct reads let through."""
    import errno
    import fcntl

    real = os.preadv
    done: list[int] = []

    def preadv(fd, buffers, offset, *rest):
        if fcntl.fcntl(fd, fcntl.F_GETFL) & os.O_DIRECT:
            if len(done) >= after:
                raise OSError(errno.EINVAL, "Invalid argument")
            done.append(offset)
        return real(fd, buffers, offset, *rest)

    monkeypatch.setattr(os, "preadv", preadv)
    return done


@needs_linux
@pytest.mark.parametrize("after", [0, 1, 3])
def test_direct_reads_refused_at_read_time_fall_back_to_buffered(tmp_path, monkeypatch, after):
    path = _scales_file(tmp_path / "s.safetensors")
    if not _supports_direct(path):
        pytest.skip("this file system refuses O_DIRECT at open")
    buffered, _, _ = _scan(path, direct=False)
    _drop(path)
    done = _refusing_direct_reads(monkeypatch, after)
    scan, _, reader = _scan(path, direct=True)
    assert len(done) == after  # the refusal was met, and nothing was read direct after it
    assert reader.direct_bytes <= after * 64 * PAGE + 2 * PAGE
    assert {k: repr(v) for k, v in scan.bad.items()} == {
        k: repr(v) for k, v in buffered.bad.items()}
    assert scan.tensors == buffered.tensors == 7 and scan.nbytes == buffered.nbytes
    # and byte for byte, at odd offsets, on a fresh reader that is refused straight away
    data = path.read_bytes()
    _drop(path)
    done.clear()  # refused again after `after` direct reads
    fd = os.open(path, os.O_RDONLY)
    try:
        r = FileReader(fd, path.name, chunk=8 * PAGE)
        for a, b in _ranges(len(data), np.random.default_rng(after)):
            assert bytes(r(a, b)) == data[a:b]
        r.close()
    finally:
        os.close(fd)
