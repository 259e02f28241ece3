"""Write a fixed checkpoint: a temporary sibling folder, renamed to DST only when complete.

Order: ``DST.qscale-tmp-XXXX`` is created next to DST; files with no changed tensor are
hard-linked (copied where linking fails); files with a changed tensor are written new, whole,
as ``NAME.partial`` and renamed once fsynced; edited configs, the rebuilt index and
``qscale-fix-manifest.json`` are written new; the folder is fsynced; the caller re-checks it and
only then renames it to DST. Nothing is ever opened for writing in the source, and no linked
file is ever written to: every write creates a new file (``O_EXCL``).

Killing the process at any point leaves the source untouched and at most a
``DST.qscale-tmp-*`` folder, never a DST. ``QSCALE_FIX_FAILPOINT=NAME`` kills the process
(SIGKILL) at the named point, for the crash tests: ``start``, ``after-file-N`` (N-th output
file done), ``mid-rewrite-N`` (N-th rewritten safetensors file half written),
``before-manifest``, ``before-rename``, ``after-rename``.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import secrets
import shutil
import signal
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

from qscale.checkpoint import Checkpoint
from qscale.errors import HeaderError, UsageError
from qscale.fix.apply import ChangeData, apply_config_edits, tensor_edits_by_file
from qscale.fix.layout import OutTensor, layout_file, write_file
from qscale.fix.model import Change
from qscale.safetensors_io import TensorInfo, read_header

log = logging.getLogger(__name__)

FAILPOINT_ENV = "QSCALE_FIX_FAILPOINT"
MANIFEST = "qscale-fix-manifest.json"
TMP_MARK = ".qscale-tmp-"
OWNER = ".qscale-owner"  #: pid of the writing process, inside the temporary folder only


def failpoint(name: str) -> None:
    """Kill this process (SIGKILL: no cleanup runs) when ``QSCALE_FIX_FAILPOINT`` names it."""
    if os.environ.get(FAILPOINT_ENV) == name:
        os.kill(os.getpid(), signal.SIGKILL)


def check_destination(src: Path, out: Path, *, force: bool) -> None:
    """DST must be new (or, with ``force``, an earlier `qscale fix` output), and must neither
    be nor contain nor sit inside the source."""
    try:
        s, o = src.resolve(), out.resolve()
    except (OSError, RuntimeError):  # a link loop (RuntimeError before Python 3.13)
        raise UsageError(f"--out {out}: is a symbolic link loop",
                         hint="choose a new folder") from None  # fmt: skip
    if o == s or s in o.parents or o in s.parents:
        raise UsageError(
            f"--out {out}: the output must be a new folder outside the source {src}",
            hint="choose a sibling folder, e.g. --out ./model-fixed",
        )
    if out.exists() or out.is_symlink():
        if not force:
            raise UsageError(
                f"--out {out}: already exists", hint="choose a new folder, or pass --force"
            )
        if not (out.is_dir() and (out / MANIFEST).is_file()):
            raise UsageError(
                f"--out {out}: exists and is not a `qscale fix` output; --force replaces only"
                f" folders holding {MANIFEST}",
                hint="remove it yourself, or choose a new folder",
            )


def sweep_stale(out: Path) -> None:
    """Remove temporary folders of DST left by killed runs (their writer is no longer alive)."""
    parent = out.parent if out.parent.exists() else None
    if parent is None:
        return
    for d in parent.glob(out.name + TMP_MARK + "*"):
        if not _owner_alive(d):
            shutil.rmtree(d, ignore_errors=True)


def _owner_alive(tmp: Path) -> bool:
    """Whether the process that writes ``tmp`` still runs (True when that cannot be told)."""
    try:
        os.kill(int((tmp / OWNER).read_text()), 0)
    except ProcessLookupError:
        return False
    except (OSError, ValueError):
        return True  # a finished output (no owner file), or another user's process
    return True


def _new_tmp(out: Path) -> Path:
    """A new, empty sibling folder of ``out`` (mode from the umask, unlike mkdtemp's 0700)."""
    while True:
        tmp = out.with_name(out.name + TMP_MARK + secrets.token_hex(4))
        try:
            tmp.mkdir()
        except FileExistsError:
            continue
        return tmp


@dataclass
class Written:
    """A complete temporary output, before it is renamed to DST."""

    tmp: Path
    records: list[dict[str, Any]] = field(default_factory=list)
    config_edits: list[dict[str, Any]] = field(default_factory=list)


def _sha256_range(path: Path, t: TensorInfo) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        fh.seek(t.begin)
        left = t.nbytes
        while left:
            chunk = fh.read(min(left, 16 << 20))
            if not chunk:
                break
            h.update(chunk)
            left -= len(chunk)
    return h.hexdigest()


def _write_json(path: Path, obj: Any) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        fh.write(json.dumps(obj, indent=2) + "\n")
        fh.flush()
        os.fsync(fh.fileno())


def _link_or_copy(src: Path, dst: Path) -> str:
    try:
        os.link(src, dst)
        return "link"
    except OSError:
        shutil.copyfile(src, dst)  # a new file: never a link to the source
        with open(dst, "rb") as fh:
            os.fsync(fh.fileno())
        return "copy"


def _entries(root: Path) -> Iterator[Path]:
    """Every regular file under the source folder, relative, in name order."""
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        for f in sorted(filenames):
            yield (Path(dirpath) / f).relative_to(root)


def write_output(
    ckpt: Checkpoint, changes: tuple[Change, ...], out: Path, *, rebuild_index: bool = False
) -> Written:
    """Write the fixed checkpoint, all but its manifest, into a new temporary folder next to
    ``out``.

    Raises:
        UsageError: ``out``'s folder cannot be created or written (no debris is left).
    """
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        sweep_stale(out)
        tmp = _new_tmp(out)
    except OSError as exc:
        raise _cannot_write(out, exc) from None
    try:
        return _fill(ckpt, changes, tmp, rebuild_index=rebuild_index)
    except OSError as exc:
        shutil.rmtree(tmp, ignore_errors=True)  # no debris
        if exc.filename is not None and str(tmp) not in str(exc.filename):
            raise HeaderError(  # an input file that cannot be read: not about --out
                f"{exc.filename}: cannot be read ({exc.strerror})", code="QS001"
            ) from None
        raise _cannot_write(out, exc) from None
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)  # a computation or I/O error: no debris
        raise


def _cannot_write(out: Path, exc: OSError) -> UsageError:
    return UsageError(
        f"--out {out}: cannot write ({exc.strerror or type(exc).__name__})",
        hint="choose a folder you can write to, on a disk with room for the checkpoint",
    )


def _fill(
    ckpt: Checkpoint, changes: tuple[Change, ...], tmp: Path, *, rebuild_index: bool
) -> Written:
    assert ckpt.root is not None
    root = ckpt.root
    (tmp / OWNER).write_text(str(os.getpid()))
    written = Written(tmp)
    failpoint("start")
    data = ChangeData(ckpt, changes)
    by_file = tensor_edits_by_file(changes)
    configs = apply_config_edits(ckpt, changes, written.config_edits)
    headers = {h.file: h for h in ckpt.files}
    out_tensors: dict[str, list[OutTensor]] = {}
    n_done = n_rewritten = 0
    for rel in _entries(root):
        name = rel.as_posix()
        target = tmp / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        if name in (MANIFEST, OWNER):
            continue  # an earlier fix's manifest is replaced, never carried over
        if name in by_file:
            n_rewritten += 1
            tensors = layout_file(headers[name], by_file[name])
            part = target.with_name(target.name + ".partial")
            write_file(
                str(part),
                str(root / rel),
                tensors,
                headers[name].metadata,
                data.contents,
                on_half=partial(failpoint, f"mid-rewrite-{n_rewritten}"),
            )
            _verify_header(part, name)
            os.rename(part, target)
            out_tensors[name] = tensors
            data.done(name)
        elif name in configs:
            _write_json(target, configs[name])
        elif name == ckpt.index_file and (by_file or rebuild_index):
            continue  # rebuilt below, from the output headers
        else:
            _link_or_copy(root / rel, target)
        n_done += 1
        failpoint(f"after-file-{n_done}")
    if ckpt.index_file and (by_file or rebuild_index):
        _write_json(tmp / ckpt.index_file, _index(ckpt, out_tensors))
        failpoint(f"after-file-{n_done + 1}")
    written.records = _records(ckpt, data)
    return written


def _verify_header(path: Path, name: str) -> None:
    """Read back the header just written: it must pass the reader that accepts exactly what
    the safetensors library accepts, so that `fix` never leaves a file the engine refuses.

    Raises:
        HeaderError: a writer bug (the temporary output is then discarded).
    """
    with open(path, "rb") as fh:
        read_header(fh, file=name, file_size=os.fstat(fh.fileno()).st_size)


def finish(w: Written, manifest: Mapping[str, Any]) -> None:
    """Write the manifest (last, so a folder holding one is complete) and fsync the folder."""
    failpoint("before-manifest")
    _write_json(w.tmp / MANIFEST, {**manifest, "tensors": w.records, "config": w.config_edits})
    (w.tmp / OWNER).unlink()
    _fsync_dir(w.tmp)


def _index(ckpt: Checkpoint, rewritten: Mapping[str, list[OutTensor]]) -> dict[str, Any]:
    """The index rebuilt from the output files: rewritten ones from their new layout, linked
    ones from their (unchanged) headers."""
    assert ckpt.root is not None and ckpt.index_file is not None
    try:
        obj = json.loads((ckpt.root / ckpt.index_file).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        obj = {}
    weight_map: dict[str, str] = {}
    total = 0
    for h in ckpt.files:
        for t in rewritten.get(h.file) or [
            OutTensor(t.name, t.dtype, t.shape, t) for t in h.tensors
        ]:
            weight_map[t.name] = h.file
            total += t.nbytes
    meta = obj.get("metadata") if isinstance(obj.get("metadata"), dict) else {}
    rest = {k: v for k, v in obj.items() if k not in ("metadata", "weight_map")}
    return {
        "metadata": {**meta, "total_size": total},
        **rest,
        "weight_map": dict(sorted(weight_map.items())),
    }


def _records(ckpt: Checkpoint, data: ChangeData) -> list[dict[str, Any]]:
    assert ckpt.root is not None
    out = []
    for rec in data.records():
        before = rec.pop("_before", None)
        if isinstance(before, TensorInfo):
            sha = _sha256_range(ckpt.root / before.file, before)
            rec["before"]["sha256"] = sha
            if rec["action"] == "rename":
                rec["after"]["sha256"] = sha
        out.append(rec)
    return out


def _fsync_dir(path: Path) -> None:
    for dirpath, _dirs, _files in os.walk(path):
        fd = os.open(dirpath, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def commit(w: Written, out: Path, *, force: bool) -> None:
    """Rename the temporary folder to DST (replacing an earlier fix output under ``force``)."""
    failpoint("before-rename")
    old = None
    if force and out.exists():
        old = out.with_name(out.name + TMP_MARK + "old-" + os.urandom(4).hex())
        os.rename(out, old)
    os.rename(w.tmp, out)
    _fsync_dir_only(out.parent)
    failpoint("after-rename")
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def _fsync_dir_only(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def discard(w: Written) -> None:
    """Remove a temporary output (the re-check failed)."""
    shutil.rmtree(w.tmp, ignore_errors=True)
