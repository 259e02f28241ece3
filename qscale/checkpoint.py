"""TensorInfo, ModelConfig, Checkpoint; read_local_checkpoint(folder or file).

A checkpoint is read header-first: every safetensors file is opened once, its header parsed
and validated, and its small tensors (scales, global scales, ``weight_shape``) decoded in the
same pass. Nothing else of the weights is read, and no pickle file is ever opened. The shard
index is matched against the headers without ``json.loads`` when its text allows that proof
(:func:`_read_folder`), and read with ``json.loads`` otherwise.

This module reads local files only and does not import :mod:`qscale.hub`, which reads a Hub
repo id (``org/name[@revision]``, :data:`REPO_SPEC`) the same way through HTTP range requests,
building on the helpers here; :func:`qscale.source.read_checkpoint` (``qscale.read_checkpoint``)
decides which of the two reads a source.
"""

from __future__ import annotations

import errno
import json
import logging
import os
import re
import stat
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from itertools import accumulate, chain, pairwise
from operator import attrgetter, eq
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any, NamedTuple, Protocol

import numpy as np

from qscale._gc import gc_paused
from qscale.errors import (
    CheckpointNotFound,
    ConfigError,
    HeaderError,
    QscaleError,
    ShardIndexError,
    UnsafePathError,
)
from qscale.safetensors_io import (
    _WHOLE_BYTES,
    LFS_POINTER,
    FileHeader,
    TensorInfo,
    read_header,
    read_tensors,
)
from qscale.safetensors_scan import IndexLayout, index_lists_runs, scan_index
from qscale.scale_scan import SCALES, Buffer, ScaleScan, scale_names, scan_file

if TYPE_CHECKING:
    from qscale.progress import ReadProgress

log = logging.getLogger(__name__)

JSON = dict[str, Any]

#: Tensors with at most this many elements are decoded while the header is read. This covers
#: per-tensor and per-partition scales, global scales and ``weight_shape``; block, group and
#: channel scales are read only by rules that ask for them.
SMALL_NUMEL = 64
SMALL_BYTES = 8 * SMALL_NUMEL  #: no dtype is wider than 8 bytes

INDEX_SUFFIX = ".safetensors.index.json"
QUANT_CONFIG_FILES = ("hf_quant_config.json", "quantization_config.json", "quant_config.json")

#: ``org/name`` or ``org/name@revision``: read from the Hub when no local path has that name
#: (:mod:`qscale.source`; :func:`qscale.hub.parse_repo_spec`).
REPO_SPEC = re.compile(
    r"(?P<repo>(?![^@]*(?:--|\.\.))\w(?:[\w.-]*\w)?/\w(?:[\w.-]*\w)?)(?:@(?P<rev>[^\s@]+))?"
)


class TensorSource(Protocol):
    """Reads tensor values of a checkpoint whose files are not in a local folder."""

    def read_values(self, by_file: Mapping[str, Sequence[TensorInfo]]) -> dict[str, np.ndarray]:
        """Decode the given tensors, grouped by the file that holds them."""
        ...


@dataclass(frozen=True, slots=True)
class ModelConfig:
    """A typed view of ``config.json`` plus the raw JSON for rules that point at keys."""

    raw: Mapping[str, Any]

    @property
    def architectures(self) -> tuple[str, ...]:
        """``architectures`` of the outer config (the class the engine builds).

        :func:`parse_config` has refused a malformed value; a config built some other way
        (none read, a test's dict) gives only the names it holds as strings.
        """
        archs = self.raw.get("architectures")
        if not isinstance(archs, list):
            archs = self.text.get("architectures")
        if not isinstance(archs, list):
            return ()
        return tuple(a for a in archs if isinstance(a, str))

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
    #: where tensor values come from when ``root`` is None (a Hub repo)
    remote: TensorSource | None = field(default=None, repr=False, compare=False)
    #: every element of every scale tensor, judged while the files were read (the deep scan);
    #: None when the read stayed header-only (``--header-only``) or built no scan
    scale_scan: ScaleScan | None = field(default=None, repr=False, compare=False)
    header_only: bool = False  #: the deep scan was asked not to run
    #: ``.safetensors`` files of the folder the index does not list (not read; rule QS008)
    unindexed: tuple[str, ...] = ()

    def value(self, name: str) -> np.ndarray | None:
        """The decoded value of a small tensor, or None if it is not small or absent."""
        return self.values.get(name)

    def read_values(self, names: list[str]) -> dict[str, np.ndarray]:
        """Read tensors that were not decoded up front (opens only the files involved)."""
        out: dict[str, np.ndarray] = {}
        by_file: dict[str, list[TensorInfo]] = {}
        for n in names:
            by_file.setdefault(self.tensors[n].file, []).append(self.tensors[n])
        if self.root is None:
            if self.remote is None:
                raise CheckpointNotFound(f"{self.source}: tensor values are not available")
            return self.remote.read_values(by_file)
        for file, infos in by_file.items():
            with open(self.root / file, "rb") as fh:
                out.update(read_tensors(fh, infos))
        return out

    def __iter__(self) -> Iterator[TensorInfo]:
        return iter(self.tensors.values())

    def input_paths(self) -> list[Path]:
        """The local files this checkpoint was read from (none for a Hub repo): outputs must
        never replace them."""
        if self.root is None:
            return []
        names = [h.file for h in self.files]
        names += ["config.json", *self.extra_configs, *self.unindexed]
        names += [self.index_file] if self.index_file else []
        return [self.root / n for n in names]


# --------------------------------------------------------------------------- reading


def read_local_checkpoint(
    source: str | os.PathLike[str],
    *,
    progress: ReadProgress | None = None,
    header_only: bool = False,
) -> Checkpoint:
    """Read a local checkpoint folder or a single ``.safetensors`` file.

    ``progress`` is told how many files there are and when each one has been read. A Hub repo
    id is not a local path: :func:`qscale.read_checkpoint` reads both. Every scale tensor is
    read in full and judged (:mod:`qscale.scale_scan`) in the same open as the header, unless
    ``header_only``.

    Raises:
        CheckpointNotFound, HeaderError, ShardIndexError, UnsafePathError, ConfigError
    """
    path = Path(source)
    if path.is_file():
        if not path.name.endswith(".safetensors"):
            raise CheckpointNotFound(f"{path}: not a .safetensors file")
        with gc_paused():
            ckpt = _read_local(str(source), path.parent, [path.name], None, progress, header_only)
    elif path.is_dir():
        with gc_paused():
            ckpt = _read_folder(str(source), path, progress, header_only)
    else:
        raise CheckpointNotFound(f"{source}: no such file or folder")
    return ckpt


class _Parts(NamedTuple):
    """What reading a checkpoint's files gives, before the index is checked."""

    config: ModelConfig
    extra: dict[str, JSON]
    headers: list[FileHeader]
    values: dict[str, np.ndarray]
    tensors: dict[str, TensorInfo]
    scan: ScaleScan | None  #: None: header-only


def _read_parts(
    root: Path, files: list[str], progress: ReadProgress | None, header_only: bool = False
) -> _Parts:
    config = _read_config(root)
    extra = {}
    for n in QUANT_CONFIG_FILES:
        if (root / n).exists() or (root / n).is_symlink():
            _check_inside(root, n)
            extra[n] = _read_json(root / n)
    if progress is not None:
        progress.start(len(files), remote=False)
    scans: list[ScaleScan] | None = None if header_only else []
    headers, values = _read_files(root, files, progress, scans, scale_names(config.raw))
    scan = None if scans is None else ScaleScan.merge(scans)
    return _Parts(config, extra, headers, values, _collect_tensors(headers), scan)


def _checkpoint(
    source: str,
    root: Path,
    parts: _Parts,
    index_file: str | None,
    unindexed: tuple[str, ...] = (),
) -> Checkpoint:
    return Checkpoint(
        source=source,
        root=root,
        config=parts.config,
        extra_configs=parts.extra,
        files=tuple(parts.headers),
        tensors=parts.tensors,
        values=parts.values,
        index_file=index_file,
        scale_scan=parts.scan,
        header_only=parts.scan is None,
        unindexed=unindexed,
    )


def _read_local(
    source: str,
    root: Path,
    files: list[str],
    index: tuple[str, dict[str, str]] | None,
    progress: ReadProgress | None,
    header_only: bool = False,
) -> Checkpoint:
    """Read ``files`` of ``root``, then check them against the index :func:`_list_files`
    returned."""
    parts = _read_parts(root, files, progress, header_only)
    if index is None:
        return _checkpoint(source, root, parts, None)
    _check_index_tensors(index[0], index[1], parts.tensors)
    stray = unindexed_files(_folder_entries(root, None)[1], files) if root.is_dir() else ()
    return _checkpoint(source, root, parts, index[0], stray)


def _read_folder(
    source: str, root: Path, progress: ReadProgress | None, header_only: bool = False
) -> Checkpoint:
    """A checkpoint folder. When its index is in a layout :func:`scan_index` can locate, the
    folder's ``.safetensors`` files are read first and the index is then matched against their
    headers without ``json.loads``. Whatever that cannot prove, and every error met on the way,
    goes to the ``json.loads`` path (:func:`_list_files`, then the files), which runs the same
    checks in the same order as always and so raises the error the input deserves."""
    fast = _scan_folder_index(root)
    if fast is not None:
        index_file, raw, layout, present = fast
        try:
            parts = _read_parts(root, present, progress, header_only)
        except QscaleError:
            progress = None  # read again below, for the error the json.loads path gives
        else:
            if _index_agrees(raw, layout, parts):
                return _checkpoint(source, root, parts, index_file)
            files, index = _list_files(root)  # an index error, or an index in another order
            if files == present and index is not None:
                _check_index_tensors(index[0], index[1], parts.tensors)
                return _checkpoint(source, root, parts, index_file)
            progress = None  # the index lists other files: read those
    files, index = _list_files(root)
    return _read_local(source, root, files, index, progress, header_only)


def _scan_folder_index(root: Path) -> tuple[str, bytes, IndexLayout, list[str]] | None:
    """The index's name and bytes, where its weight_map is, and the folder's
    ``.safetensors`` files, if the index is in a layout :func:`scan_index` can locate."""
    indexes, present = _folder_entries(root, None)
    if not indexes or not present:
        return None
    index_file = _pick_index(indexes)
    if not (root / index_file).is_file() or (root / index_file).is_symlink():
        return None  # the json.loads path refuses a FIFO, a loop, a link leaving the folder
    try:
        raw = (root / index_file).read_bytes()
    except OSError:
        return None
    layout = scan_index(raw)
    if layout is None or not all((root / n).is_file() for n in present):
        return None  # is_file: never open a FIFO or a folder named *.safetensors
    return index_file, raw, layout, present


def _index_agrees(raw: bytes, layout: IndexLayout, parts: _Parts) -> bool:
    """Whether the index's weight_map is exactly {name: file} of the tensors read, and so
    names just the files read (each file holds a tensor). Tried in the files' order, as
    most writers list the tensors, then in sorted order, as transformers writes the index."""
    headers = parts.headers
    if not all(h.tensors for h in headers):  # a file with no tensor is not indexed
        return False
    names = list(parts.tensors)  # in the files' order, each file's tensors in a row
    counts = [len(h.tensors) for h in headers]
    ends = list(accumulate(counts))
    runs = [(h.file, names[e - c : e]) for h, c, e in zip(headers, counts, ends, strict=True)]
    if index_lists_runs(raw, layout, runs):
        return True
    # sorted order: the runs of consecutive names that one file holds
    order = sorted(range(len(names)), key=names.__getitem__)
    file_of = np.repeat(np.arange(len(headers)), counts)[order]
    cuts = [0, *(np.flatnonzero(file_of[1:] != file_of[:-1]) + 1).tolist(), len(names)]
    ordered = list(map(names.__getitem__, order))
    runs = [(headers[file_of[a]].file, ordered[a:b]) for a, b in pairwise(cuts)]
    return index_lists_runs(raw, layout, runs)


#: Largest JSON file qscale reads (the largest shard index known is 21 MB).
MAX_JSON_BYTES = 256 << 20
_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F]")
_PERMISSION_HINT = "check the file's permissions and owner (qscale needs to read it)"


def _unreadable(name: str, exc: OSError, error: type[QscaleError], code: str) -> QscaleError:
    """The error for a file that cannot be opened: permissions get their own hint."""
    reason = exc.strerror or type(exc).__name__
    if isinstance(exc, PermissionError):
        return error(f"{name}: cannot be read ({reason})", hint=_PERMISSION_HINT, code=code)
    return error(f"{name}: cannot be read ({reason})", code=code)


def open_regular(path: Path, name: str, error: type[QscaleError], code: str) -> int:
    """An fd of ``path`` opened read-only, if it is a regular file. Opened non-blocking, so a
    FIFO or a device named like a checkpoint file is refused instead of waited on.

    Raises:
        ``error`` (with ``code``): missing, unreadable, or not a regular file.
    """
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise error(f"{name}: is a symbolic link loop", hint="fix or remove the link",
                        code=code) from None  # fmt: skip
        raise _unreadable(name, exc, error, code) from None
    mode = os.fstat(fd).st_mode
    if not stat.S_ISREG(mode):
        os.close(fd)
        kind = "a folder" if stat.S_ISDIR(mode) else "a FIFO" if stat.S_ISFIFO(mode) else (
            "a device or socket")  # fmt: skip
        raise error(
            f"{name}: is {kind}, not a regular file",
            hint="qscale reads regular files only; replace it with the file itself",
            code=code,
        )
    os.set_blocking(fd, True)
    return fd


def _read_json(path: Path, *, code: str = "QS101") -> JSON:
    fd = open_regular(path, path.name, ConfigError, code)
    try:
        with os.fdopen(fd, "rb") as fh:
            raw = fh.read(MAX_JSON_BYTES + 1)
    except OSError as exc:
        raise _unreadable(path.name, exc, ConfigError, code) from None
    if raw.startswith(LFS_POINTER):
        raise ConfigError(
            f"{path.name}: is a Git LFS pointer, not the file",
            hint="run `git lfs pull` in the clone (or download the file itself)",
            code=code,
        )
    if len(raw) > MAX_JSON_BYTES:
        raise ConfigError(f"{path.name}: larger than qscale's cap of {MAX_JSON_BYTES} bytes",
                          code=code)  # fmt: skip
    try:
        text = raw.decode("utf-8")
        obj = json.loads(text)
    except RecursionError:
        raise ConfigError(f"{path.name}: not valid JSON (nested too deeply)", code=code) from None
    except (UnicodeDecodeError, ValueError) as exc:
        raise ConfigError(f"{path.name}: not valid JSON ({exc})", code=code) from None
    if not isinstance(obj, dict):
        raise ConfigError(f"{path.name}: expected a JSON object", code=code)
    if _SURROGATE_ESCAPE.search(text):
        try:
            json.dumps(obj, ensure_ascii=False).encode("utf-8")
        except UnicodeEncodeError:
            raise ConfigError(f"{path.name}: holds a lone UTF-16 surrogate (\\udXXX)",
                              code=code) from None  # fmt: skip
    return obj


def _read_config(root: Path) -> ModelConfig:
    cfg = root / "config.json"
    if not (cfg.exists() or cfg.is_symlink()):
        raise ConfigError(
            f"{root / 'config.json'}: missing (no config.json next to the weights)",
            hint="vLLM and SGLang read the model from config.json: copy the original model's"
            " config.json into the folder",
        )
    _check_inside(root, "config.json")
    return parse_config(_read_json(cfg))


def _check_inside(root: Path, name: str) -> None:
    """A file of the folder that is a link must resolve inside it (see :func:`_inside`)."""
    if (root / name).is_symlink() and not _inside(root, root / name):
        raise UnsafePathError(f"{name}: link points outside the checkpoint folder", code="QS009")


def parse_config(obj: JSON) -> ModelConfig:
    """A read ``config.json`` as a :class:`ModelConfig`, once its ``architectures`` is a list
    of class names.

    vLLM and SGLang build the model class ``architectures`` names (vLLM 0.33
    ``ModelArchConfigConvertorBase.get_architectures``, then
    ``_ModelRegistry.inspect_model_cls``): missing, ``null`` or ``[]``, vLLM stops with "No
    model architectures are specified" and SGLang finds no class; any other shape fails
    vLLM's ``list[str]`` validation. qscale refuses the same values, quantized checkpoint or
    not, instead of guessing a class from them.

    Raises:
        ConfigError: ``architectures`` is missing, ``null``, empty, or not a list of strings
            (code QS103: qscale cannot tell which architecture to plan).
    """
    _check_sizes(obj)
    value = obj.get("architectures")
    problem = _architectures_problem(value, present="architectures" in obj)
    if problem is not None:
        raise ConfigError(
            f"config.json: {problem}",
            hint=_architectures_hint(obj, value),
            code="QS103",
        )
    return ModelConfig(obj)


#: Config keys that size the model: qscale (and the engine) allocate and loop by them.
SIZE_KEYS = (
    "num_experts", "n_routed_experts", "num_local_experts", "num_experts_per_tok",
    "n_shared_experts", "hidden_size", "intermediate_size", "moe_intermediate_size",
    "shared_expert_intermediate_size", "num_hidden_layers", "num_attention_heads",
    "num_key_value_heads", "head_dim", "vocab_size", "num_nextn_predict_layers",
)  # fmt: skip
#: The largest value of a size key qscale takes (the largest real ones, vocab_size, are
#: below 2**19): a larger one is a corrupted config, refused before anything is sized by it.
MAX_CONFIG_SIZE = 1 << 24


def _check_sizes(obj: JSON) -> None:
    """Refuse a size key of the root or ``text_config`` that is negative or huge."""
    text = obj.get("text_config")
    for where, block in (("", obj), ("/text_config", text if isinstance(text, dict) else {})):
        for key in SIZE_KEYS:
            v = block.get(key)
            if isinstance(v, int) and not isinstance(v, bool) and not 0 <= v <= MAX_CONFIG_SIZE:
                raise ConfigError(
                    f"config.json: {where}/{key} is {v}, outside 0 … {MAX_CONFIG_SIZE} (qscale's"
                    " bound for a model size)",
                    hint=f"no model has that {key}: restore it from the original model's"
                    " config.json",
                )


def _json_type(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    return "an object" if isinstance(value, dict) else "a list"


def _architectures_problem(value: object, *, present: bool) -> str | None:
    """What is wrong with ``architectures``, at its JSON pointer; None for a non-empty list of
    names."""
    expected = "expected a list of model class names"
    if not present:
        return f"/architectures is missing, {expected}"
    if not isinstance(value, list):
        shown = f" ({json.dumps(value)[:60]})" if value is not None else ""
        return f"/architectures is {_json_type(value)}{shown}, {expected}"
    if not value:
        return f"/architectures is an empty list, {expected}"
    for i, item in enumerate(value):
        if not isinstance(item, str) or not item.strip():
            kind = "an empty string" if isinstance(item, str) else _json_type(item)
            return f"/architectures/{i} is {kind} ({json.dumps(item)[:60]}), expected a class name"
    return None


def _architectures_hint(obj: JSON, value: object) -> str:
    """Why the engine refuses it too, and the remedy, with the class name when the config
    shows which one was meant."""
    engine = (
        "vLLM stops with 'No model architectures are specified'"
        if not value
        else "vLLM refuses any value but a list of strings"
    )
    text = obj.get("text_config")
    inner = text.get("architectures") if isinstance(text, dict) else None
    if isinstance(value, str) and value.strip():
        return f'{engine}; write it as a list: "architectures": [{json.dumps(value)}]'
    if isinstance(inner, list) and inner and all(isinstance(a, str) for a in inner):
        return (
            f"{engine}, and reads the top-level key only; text_config has"
            f' {json.dumps(inner)}: set "architectures": {json.dumps(inner)}'
        )
    return (
        f'{engine}; set "architectures" to the class list in the original model\'s'
        ' config.json, e.g. ["Qwen3_5MoeForConditionalGeneration"]'
    )


def _inside(root: Path, target: Path) -> bool:
    """Whether ``target`` resolves inside ``root``, or inside the Hugging Face cache blobs of
    the repo whose snapshot ``root`` is (the cache stores files as links into ``../../blobs``)."""
    try:
        real, base = target.resolve(), root.resolve()
    except (RuntimeError, OSError):  # a link loop (RuntimeError before Python 3.13)
        raise HeaderError(
            f"{target.name}: is a symbolic link loop", hint="fix or remove the link", code="QS001"
        ) from None
    if real == base or base in real.parents:
        return True
    if base.parent.name == "snapshots":
        blobs = base.parent.parent / "blobs"
        return blobs in real.parents
    return False


def _folder_entries(root: Path, listing: Mapping[str, int] | None) -> tuple[list[str], list[str]]:
    """The index files and the ``.safetensors`` files of the folder (or of ``listing``),
    sorted; a local file that links outside the folder is refused."""
    names = [p.name for p in root.iterdir()] if listing is None else list(listing)
    indexes = sorted(n for n in names if n.endswith(INDEX_SUFFIX))
    present = sorted(n for n in names if n.endswith(".safetensors"))
    for name in present if listing is None else ():
        # a folder's own entry that is no link is inside it: resolve only links
        if (root / name).is_symlink() and not _inside(root, root / name):
            raise UnsafePathError(
                f"{name}: link points outside the checkpoint folder", code="QS009"
            )
    return indexes, present


def _pick_index(indexes: list[str]) -> str:
    return "model" + INDEX_SUFFIX if "model" + INDEX_SUFFIX in indexes else indexes[0]


def _list_files(
    root: Path, listing: Mapping[str, int] | None = None
) -> tuple[list[str], tuple[str, dict[str, str]] | None]:
    """The files to read, and the index (its name and weight map) when there is one.

    ``listing`` (file name -> size) stands for the folder's entries when the files are remote
    (a Hub repo); the index is then read from ``root``, where it was downloaded.
    """
    indexes, present = _folder_entries(root, listing)
    if not indexes:
        if not present:
            raise CheckpointNotFound(
                f"{root}: no .safetensors file in this folder",
                hint="qscale reads safetensors only; convert .bin/.pt checkpoints first",
            )
        return present, None
    index_file = _pick_index(indexes)
    weight_map = _read_weight_map(root, index_file)
    listed = sorted(set(weight_map.values()))
    for name in listed:
        _check_index_path(root, index_file, name)
        if not ((root / name).is_file() if listing is None else name in listing):
            raise ShardIndexError(
                f"{index_file}: names `{name}`, which is not in the folder", code="QS006"
            )
    return listed, (index_file, weight_map)


def unindexed_files(present: Sequence[str], listed: Sequence[str]) -> tuple[str, ...]:
    """The folder's ``.safetensors`` files the index does not list. vLLM loads only the
    indexed ones (0.33 ``model_loader/weight_utils.py``, ``filter_duplicate_safetensors_files``
    keeps the files ``weight_map`` names), so these are reported (QS008) and not read."""
    return tuple(sorted(set(present) - set(listed)))


def _read_weight_map(root: Path, index_file: str) -> dict[str, str]:
    if (root / index_file).is_symlink() and not _inside(root, root / index_file):
        raise UnsafePathError(
            f"{index_file}: link points outside the checkpoint folder", code="QS009"
        )
    try:
        obj = _read_json(root / index_file, code="QS006")
    except ConfigError as exc:  # the index is not a config: its rule is QS006
        hint = exc.hint if exc.hint != ConfigError.default_hint else None
        raise ShardIndexError(exc.message, hint=hint, code="QS006") from None
    wm = obj.get("weight_map")
    # JSON object keys are always str; set(map(type, ...)) checks the values in one C loop
    if not isinstance(wm, dict) or not set(map(type, wm.values())) <= {str}:
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


#: per dtype that fills whole bytes, the most bytes :data:`SMALL_NUMEL` elements take: the header
#: pass proved every tensor's bytes are its elements' (QS003), so the bytes alone decide
_SMALL_BYTES_OF = {d: min(SMALL_NUMEL * size, SMALL_BYTES) for d, size in _WHOLE_BYTES.items()}


def small_tensors(header: FileHeader) -> list[TensorInfo]:
    """The tensors of a file that are decoded while its header is read (never F4 / F6)."""
    # bytes (t[5] - t[4]) against the dtype's bound: no element count per tensor; a dtype
    # of no whole bytes (F4, F6) has none (-1), so not even an empty one is decoded here
    bound = _SMALL_BYTES_OF.get
    return [t for t in header.tensors if t[5] - t[4] <= bound(t[1], -1)]


def _read_files(
    root: Path,
    files: list[str],
    progress: ReadProgress | None = None,
    scans: list[ScaleScan] | None = None,
    names: frozenset[str] = SCALES,
) -> tuple[list[FileHeader], dict[str, np.ndarray]]:
    """Every file's header and small tensors; with ``scans``, each file's deep scan of its
    scale tensors (:func:`qscale.scale_scan.scan_file`) is appended there, in the same open."""
    headers: list[FileHeader] = []
    values: dict[str, np.ndarray] = {}
    buffer = Buffer()  # one read buffer for every file's scan
    for name in files:
        fd = open_regular(root / name, name, HeaderError, "QS001")
        try:
            with os.fdopen(fd, "rb") as fh:
                header = read_header(fh, file=name, file_size=os.fstat(fh.fileno()).st_size)
                small = small_tensors(header)
                values.update(read_tensors(fh, small))
                decoded = {t.name for t in small}
                scan = None if scans is None else scan_file(fh.fileno(), header, decoded, names,
                                                          buffer)
        except OSError as exc:
            raise _unreadable(name, exc, HeaderError, "QS001") from None
        headers.append(header)
        log.debug("read %s: %d tensors, %d small", name, len(header.tensors), len(small))
        if scan is not None and scans is not None:
            scans.append(scan)
        if progress is not None:
            scanned = scan.nbytes if scan is not None else 0
            progress.advance(header.data_start + sum(t.nbytes for t in small) + scanned)
    return headers, values


_NAME, _FILE = attrgetter("name"), attrgetter("file")


def _collect_tensors(headers: list[FileHeader]) -> dict[str, TensorInfo]:
    every = chain.from_iterable(h.tensors for h in headers)
    named = chain.from_iterable(map(_NAME, h.tensors) for h in headers)
    fast = dict(zip(named, every, strict=True))  # C loops over 10^5 tensors
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


def _same_map(weight_map: Mapping[str, str], tensors: Mapping[str, TensorInfo]) -> bool:
    """Whether ``weight_map`` places every tensor in its file, and no other name."""
    files = map(_FILE, tensors.values())
    if all(map(eq, weight_map, tensors)):  # listed in the files' order: compare in sequence
        return all(map(eq, weight_map.values(), files))
    return weight_map.keys() == tensors.keys() and all(
        map(eq, map(weight_map.__getitem__, tensors), files)
    )


def _check_index_tensors(
    index_file: str, weight_map: Mapping[str, str], tensors: Mapping[str, TensorInfo]
) -> None:
    if len(weight_map) == len(tensors) and _same_map(weight_map, tensors):
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
