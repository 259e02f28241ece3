"""A seeded, bounded fuzzer of safetensors files: valid files written by the safetensors
library, then broken one way at a time, at the JSON level (a value swapped for another JSON
type, a key repeated, nesting, big or negative numbers) and at the byte level (tokens spliced
in, bytes flipped, the file cut short).

``python -m tests.fuzz.headers [COUNT] [SEED]`` runs it by hand and prints every case where
qscale and the safetensors library disagree; pytest runs a small count
(``tests/test_fuzz.py``; ``QSCALE_FUZZ_CASES`` raises it).
"""

from __future__ import annotations

import io
import json
import random
import sys
from collections.abc import Iterator
from typing import Any

import numpy as np
from safetensors.numpy import save

#: Tokens the library and Python's json module read differently, or not at all.
TOKENS = [
    b"-0", b"NaN", b"Infinity", b"\xef\xbb\xbf", b"\\ud800", b"\\udc00", b"\\u0000", b"[" * 130,
    b"18446744073709551616", b"1e3", b"2.0", b"true", b"null", b"{}", b"[]", b'""', b",", b"}",
    b'"__metadata__":{"a":1},', b'"__metadata__":{},', b'"dtype":"F32",', b"\xff", b"\x00",
    b" ", b"\n", b'"shape":{},', b"\\", b'"',
]  # fmt: skip
#: JSON values swapped in for a header's values.
VALUES: list[Any] = [
    -1, 0, 1, 2**64, 2**63, 1.5, -0.0, True, None, "", "F32", "f32", "F4", [], [1], [0, 0],
    [0, 0, 0], [1.0], {}, {"a": 1}, {"a": "b"}, [[1]], "x" * 40,
]  # fmt: skip


def seeds() -> list[bytes]:
    """Valid files: compact headers as the library writes them, with and without metadata."""
    rng = np.random.default_rng(0)
    small = {"a": np.zeros(2, np.float32), "b.weight_scale": np.ones((1,), np.float16)}
    many = {f"model.layers.{i}.mlp.experts.{j}.w{k}": rng.random((4, 8), np.float32).astype(
        np.float16) for i in range(2) for j in range(3) for k in (1, 2, 3)}  # fmt: skip
    many["model.embed_tokens.weight"] = np.zeros((8, 8), np.uint8)
    return [
        save(small),
        save(small, metadata={"format": "pt"}),
        save(many, metadata={"format": "pt", "quant": "fp8"}),
        save({}),
    ]


def split(raw: bytes) -> tuple[dict[str, Any], bytes]:
    n = int.from_bytes(raw[:8], "little")
    return json.loads(raw[8 : 8 + n]), raw[8 + n :]


def join(header: bytes, data: bytes, *, pad: bool = True) -> bytes:
    if pad:
        header += b" " * (-len(header) % 8)
    return len(header).to_bytes(8, "little") + header + data


def _json_mutation(rng: random.Random, obj: dict[str, Any]) -> bytes:
    keys = list(obj)
    kind = rng.randrange(6)
    if kind == 0 and keys:  # a value of an entry replaced
        k = rng.choice(keys)
        entry = obj[k]
        if isinstance(entry, dict) and entry:
            entry[rng.choice(list(entry))] = rng.choice(VALUES)
        else:
            obj[k] = rng.choice(VALUES)
    elif kind == 1:  # metadata of another type
        obj["__metadata__"] = rng.choice(VALUES)
    elif kind == 2 and keys:  # an extra key, nested some depth
        k = rng.choice(keys)
        if isinstance(obj[k], dict):
            depth = rng.choice([1, 10, 124, 125, 126, 127, 200])
            obj[k]["x"] = json.loads("[" * depth + "]" * depth)
    elif kind == 3 and keys:  # an entry dropped (leaves a gap, or nothing)
        del obj[rng.choice(keys)]
    elif kind == 4 and keys:  # offsets shifted
        k = rng.choice(keys)
        if isinstance(obj[k], dict) and isinstance(obj[k].get("data_offsets"), list):
            shift = rng.choice([-8, -1, 1, 8])
            obj[k]["data_offsets"] = [o + shift for o in obj[k]["data_offsets"]]
    text = json.dumps(obj, separators=(",", ":") if rng.random() < 0.7 else None)
    if kind == 5 and keys:  # a key repeated
        k = rng.choice(keys)
        field = rng.choice(['"dtype":"F32",', '"shape":[2],', '"__metadata__":{},'])
        text = text.replace(f'"{k}":{{', f'"{k}":{{{field}', 1) if "__" not in field else (
            "{" + field + text[1:])  # fmt: skip
    return text.encode()


def _byte_mutation(rng: random.Random, body: bytes) -> bytes:
    at = rng.randrange(len(body) + 1)
    kind = rng.randrange(3)
    if kind == 0:
        return body[:at] + rng.choice(TOKENS) + body[at:]
    if kind == 1:
        return body[:at] + rng.choice(TOKENS) + body[at + 1 :]
    return body[:at] + bytes([rng.randrange(256)]) + body[at + 1 :]


def cases(count: int, seed: int = 0) -> Iterator[bytes]:
    """``count`` files, each a seed broken once or twice."""
    rng = random.Random(seed)
    base = seeds()
    for _ in range(count):
        raw = rng.choice(base)
        obj, data = split(raw)
        r = rng.random()
        if r < 0.55:
            body = _json_mutation(rng, obj)
        elif r < 0.95:
            n = int.from_bytes(raw[:8], "little")
            body = _byte_mutation(rng, raw[8 : 8 + n])
        else:  # the file cut short, or its length field changed
            cut = raw[: rng.randrange(len(raw))]
            yield cut if rng.random() < 0.5 else (len(raw)).to_bytes(8, "little") + cut[8:]
            continue
        yield join(body, data, pad=rng.random() < 0.8)


def library_accepts(raw: bytes, path: str) -> bool:
    """Whether safetensors' ``safe_open`` reads the file: header, metadata, every slice."""
    from safetensors import safe_open

    with open(path, "wb") as fh:
        fh.write(raw)
    try:
        with safe_open(path, "numpy") as f:
            f.metadata()
            names = f.keys()
            for k in names:
                f.get_slice(k)
    except Exception:  # any refusal (SafetensorError, OSError) counts
        return False
    return True


def qscale_accepts(raw: bytes) -> bool:
    """Whether qscale's header reader reads the file; any exception but HeaderError fails."""
    from qscale.errors import HeaderError
    from qscale.safetensors_io import read_header

    try:
        read_header(io.BytesIO(raw), file="f.safetensors", file_size=len(raw))
    except HeaderError:
        return False
    return True


def main(argv: list[str]) -> int:
    import tempfile

    count = int(argv[0]) if argv else 10_000
    seed = int(argv[1]) if len(argv) > 1 else 0
    bad = 0
    with tempfile.TemporaryDirectory() as d:
        for i, raw in enumerate(cases(count, seed)):
            lib, ours = library_accepts(raw, f"{d}/f.safetensors"), qscale_accepts(raw)
            if lib != ours:
                bad += 1
                print(f"case {i}: library {lib}, qscale {ours}: {raw[:300]!r}")
    print(f"{count} cases, {bad} disagreements")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
