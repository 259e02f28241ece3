"""The streaming writer: tensor order, header layout, untouched bytes, sparse sources."""

from __future__ import annotations

import os

import torch
from builders import qwen3_5_moe
from safetensors.torch import load_file, save_file

from qscale import read_checkpoint
from qscale.fix.layout import copy_range, file_size, layout_file, write_file
from qscale.fix.model import DropTensor, RenameTensor, TensorData, WriteTensor


def test_layout_keeps_order_and_places_new_tensors_after_their_anchor(tmp_path):
    save_file(
        {"a": torch.ones(4), "b": torch.zeros(2, dtype=torch.bfloat16), "c": torch.ones(3)},
        str(tmp_path / "m.safetensors"),
        metadata={"format": "pt"},
    )
    (tmp_path / "config.json").write_text('{"architectures": ["LlamaForCausalLM"]}')
    ckpt = read_checkpoint(tmp_path / "m.safetensors")
    [header] = ckpt.files
    edits = [
        DropTensor("a", header.file),
        RenameTensor("c", "c2", header.file),
        WriteTensor("b", header.file, "F32", (2,)),
        WriteTensor("n", header.file, "U8", (5,), after="b"),
        WriteTensor("z", header.file, "U8", (1,)),
    ]
    layout = layout_file(header, edits)
    stored = [t.name for t in sorted(header.tensors, key=lambda t: t.begin)]
    want = {"a": [], "b": ["b", "n"], "c": ["c2"]}
    assert [t.name for t in layout] == [n for s in stored for n in want[s]] + ["z"]
    data = {
        "b": TensorData("F32", (2,), torch.tensor([1.5, 2.5]).numpy().tobytes()),
        "n": TensorData("U8", (5,), bytes(range(5))),
        "z": TensorData("U8", (1,), b"\x07"),
    }
    out = tmp_path / "out.safetensors"
    write_file(str(out), str(tmp_path / "m.safetensors"), layout, header.metadata, data.__getitem__)
    assert out.stat().st_size == file_size(layout, header.metadata)
    got = load_file(str(out))
    assert torch.equal(got["c2"], torch.ones(3)) and torch.equal(got["b"], torch.tensor([1.5, 2.5]))
    assert got["n"].tolist() == [0, 1, 2, 3, 4] and got["z"].tolist() == [7]
    assert int.from_bytes(out.read_bytes()[:8], "little") % 8 == 0  # header padded to 8 bytes
    read_checkpoint(out)  # strict validation: offsets tile the buffer


def test_holes_of_a_sparse_source_stay_holes(tmp_path):
    src, dst = tmp_path / "src", tmp_path / "dst"
    size = 64 << 20
    with open(src, "wb") as fh:
        fh.truncate(size)
        fh.seek(size // 2)
        fh.write(b"x" * 4096)
    s_fd, d_fd = os.open(src, os.O_RDONLY), os.open(dst, os.O_WRONLY | os.O_CREAT)
    try:
        os.write(d_fd, b"HEAD")
        copy_range(s_fd, d_fd, 0, size)
        os.ftruncate(d_fd, os.lseek(d_fd, 0, os.SEEK_CUR))
    finally:
        os.close(s_fd)
        os.close(d_fd)
    assert dst.read_bytes() == b"HEAD" + src.read_bytes()
    assert os.stat(dst).st_blocks * 512 < size // 4  # not 64 MB of written zeros


def test_rewritten_file_copies_untouched_tensors_byte_for_byte(tmp_path):
    src = qwen3_5_moe("ct-w4a16").write(tmp_path)
    ckpt = read_checkpoint(src)
    [header] = ckpt.files
    name = next(n for n in ckpt.tensors if n.endswith("out_proj.weight_scale"))
    t = ckpt.tensors[name]
    layout = layout_file(header, [RenameTensor(name, name + "_renamed", header.file)])
    write_file(
        str(tmp_path / "o.safetensors"),
        str(src / header.file),
        layout,
        header.metadata,
        lambda n: (_ for _ in ()).throw(AssertionError(n)),
    )
    old, new = load_file(str(src / header.file)), load_file(str(tmp_path / "o.safetensors"))
    assert set(new) == (set(old) - {name}) | {name + "_renamed"}
    for n, v in old.items():
        assert torch.equal(
            new[n if n != name else name + "_renamed"].view(torch.uint8), v.view(torch.uint8)
        )
    assert t.dtype == "BF16"
