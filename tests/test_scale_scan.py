"""The deep scan: every element of every scale tensor, streamed (qscale.scale_scan)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from builders import qwen3_5_moe
from safetensors.torch import save_file

from qscale import CheckOptions, check, read_checkpoint
from qscale.safetensors_io import decode, read_header
from qscale.scale_scan import (
    ENCODINGS,
    KINDS,
    SENTINEL_MAGNITUDE,
    FileReader,
    classify,
    scan_tensors,
)

P = "model.language_model.layers"
QKV = f"{P}.0.linear_attn.in_proj_qkv.weight_scale"
DOWN = f"{P}.3.mlp.experts.1.down_proj.weight_scale"


def _qs303(built, tmp_path, **read):
    ckpt = read_checkpoint(built.write(tmp_path), **read)
    return ckpt, check(ckpt, CheckOptions(select=["QS303"]))


def test_e8m0_nan_byte_in_a_u8_group_scale(tmp_path):
    built = qwen3_5_moe("ct-mxfp4")
    built.tensors[QKV][3, 1] = 0xFF
    _, report = _qs303(built, tmp_path)
    [f] = report.findings
    assert f.location.tensor == QKV
    assert "[3, 1] = NaN (E8M0 byte 0xFF)" in f.message


def test_near_miss_e8m0_largest_finite_byte(tmp_path):
    built = qwen3_5_moe("ct-mxfp4")
    built.tensors[QKV][3, 1] = 0xFD  # 2**126: finite, below the float32 sentinel
    built.tensors[QKV][3, 2] = 0x00  # 2**-127: tiny but > 0
    ckpt, report = _qs303(built, tmp_path)
    assert report.findings == () and ckpt.scale_scan is not None
    assert ckpt.scale_scan.tensors > 0 and not ckpt.scale_scan.bad


def test_one_zero_row_in_an_fp8_block_scale(tmp_path):
    built = qwen3_5_moe("ct-nvfp4")
    name = next(n for n in built.tensors if n.endswith("down_proj.weight_scale")
                and built.tensors[n].numel() > 64)
    built.tensors[name][5] = 0  # one row of the [out, in/16] E4M3 scale grid
    _, report = _qs303(built, tmp_path)
    [f] = report.findings
    cols = built.tensors[name].shape[1]
    assert f.location.tensor == name
    assert f"[5, 0] = 0 (and {cols - 1} more of {built.tensors[name].numel()} values:" \
        f" {cols} zero)" in f.message


@pytest.mark.parametrize(("value", "word"), [
    (-0.5, "negative"), (math.inf, "inf"), (math.nan, "NaN"), (-3.0e38, "sentinel"),
])
def test_bf16_group_scale(tmp_path, value, word):
    built = qwen3_5_moe("ct-w4a16").retype(r"down_proj\.weight_scale$", torch.bfloat16)
    name = next(n for n in built.tensors if n.endswith("down_proj.weight_scale"))
    built.tensors[name][7, 0] = value
    built.tensors[name][9, 0] = value
    _, report = _qs303(built, tmp_path)
    [f] = [f for f in report.findings if f.location.tensor == name]
    assert "[7, 0] = " in f.message and "(and 1 more of" in f.message
    assert f"2 {word}" in f.message or f"2 float32 {word}" in f.message


def test_header_only_skips_the_deep_scan_and_says_so(tmp_path):
    built = qwen3_5_moe("ct-mxfp4")
    built.tensors[QKV][3, 1] = 0xFF
    ckpt, report = _qs303(built, tmp_path, header_only=True)
    assert ckpt.scale_scan is None and ckpt.header_only
    assert report.findings == ()
    assert not report.complete
    assert [c for c, _ in report.skipped] == ["QS303"]


def test_sharded_checkpoint_scans_every_file(tmp_path):
    built = qwen3_5_moe("ct-mxfp4")
    built.tensors[QKV][0, 0] = 0xFF
    other = next(n for n in built.tensors if n.endswith("weight_scale") and n != QKV
                 and built.tensors[n].numel() > 64 and n > QKV)
    built.tensors[other][1, 1] = 0xFF
    ckpt = read_checkpoint(built.write(tmp_path, shards=3))
    assert ckpt.scale_scan is not None and set(ckpt.scale_scan.bad) == {QKV, other}


# ------------------------------------------------------------------ the scanner against numpy


def _brute(dtype: str, raw: bytes) -> tuple[int, dict[str, int], int]:
    enc = ENCODINGS[dtype]
    vals = decode(enc.decode_as, (len(raw) // enc.view.itemsize,), raw)
    kinds = classify(vals)
    bad = np.flatnonzero(kinds >= 0)
    counts = {KINDS[k]: int(n) for k, n in enumerate(np.bincount(kinds[bad], minlength=6)) if n}
    return len(bad), counts, int(bad[0]) if len(bad) else -1


TORCH = {"F32": torch.float32, "BF16": torch.bfloat16, "F16": torch.float16,
         "F8_E4M3": torch.float8_e4m3fn, "F8_E5M2": torch.float8_e5m2, "U8": torch.uint8,
         "F8_E8M0": torch.float8_e8m0fnu}


@pytest.mark.parametrize("dtype", sorted(TORCH))
@pytest.mark.parametrize("chunk", [64, 1 << 20])
def test_scan_matches_decoding_every_value(tmp_path, dtype, chunk):
    rng = np.random.default_rng(hash(dtype) % 1000)
    tensors = {}
    width = ENCODINGS[dtype].view.itemsize
    for i in range(12):
        n = int(rng.integers(1, 300))
        raw = rng.integers(0, 256, size=n * width, dtype=np.uint8)
        if i >= 9:  # one bit pattern throughout: zeros (a sparse file's hole), then random ones
            one = np.zeros(width, np.uint8) if i == 9 else raw[:width]
            raw = np.tile(one, n)
        elif i % 3:  # mostly good values: 1.0 patterns, a few random bytes
            good = np.frombuffer(torch.ones(n, dtype=TORCH[dtype]).view(torch.uint8).numpy()
                                 .tobytes(), dtype=np.uint8).copy()
            keep = rng.random(good.size) < 0.01
            good[keep] = raw[keep]
            raw = good
        t = torch.from_numpy(raw.copy()).view(TORCH[dtype]) if TORCH[dtype] != torch.uint8 \
            else torch.from_numpy(raw.copy())
        tensors[f"m.{i}.weight_scale"] = t
        tensors[f"m.{i}.weight"] = torch.zeros(int(rng.integers(0, 40)), dtype=torch.uint8)
    path = tmp_path / "x.safetensors"
    save_file(tensors, str(path))
    with open(path, "rb") as fh:
        header = read_header(fh, file=path.name, file_size=path.stat().st_size)
        scales = [t for t in header.tensors if t.name.endswith("weight_scale")]
        scan = scan_tensors(FileReader(fh.fileno(), path.name, chunk), scales, chunk=chunk)
    assert scan.tensors == 12 and scan.nbytes == sum(t.nbytes for t in scales)
    raw_file = path.read_bytes()
    for t in scales:
        bad, counts, first = _brute(dtype, raw_file[t.begin:t.end])
        st = scan.bad.get(t.name)
        if not bad:
            assert st is None
            continue
        assert st is not None and (st.bad, dict(st.counts), st.first) == (bad, counts, first)


def test_sentinel_threshold_is_the_float32_extreme():
    hi = ENCODINGS["F32"].hi
    assert float(np.array(hi, dtype="<i4").view("<f4")) < SENTINEL_MAGNITUDE
    assert float(np.array(hi + 1, dtype="<i4").view("<f4")) >= SENTINEL_MAGNITUDE


def test_small_u8_e8m0_scale_is_judged_from_its_decoded_bytes(tmp_path):
    built = qwen3_5_moe("ct-mxfp4").reshape(QKV, (2, 4))
    built.tensors[QKV][1, 2] = 0xFF
    ckpt, report = _qs303(built, tmp_path)
    assert QKV in ckpt.values and QKV not in ckpt.scale_scan.bad  # decoded, not streamed
    [f] = report.findings
    assert "[6] = NaN (E8M0 byte 0xFF)" in f.message


def test_files_scanned_through_one_buffer_give_what_each_gives_alone(tmp_path):
    """The readers of a checkpoint's files share one read buffer; a later, smaller file
    reads into the start of what an earlier one filled, and is judged by its own bytes."""
    from qscale.scale_scan import Buffer, scan_file

    big = torch.full((4096,), float("nan"))  # every value bad, in the shared buffer first
    small = torch.tensor([1.0, 0.0, 2.0])  # one zero
    paths = []
    for i, t in enumerate((big, small)):
        path = tmp_path / f"{i}.safetensors"
        save_file({f"m{i}.weight_scale": t, f"m{i}.weight": torch.zeros(4)}, str(path))
        paths.append(path)
    shared = Buffer()
    alone, together = [], []
    for path in paths:
        with open(path, "rb") as fh:
            header = read_header(fh, file=path.name, file_size=path.stat().st_size)
            alone.append(scan_file(fh.fileno(), header))
            together.append(scan_file(fh.fileno(), header, buffer=shared))
    assert [repr(s.bad) for s in together] == [repr(s.bad) for s in alone]  # NaN != NaN
    assert together[1].bad["m1.weight_scale"].counts == {"zero": 1}
