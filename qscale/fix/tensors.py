"""TensorSource: read a source tensor's bytes, as numpy or torch; encode new contents.

Only the tensors a change rewrites are read. torch is imported inside the functions that need
it (the unsafe fixes), never when this module is imported.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from qscale.checkpoint import Checkpoint
from qscale.errors import CheckpointNotFound, HeaderError
from qscale.fix.model import TensorData
from qscale.safetensors_io import TensorInfo, decode

if TYPE_CHECKING:
    import torch

#: safetensors dtype -> torch dtype attribute name
_TORCH = {
    "BOOL": "bool",
    "U8": "uint8",
    "I8": "int8",
    "I16": "int16",
    "I32": "int32",
    "I64": "int64",
    "F16": "float16",
    "BF16": "bfloat16",
    "F32": "float32",
    "F64": "float64",
    "F8_E4M3": "float8_e4m3fn",
    "F8_E5M2": "float8_e5m2",
    "F8_E8M0": "uint8",  # the exponent bytes; callers that need values decode them
}


class TensorSource:
    """Reads tensors of the source checkpoint (read-only; files are opened for reading only)."""

    def __init__(self, ckpt: Checkpoint) -> None:
        if ckpt.root is None:
            raise CheckpointNotFound(f"{ckpt.source}: `qscale fix` needs a local checkpoint")
        self.ckpt = ckpt
        self.root = ckpt.root

    def info(self, name: str) -> TensorInfo:
        """The header entry of a stored tensor."""
        return self.ckpt.tensors[name]

    def raw(self, name: str) -> bytes:
        """The stored bytes of one tensor."""
        t = self.ckpt.tensors[name]
        with open(self.root / t.file, "rb") as fh:
            fh.seek(t.begin)
            data = fh.read(t.nbytes)
        if len(data) != t.nbytes:
            raise HeaderError(f"{t.file}: tensor `{name}` is cut short (truncated file)")
        return data

    def array(self, name: str) -> np.ndarray:
        """Decoded values (floats widened to float64; see :func:`safetensors_io.decode`)."""
        t = self.ckpt.tensors[name]
        return decode(t.dtype, t.shape, self.raw(name))

    def torch(self, name: str) -> torch.Tensor:
        """The tensor as torch holds it (same dtype and shape; a private copy)."""
        t = self.ckpt.tensors[name]
        return to_torch(t.dtype, t.shape, self.raw(name))


def torch_dtype(dtype: str) -> Any:
    """The torch dtype for a safetensors dtype code."""
    import torch

    return getattr(torch, _TORCH[dtype])


def to_torch(dtype: str, shape: tuple[int, ...], data: bytes) -> torch.Tensor:
    """Bytes -> a torch tensor of that dtype and shape."""
    import torch

    flat = torch.frombuffer(bytearray(data), dtype=torch.uint8) if data else torch.empty(0)
    return flat.view(torch_dtype(dtype)).reshape(shape).clone()


def from_torch(t: torch.Tensor, dtype: str | None = None) -> TensorData:
    """A torch tensor -> TensorData (``dtype``: the safetensors code, inferred when None)."""
    import torch

    code = dtype or next(k for k, v in _TORCH.items() if getattr(torch, v) == t.dtype)
    data = t.detach().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes()
    return TensorData(code, tuple(t.shape), data)


def widen_to_f32(dtype: str, data: bytes) -> bytes | None:
    """Exact F32 bytes of BF16/F16/F32 values; F64 only when every value is exact in F32;
    None when the cast would change a value."""
    if dtype == "F32":
        return data
    if dtype == "BF16":
        u32 = np.frombuffer(data, dtype="<u2").astype(np.uint32) << 16
        return u32.astype("<u4").tobytes()
    if dtype == "F16":
        return np.frombuffer(data, dtype="<f2").astype("<f4").tobytes()
    if dtype == "F64":
        wide = np.frombuffer(data, dtype="<f8")
        narrow = wide.astype("<f4")
        same = np.array_equal(narrow.astype("<f8"), wide, equal_nan=True)
        return narrow.tobytes() if same else None
    return None
