"""TensorInfo, ModelConfig, Checkpoint; read_checkpoint(path).

A checkpoint is read header-first: every safetensors file is opened once, its header parsed
and validated, and its small tensors (scales, global scales, ``weight_shape``) decoded in the
same pass. Nothing else of the weights is read, and no pickle file is ever opened.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

import numpy as np

from qscale.errors import (
    CheckpointNotFound,
    ConfigError,
    HeaderError,
    ShardIndexError,
    UnsafePathError,
)
from qscale.safetensors_io import FileHeader, TensorInfo, read_header, read_tensors

log = logging.getLogger(__name__)

JSON = dict[str, Any]

#: Tensors with at most this many elements are decoded while the header is read. This covers
#: per-tensor and per-partition scales, global scales and ``weight_shape``; block, group and
#: channel scales are read only by rules that ask for them.
SMALL_NUMEL = 64
SMALL_BYTES = 8 * SMALL_NUMEL  #: no dtype is wider than 8 bytes

INDEX_SUFFIX = ".safetensors.index.json"
QUANT_CONFIG_FILES = ("hf_quant_config.json", "quantization_config.json", "quant_config.json")


@dataclass(frozen=True, slots=True)
class ModelConfig:
    """A typed view of ``config.json`` plus the raw JSON for rules that point at keys."""

    raw: Mapping[str, Any]

    @property
    def architectures(self) -> tuple[str, ...]:
        """``architectures`` of the outer config (the class the engine builds)."""
        archs = self.raw.get("architectures") or self.text.get("architectures") or ()
        return tuple(str(a) for a in archs)

    @property
    def architecture(self) -> str | None:
        """The first architecture, as engines pick it."""
        return self.architectures[0] if self.architectures else None

    @property
    def model_type(self) -> str | None:
        """``model_type`` of the outer config."""
        mt = self.raw.get("model_type")
        return str(mt) if mt is not None else None

    @property
    def text(self) -> Mapping[str, Any]:
        """The language-model config: ``text_config`` for multimodal models, else the root."""
        tc = self.raw.get("text_config")
        return tc if isinstance(tc, dict) else self.raw

    def get(self, key: str, default: Any = None) -> Any:
        """A field of the text config, falling back to the root config."""
        if key in self.text:
            return self.text[key]
        return self.raw.get(key, default)

    @property
    def quantization_config(self) -> Mapping[str, Any] | None:
        """``quantization_config`` (root, or nested in ``text_config``)."""
        qc = self.raw.get("quantization_config")
        if qc is None:
            qc = self.text.get("quantization_config")
        if qc is not None and not isinstance(qc, dict):
            raise ConfigError("config.json: `quantization_config` is not an object")
        return qc


@dataclass(frozen=True, slots=True)
class Checkpoint:
    """Everything qscale knows about a checkpoint without reading its weights."""

    source: str  #: as the user typed it
    root: Path | None  #: the folder holding the files (None for remote sources)
    config: ModelConfig
    extra_configs: Mapping[str, Mapping[str, Any]]  #: e.g. ``hf_quant_config.json``
    files: tuple[FileHeader, ...]
    tensors: Mapping[str, TensorInfo]
    values: Mapping[str, np.ndarray] = field(repr=False)  #: decoded small tensors
    index_file: str | None = None

    def value(self, name: str) -> np.ndarray | None:
        """The decoded value of a small tensor, or None if it is not small or absent."""
        return self.values.get(name)

    def read_values(self, names: list[str]) -> dict[str, np.ndarray]:
        """Read tensors that were not decoded up front (opens only the files involved)."""
        if self.root is None:
            raise CheckpointNotFound(f"{self.source}: tensor values are not available remotely")
        out: dict[str, np.ndarray] = {}
        by_file: dict[str, list[TensorInfo]] = {}
        for n in names:
            by_file.setdefault(self.tensors[n].file, []).append(self.tensors[n])
        for file, infos in by_file.items():
            with open(self.root / file, "rb") as fh:
                out.update(read_tensors(fh, infos))
        return out

    def __iter__(self) -> Iterator[TensorInfo]:
        return iter(self.tensors.values())


# --------------------------------------------------------------------------- reading


def read_checkpoint(source: str | os.PathLike[str]) -> Checkpoint:
    """Read a local checkpoint folder or a single ``.safetensors`` file.

    Raises:
        CheckpointNotFound, HeaderError, ShardIndexError, UnsafePathError, ConfigError
    """
    path = Path(source)
    if path.is_file():
        if not path.name.endswith(".safetensors"):
            raise CheckpointNotFound(f"{path}: not a .safetensors file")
        root, files, index = path.parent, [path.name], None
    elif path.is_dir():
        root = path
        files, index = _list_files(root)
    else:
        raise CheckpointNotFound(f"{source}: no such file or folder")
    config = _read_config(root)
    extra = {n: _read_json(root / n) for n in QUANT_CONFIG_FILES if (root / n).is_file()}
    headers, values = _read_files(root, files)
    tensors = _collect_tensors(headers)
    if index is not None:
        _check_index_tensors(index[0], index[1], tensors)
    return Checkpoint(
        source=str(source),
        root=root,
        config=config,
        extra_configs=extra,
        files=tuple(headers),
        tensors=tensors,
        values=values,
        index_file=index[0] if index else None,
    )


def _read_json(path: Path) -> JSON:
    try:
        obj = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise ConfigError(f"{path.name}: not valid JSON ({exc})") from None
    if not isinstance(obj, dict):
        raise ConfigError(f"{path.name}: expected a JSON object")
    return obj


def _read_config(root: Path) -> ModelConfig:
    cfg = root / "config.json"
    return ModelConfig(_read_json(cfg) if cfg.is_file() else {})


def _inside(root: Path, target: Path) -> bool:
    """Whether ``target`` resolves inside ``root``, or inside the Hugging Face cache blobs of
    the repo whose snapshot ``root`` is (the cache stores files as links into ``../../blobs``)."""
    real, base = target.resolve(), root.resolve()
    if real == base or base in real.parents:
        return True
    if base.parent.name == "snapshots":
        blobs = base.parent.parent / "blobs"
        return blobs in real.parents
    return False


def _list_files(root: Path) -> tuple[list[str], tuple[str, dict[str, str]] | None]:
    """The files to read, and the index (its name and weight map) when there is one."""
    indexes = sorted(p.name for p in root.iterdir() if p.name.endswith(INDEX_SUFFIX))
    present = sorted(p.name for p in root.iterdir() if p.name.endswith(".safetensors"))
    for name in present:
        if not _inside(root, root / name):
            raise UnsafePathError(
                f"{name}: link points outside the checkpoint folder", code="QS009"
            )
    if not indexes:
        if not present:
            raise CheckpointNotFound(
                f"{root}: no .safetensors file in this folder",
                hint="qscale reads safetensors only; convert .bin/.pt checkpoints first",
            )
        return present, None
    index_file = "model" + INDEX_SUFFIX if "model" + INDEX_SUFFIX in indexes else indexes[0]
    weight_map = _read_weight_map(root, index_file)
    listed = sorted(set(weight_map.values()))
    for name in listed:
        _check_index_path(root, index_file, name)
        if not (root / name).is_file():
            raise ShardIndexError(
                f"{index_file}: names `{name}`, which is not in the folder", code="QS006"
            )
    stray = sorted(set(present) - set(listed))
    if stray:
        raise ShardIndexError(
            f"{stray[0]}: not listed in {index_file}"
            + (f" (and {len(stray) - 1} more)" if len(stray) > 1 else ""),
            hint="engines load only indexed files; remove the file or rebuild the index",
            code="QS008",
        )
    return listed, (index_file, weight_map)


def _read_weight_map(root: Path, index_file: str) -> dict[str, str]:
    try:
        obj = _read_json(root / index_file)
    except ConfigError as exc:  # the index is not a config: its rule is QS006
        raise ShardIndexError(exc.message, code="QS006") from None
    wm = obj.get("weight_map")
    # set(map(type, ...)) runs in C: 10x faster than a generator over 10^5 entries
    if not isinstance(wm, dict) or not (set(map(type, wm)) | set(map(type, wm.values()))) <= {str}:
        raise ShardIndexError(
            f"{index_file}: `weight_map` is missing or not a name→file map", code="QS006"
        )
    if not wm:
        raise ShardIndexError(
            f"{index_file}: `weight_map` is empty (engines would load no file)", code="QS006"
        )
    return wm


def _check_index_path(root: Path, index_file: str, name: str) -> None:
    p = PurePosixPath(name)
    if p.is_absolute() or ".." in p.parts or "\\" in name or len(p.parts) != 1:
        raise UnsafePathError(
            f"{index_file}: entry `{name}` points outside the checkpoint folder", code="QS009"
        )
    if (root / name).exists() and not _inside(root, root / name):
        raise UnsafePathError(f"{name}: link points outside the checkpoint folder", code="QS009")


def _read_files(root: Path, files: list[str]) -> tuple[list[FileHeader], dict[str, np.ndarray]]:
    headers: list[FileHeader] = []
    values: dict[str, np.ndarray] = {}
    for name in files:
        path = root / name
        try:
            size = path.stat().st_size
            with open(path, "rb") as fh:
                header = read_header(fh, file=name, file_size=size)
                # byte size first: it bounds numel and costs no multiplication
                small = [
                    t
                    for t in header.tensors
                    if t.end - t.begin <= SMALL_BYTES
                    and t.numel <= SMALL_NUMEL
                    and t.dtype not in ("F4", "F6_E2M3", "F6_E3M2")
                ]
                values.update(read_tensors(fh, small))
        except OSError as exc:
            raise HeaderError(f"{name}: cannot be read ({exc.strerror})", code="QS001") from None
        headers.append(header)
        log.debug("read %s: %d tensors, %d small", name, len(header.tensors), len(small))
    return headers, values


def _collect_tensors(headers: list[FileHeader]) -> dict[str, TensorInfo]:
    fast = {t.name: t for h in headers for t in h.tensors}
    if len(fast) == sum(len(h.tensors) for h in headers):
        return fast  # no name stored twice
    tensors: dict[str, TensorInfo] = {}
    for h in headers:
        for t in h.tensors:
            prev = tensors.get(t.name)
            if prev is not None:
                raise ShardIndexError(
                    f"{t.file}: tensor `{t.name}` is also in {prev.file}",
                    hint="engines would load one of the two copies, depending on file order",
                    code="QS005",
                )
            tensors[t.name] = t
    return tensors


def _check_index_tensors(
    index_file: str, weight_map: Mapping[str, str], tensors: Mapping[str, TensorInfo]
) -> None:
    if len(weight_map) == len(tensors) and {n: t.file for n, t in tensors.items()} == weight_map:
        return  # the index agrees with the files; otherwise find the first disagreement
    for name, file in weight_map.items():
        t = tensors.get(name)
        if t is None:
            raise ShardIndexError(
                f"{file}: has no tensor `{name}`, which {index_file} places there", code="QS007"
            )
        if t.file != file:
            raise ShardIndexError(
                f"{index_file}: places `{name}` in {file}, but it is in {t.file}", code="QS007"
            )
    unlisted = [n for n in tensors if n not in weight_map]
    if unlisted:
        raise ShardIndexError(
            f"{tensors[unlisted[0]].file}: tensor `{unlisted[0]}` is not in {index_file}"
            + (f" (and {len(unlisted) - 1} more)" if len(unlisted) > 1 else ""),
            code="QS007",
        )
