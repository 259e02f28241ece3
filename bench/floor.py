"""The I/O floor ``bench_check.py`` compares ``qscale check`` with, importing only the standard
library: the measured child runs it in a fresh interpreter, so whatever this module imports is
part of the floor (``tests/replicas.py``, which builds the layouts, imports numpy: ~0.13 s of
CPU with the BLAS threads numpy starts, which no reader of headers and scale bytes needs)."""

from __future__ import annotations

import json
import os
from pathlib import Path

INDEX = "model.safetensors.index.json"


def floor(d: str) -> None:
    """Every header (length, bytes, ``json.loads``), the index parsed, every scale byte read."""
    folder = Path(d)
    json.loads((folder / INDEX).read_bytes())
    buf = bytearray(1 << 24)
    view = memoryview(buf)
    for path in sorted(folder.glob("*.safetensors")):
        fd = os.open(path, os.O_RDONLY)
        try:
            n = int.from_bytes(os.pread(fd, 8, 0), "little")
            header = json.loads(os.pread(fd, n, 8))
            base = 8 + n
            for name, info in header.items():
                if name == "__metadata__" or "scale" not in name.rpartition(".")[2]:
                    continue
                lo, hi = info["data_offsets"]
                while lo < hi:
                    k = os.preadv(fd, [view[: min(hi - lo, len(buf))]], base + lo)
                    if k <= 0:
                        raise OSError(f"{path}: short read")
                    lo += k
        finally:
            os.close(fd)
