"""Benchmark the deep scan of scale values against ``cat`` on one large, scale-heavy file.

    /work/venv/bin/python bench/bench_scan.py [--size-mb 2048] [--repeat 5] [--path FILE]

Writes (once) a safetensors file of ``--size-mb`` MB made almost only of scale tensors, in the
four encodings the scan reads differently (F32, BF16, F8_E4M3 block scales, E8M0 as U8), each
tensor 8 MB, with a small non-scale tensor between every two so that reads are real windows,
not one run. Values are valid scales (the scan's fast path; a bad window is decoded, which is
the slow path and rare). Then, best of ``--repeat`` with a warm page cache:

a. ``cat FILE > /dev/null``: the bandwidth floor of reading the bytes;
b. :func:`qscale.scale_scan.scan_file` over the same file: every scale element judged.

Prints both bandwidths and their ratio; exits 1 when the scan is below ``--target`` (0.8) of
cat. The scan's memory is one reused buffer of :data:`qscale.scale_scan.CHUNK` bytes: the
script also prints the process's peak RSS after scanning. This is a benchmark, not a test.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from qscale.safetensors_io import read_header
from qscale.scale_scan import scan_file

TENSOR_BYTES = 8 << 20
#: (dtype, bytes per element, a valid scale's bit pattern)
KINDS = (
    ("F32", 4, np.array([0.0125], dtype="<f4").view("<u4")[0]),
    ("BF16", 2, np.uint16(0x3C4D)),  # 0.0125 in BF16
    ("F8_E4M3", 1, np.uint8(0x38)),  # 1.0 in E4M3
    ("U8", 1, np.uint8(120)),  # E8M0 2**-7
)


def build(path: Path, size: int) -> None:
    """The scale-heavy file: a header, then tensors written in header order."""
    n = max(4, size // TENSOR_BYTES)
    header: dict[str, dict[str, object]] = {}
    order = []
    pos = 0
    for i in range(n):
        dtype, width, _ = KINDS[i % len(KINDS)]
        name = f"model.layers.{i}.mlp.down_proj.weight_scale"
        header[name] = {"dtype": dtype, "shape": [TENSOR_BYTES // width],
                        "data_offsets": [pos, pos + TENSOR_BYTES]}
        order.append((name, i % len(KINDS)))
        pos += TENSOR_BYTES
        bias = f"model.layers.{i}.mlp.down_proj.bias"
        header[bias] = {"dtype": "BF16", "shape": [2048], "data_offsets": [pos, pos + 4096]}
        order.append((bias, -1))
        pos += 4096
    raw = json.dumps(header, separators=(",", ":")).encode()
    raw += b" " * (-len(raw) % 8)
    with open(path, "wb") as fh:
        fh.write(len(raw).to_bytes(8, "little") + raw)
        for _, k in order:
            if k < 0:
                fh.write(np.full(2048, 0x3F80, dtype="<u2").tobytes())
                continue
            _, width, bits = KINDS[k]
            fh.write(np.full(TENSOR_BYTES // width, bits, dtype=bits.dtype).tobytes())


def best(fn, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return min(times)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--path", type=Path, default=Path("/tmp/qscale-bench-scan.safetensors"))
    ap.add_argument("--size-mb", type=int, default=2048)
    ap.add_argument("--repeat", "-n", type=int, default=5)
    ap.add_argument("--target", type=float, default=0.8)
    ap.add_argument("--rebuild", action="store_true")
    args = ap.parse_args()
    path: Path = args.path
    if args.rebuild or not path.is_file() or path.stat().st_size < args.size_mb << 20:
        build(path, args.size_mb << 20)
    size = path.stat().st_size

    def cat() -> None:
        with open(os.devnull, "wb") as null:
            subprocess.run(["cat", str(path)], stdout=null, check=True)

    scanned = {}

    def scan() -> None:
        with open(path, "rb") as fh:
            header = read_header(fh, file=path.name, file_size=size)
            scanned["scan"] = scan_file(fh.fileno(), header)

    cat()  # warm the page cache
    t_cat = best(cat, args.repeat)
    t_scan = best(scan, args.repeat)
    result = scanned["scan"]
    assert not result.bad, "the bench file holds only valid scales"
    ratio = t_cat / t_scan
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"file: {size / 1e9:.2f} GB, {result.tensors} scale tensors, {result.nbytes / 1e9:.2f} GB"
          " of scales")
    print(f"cat : {t_cat:.3f} s  {size / t_cat / 1e9:.2f} GB/s")
    print(f"scan: {t_scan:.3f} s  {result.nbytes / t_scan / 1e9:.2f} GB/s of scales,"
          f" {size / t_scan / 1e9:.2f} GB/s of file")
    print(f"scan / cat bandwidth: {ratio:.2f} (target >= {args.target}); peak RSS {rss:.0f} MB")
    return 0 if ratio >= args.target else 1


if __name__ == "__main__":
    raise SystemExit(main())
