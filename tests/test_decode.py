"""``safetensors_io.decode`` (numpy only) against torch's own reading of the same bytes,
``read_checkpoint`` decoding small tensors of a built checkpoint to the values written, and the
three header parse paths agreeing on random and broken headers."""

from __future__ import annotations

import json
import math
import random
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from budget import cases
from builders import qwen3_5_moe

from qscale import read_checkpoint
from qscale.checkpoint import SMALL_NUMEL
from qscale.errors import HeaderError, ShardIndexError
from qscale.safetensors_io import (
    _BITS,
    DTYPES,
    FileHeader,
    _check_layout,
    _parse_body,
    _parse_entry,
    _parse_fast,
    _parse_json,
    _parse_scan,
    decode,
)
from qscale.safetensors_scan import scan_header

TORCH = {
    "BF16": torch.bfloat16,
    "F16": torch.float16,
    "F32": torch.float32,
    "F64": torch.float64,
    "F8_E4M3": torch.float8_e4m3fn,
    "F8_E5M2": torch.float8_e5m2,
    "F8_E8M0": torch.float8_e8m0fnu,
    "U8": torch.uint8,
    "I8": torch.int8,
    "I16": torch.int16,
    "I32": torch.int32,
    "I64": torch.int64,
    "BOOL": torch.bool,
}


def raw_bytes(t: torch.Tensor) -> bytes:
    """The little-endian bytes safetensors stores for ``t``."""
    assert np.little_endian
    return t.contiguous().view(torch.uint8).numpy().tobytes()


def as_f64(t: torch.Tensor) -> np.ndarray:
    return t.to(torch.float64).numpy()


def all_patterns(dtype: torch.dtype) -> torch.Tensor:
    """Every bit pattern of an 8- or 16-bit dtype."""
    if dtype.itemsize == 1:
        return torch.arange(256, dtype=torch.int32).to(torch.uint8).view(dtype)
    return torch.arange(-(2**15), 2**15, dtype=torch.int32).to(torch.int16).view(dtype)


@pytest.mark.filterwarnings("ignore:invalid value encountered in cast")  # BF16 sNaN patterns
@pytest.mark.parametrize("code", ["F8_E4M3", "F8_E5M2", "F8_E8M0", "BF16", "F16"])
def test_every_bit_pattern_matches_torch(code: str) -> None:
    t = all_patterns(TORCH[code])
    got = decode(code, tuple(t.shape), raw_bytes(t))
    np.testing.assert_array_equal(got, as_f64(t))  # NaN == NaN here; ±inf and ±0 exact
    real = ~np.isnan(got)  # the sign of a NaN means nothing
    assert np.array_equal(np.signbit(got[real]), np.signbit(as_f64(t)[real]))


@pytest.mark.parametrize(
    "code",
    ["BF16", "F8_E4M3", "F8_E5M2", "F8_E8M0", "F16", "F32"],
)  # fmt: skip
def test_floats_are_widened_to_float64(code: str) -> None:
    assert decode(code, (2,), bytes(2 * TORCH[code].itemsize)).dtype == np.float64


def test_e4m3_has_exactly_two_nans_and_no_inf() -> None:
    got = decode("F8_E4M3", (256,), bytes(range(256)))
    assert [b for b in range(256) if np.isnan(got[b])] == [0x7F, 0xFF]
    assert not np.isinf(got).any()
    assert got[0x7E] == 448.0 and got[0xFE] == -448.0
    assert got[0x01] == 2.0**-9  # smallest subnormal
    assert got[0x80] == 0.0 and np.signbit(got[0x80])


def test_e5m2_specials() -> None:
    got = decode("F8_E5M2", (256,), bytes(range(256)))
    assert got[0x7C] == np.inf and got[0xFC] == -np.inf
    assert np.isnan(got[0x7D:0x80]).all() and np.isnan(got[0xFD:]).all()
    assert got[0x7B] == 57344.0


def test_e8m0_semantics() -> None:
    got = decode("F8_E8M0", (256,), bytes(range(256)))
    expected = [2.0 ** (x - 127) for x in range(255)]
    np.testing.assert_array_equal(got[:255], expected)
    assert np.isnan(got[255])
    assert got[127] == 1.0 and got[0] == 2.0**-127 and got[254] == 2.0**127
    assert (got[:255] > 0).all()  # no sign bit, no zero


@pytest.mark.parametrize("code", ["F32", "F64", "BF16", "F16"])
def test_float_values_and_specials(code: str) -> None:
    g = torch.Generator().manual_seed(0)
    vals = torch.cat(
        [
            torch.randn(97, generator=g, dtype=torch.float64) * 1e3,
            torch.tensor([0.0, -0.0, 1e-40, -1e-8, float("inf"), float("-inf"), float("nan")]),
        ]
    ).to(TORCH[code])
    t = vals.reshape(8, 13)
    got = decode(code, (8, 13), raw_bytes(t))
    assert got.shape == (8, 13)
    np.testing.assert_array_equal(got, as_f64(t))
    real = ~np.isnan(got)
    assert np.array_equal(np.signbit(got[real]), np.signbit(as_f64(t)[real]))


@pytest.mark.parametrize("code", ["U8", "I8", "I16", "I32", "I64", "BOOL"])
def test_integers_keep_their_type(code: str) -> None:
    dtype = TORCH[code]
    if dtype == torch.bool:
        t = torch.tensor([[True, False, True], [False, False, True]])
    else:
        info = torch.iinfo(dtype)
        t = torch.tensor([info.min, info.min + 1, -1 if info.min else 1, 0, 1, info.max])
        t = t.to(dtype).reshape(2, 3)
    got = decode(code, (2, 3), raw_bytes(t))
    np.testing.assert_array_equal(got, t.numpy())
    assert got.dtype == t.numpy().dtype


@pytest.mark.parametrize("code", ["F32", "BF16", "F8_E4M3", "F8_E8M0", "I64"])
def test_scalar_and_empty_shapes(code: str) -> None:
    one = torch.ones((), dtype=TORCH[code]) if code != "I64" else torch.tensor(7)
    got = decode(code, (), raw_bytes(one.reshape(1)))
    assert got.shape == () and got == as_f64(one)
    empty = decode(code, (0, 4), b"")
    assert empty.shape == (0, 4)


def test_decode_is_little_endian() -> None:
    assert decode("I32", (1,), b"\x01\x00\x00\x00")[0] == 1
    assert decode("BF16", (1,), b"\x80\x3f")[0] == 1.0
    assert decode("F16", (1,), b"\x00\x3c")[0] == 1.0


@pytest.mark.parametrize("code", ["F4", "F6_E2M3", "F6_E3M2"])
def test_sub_byte_floats_are_not_decoded(code: str) -> None:
    with pytest.raises(HeaderError):
        decode(code, (2,), b"\x00")


# --------------------------------------------------------------------------- read_checkpoint


@pytest.mark.parametrize("scheme", ["ct-fp8", "ct-w4a16", "ct-nvfp4", "modelopt-fp8"])
def test_read_checkpoint_decodes_small_tensors(scheme: str, tmp_path: Path) -> None:
    built = qwen3_5_moe(scheme)
    ckpt = read_checkpoint(built.write(tmp_path, shards=2))
    small = {n: t for n, t in built.tensors.items() if t.numel() <= SMALL_NUMEL}
    assert small and set(ckpt.values) == set(small)
    for name, t in small.items():
        got = ckpt.value(name)
        assert got is not None and got.shape == tuple(t.shape), name
        if t.dtype.is_floating_point:
            np.testing.assert_array_equal(got, as_f64(t), err_msg=name)
        else:
            np.testing.assert_array_equal(got, t.numpy(), err_msg=name)
    assert ckpt.value(next(n for n, t in built.tensors.items() if t.numel() > SMALL_NUMEL)) is None


def test_read_checkpoint_decodes_set_values(tmp_path: Path) -> None:
    p = "model.language_model.layers.1.self_attn.q_proj"
    built = (
        qwen3_5_moe("ct-fp8")
        .set_value(f"{p}.weight_scale", 0.0078125)
        .set_value(f"{p}.input_scale", 3.0)
        .add(f"{p}.e8m0", torch.tensor([1.0, 0.5, 2.0**-127, 2.0**127]).to(torch.float8_e8m0fnu))
        .add(f"{p}.shape", torch.tensor([256, 128], dtype=torch.int64))
    )
    ckpt = read_checkpoint(built.write(tmp_path))
    assert ckpt.tensors[f"{p}.e8m0"].dtype == "F8_E8M0"
    assert ckpt.value(f"{p}.weight_scale").tolist() == [0.0078125]  # type: ignore[union-attr]
    assert ckpt.value(f"{p}.input_scale").tolist() == [3.0]  # type: ignore[union-attr]
    assert ckpt.value(f"{p}.e8m0").tolist() == [1.0, 0.5, 2.0**-127, 2.0**127]  # type: ignore[union-attr]
    assert ckpt.value(f"{p}.shape").tolist() == [256, 128]  # type: ignore[union-attr]


def test_read_values_reads_large_tensors(tmp_path: Path) -> None:
    built = qwen3_5_moe("ct-fp8-block")
    ckpt = read_checkpoint(built.write(tmp_path, shards=3))
    large = [n for n, t in built.tensors.items() if t.numel() > SMALL_NUMEL][:6]
    got = ckpt.read_values(large)
    for name in large:
        np.testing.assert_array_equal(got[name], as_f64(built.tensors[name]), err_msg=name)


# --------------------------------------------------------------------------- header parse paths
#
# A header is parsed by the compact-layout scan (safetensors_scan) when it can be, else by
# json.loads and the column-wise checks (_parse_fast), else entry by entry (_parse_entry and
# _check_layout), which word every error. Each faster path must give exactly what the slower
# one gives, or step aside: random headers in the writers' layout, broken at random, check it.

INTERESTING = b'0123456789,:[]{}" \\-.eE}\n\x01\xc3'


def _random_name(rng: random.Random) -> str:
    alphabet = "abcxyz.0123456789_-"
    name = "".join(rng.choice(alphabet) for _ in range(rng.randint(1, 24)))
    if rng.random() < 0.15:  # text the scan must not mistake for structure
        name += rng.choice(['},"', '":', '":{"dtype":"', " ", "é", '"', "\\", "[1,2]},"])
    return name


def _random_header(rng: random.Random) -> tuple[bytes, int]:
    """A header as writers write it (compact, offsets in order or shuffled), and the size of
    the data buffer its offsets describe."""
    entries = []
    pos = 0
    for name in dict.fromkeys(_random_name(rng) for _ in range(rng.randint(1, 12))):
        dtype = rng.choice(list(DTYPES))
        shape = [rng.choice([0, 1, 2, 3, 7, 64, 130]) for _ in range(rng.randint(0, 4))]
        size = (math.prod(shape) * DTYPES[dtype].bits + 7) // 8
        entries.append((name, {"dtype": dtype, "shape": shape, "data_offsets": [pos, pos + size]}))
        pos += size
    if rng.random() < 0.3:
        rng.shuffle(entries)  # header order is not offset order
    header: dict[str, Any] = {}
    meta = rng.choice([None, None, {}, {"format": "pt"}, {"a": "1", "b": 'x},"y'}])
    if meta is not None:
        header["__metadata__"] = meta
    header.update(entries)
    ascii_only = rng.random() < 0.8
    body = json.dumps(header, separators=(",", ":"), ensure_ascii=ascii_only).encode()
    body += b" " * rng.randint(0, 7)
    return body, pos


def _mutate(rng: random.Random, body: bytes, size: int) -> tuple[bytes, int]:
    b = bytearray(body)
    for _ in range(rng.randint(1, 3)):
        i = rng.randrange(len(b))
        kind = rng.randrange(8)
        if kind == 0:
            b[i] = rng.choice(INTERESTING)
        elif kind == 1:
            del b[i]
        elif kind == 2:
            b.insert(i, rng.choice(INTERESTING))
        elif kind == 3:  # a digit run gets a leading zero, or grows past int64
            j = body.find(b"data_offsets", i)
            at = body.find(b"[", j) + 1 if j >= 0 else i
            b[at:at] = rng.choice([b"0", b"00", b"9" * 19, b"-", b"1.", b"1e"])
        elif kind == 4:  # an entry twice, or `__metadata__` as a tensor
            j = body.find(b'},"', i)
            if j >= 0:
                entry = b'"x":{"dtype":"F32","shape":[],"data_offsets":[0,4]},'
                b[j + 2 : j + 2] = rng.choice([entry, b'"__metadata__":{},'])
        elif kind == 5:
            size += rng.choice([-1, 1])  # a data buffer one byte short or long
        else:  # a name repeated, or `__metadata__` as a tensor name, or a closing byte changed
            names = re.findall(rb'"([^"]*)":\{"dtype"', bytes(b))
            j = bytes(b).rfind(b'":{"dtype"')
            if kind == 6 and len(names) > 1 and j > 0:
                k = bytes(b).rfind(b'"', 0, j)
                b[k + 1 : j] = rng.choice([names[0], b"__metadata__"])
            else:
                ends = [m.start() for m in re.finditer(rb"\],|\]\},", bytes(b))]
                if ends:
                    at = rng.choice(ends) + rng.randint(0, 2)
                    b[at] = rng.choice(INTERESTING)
    return bytes(b), size


def _outcome(parse: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    try:
        return parse(*args, **kwargs)
    except HeaderError as exc:
        return (exc.code, exc.message)


#: random headers per seed (tests/budget.py: QSCALE_FUZZ=full runs 300)
HEADER_CASES = cases(100, 300)


@pytest.mark.parametrize("seed", range(6))
def test_header_paths_agree(seed: int) -> None:
    rng = random.Random(seed)
    for case in range(HEADER_CASES):
        body, data = _random_header(rng)
        written = case % 4 == 0  # as a writer wrote it; else broken at random
        if not written:
            body, data = _mutate(rng, body, data)
        start = 8 + len(body)
        size = start + data
        by_json = _outcome(_parse_json, body, start, file="f", file_size=size)
        got = _outcome(_parse_body, body, start, file="f", file_size=size)
        if isinstance(by_json[0], str):  # an error: the same code and message
            assert got == by_json, body
        else:
            assert got == FileHeader("f", size, start, tuple(by_json[1]), by_json[0]), body
        scan = scan_header(body, _BITS)
        fast = None if scan is None else _parse_scan("f", scan, start, size)
        if fast is not None:  # the scan accepted: json.loads must accept the same tensors
            assert (scan.metadata, list(fast)) == by_json, body
        elif written and body.isascii() and b"\\" not in body and len(body) >= 64:
            raise AssertionError(f"the scan refused a header in the writers' layout: {body!r}")


@pytest.mark.parametrize("seed", range(4))
def test_column_checks_agree_with_entry_checks(seed: int) -> None:
    rng = random.Random(seed)
    for case in range(HEADER_CASES):
        body, data = _random_header(rng)
        if case % 3:
            body, data = _mutate(rng, body, data)
        try:
            obj = json.loads(body)
        except ValueError:
            continue
        if not isinstance(obj, dict):
            continue
        obj.pop("__metadata__", None)
        start = 8 + len(body)
        size = start + data

        def one_by_one(obj: dict[str, Any] = obj, start: int = start, size: int = size) -> Any:
            tensors = [_parse_entry("f", n, e, start) for n, e in obj.items()]
            _check_layout("f", tensors, start, size)
            return tensors

        fast = _parse_fast("f", obj, start, size)
        if fast is not None:
            assert fast == _outcome(one_by_one), body


@pytest.mark.parametrize("scheme", ["ct-fp8", "ct-nvfp4", "modelopt-fp8", "ct-w4a16"])
def test_written_headers_take_the_scan(scheme: str, tmp_path: Path) -> None:
    """What the safetensors library writes is in the compact layout the scan reads."""
    for f in sorted(qwen3_5_moe(scheme).write(tmp_path, shards=2).glob("*.safetensors")):
        raw = f.read_bytes()
        body = raw[8 : 8 + int.from_bytes(raw[:8], "little")]
        scan = scan_header(body, _BITS)
        assert scan is not None, f.name
        start, size = 8 + len(body), len(raw)
        by_json = _parse_json(body, start, file=f.name, file_size=size)[1]
        assert _parse_scan(f.name, scan, start, size) == tuple(by_json)


def test_index_in_another_order_than_the_files(tmp_path: Path) -> None:
    root = qwen3_5_moe("ct-fp8").write(tmp_path, shards=3)
    index = root / "model.safetensors.index.json"
    obj = json.loads(index.read_text())
    ordered = read_checkpoint(root).tensors
    obj["weight_map"] = dict(sorted(obj["weight_map"].items(), reverse=True))
    index.write_text(json.dumps(obj))
    assert read_checkpoint(root).tensors == ordered
    name = next(iter(obj["weight_map"]))
    other = next(f for f in obj["weight_map"].values() if f != obj["weight_map"][name])
    obj["weight_map"][name] = other
    index.write_text(json.dumps(obj))
    with pytest.raises(ShardIndexError, match=f"places `{re.escape(name)}` in {other}"):
        read_checkpoint(root)
