"""``safetensors_io.decode`` (numpy only) against torch's own reading of the same bytes, and
``read_checkpoint`` decoding small tensors of a built checkpoint to the values written."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from builders import qwen3_5_moe

from qscale.checkpoint import SMALL_NUMEL, read_checkpoint
from qscale.errors import HeaderError
from qscale.safetensors_io import decode

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
