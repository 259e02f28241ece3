"""Apply a plan's edits: config edits on JSON, new tensor contents computed once per change."""

from __future__ import annotations

import copy
import hashlib
import json
from collections.abc import Iterator
from typing import Any

from qscale.checkpoint import Checkpoint
from qscale.errors import ConfigError
from qscale.fix.model import (
    Change,
    ConfigAction,
    ConfigEdit,
    DropTensor,
    Edit,
    RenameTensor,
    TensorData,
    WriteTensor,
)
from qscale.fix.tensors import TensorSource


def tensor_edits_by_file(changes: tuple[Change, ...]) -> dict[str, list[Edit]]:
    """The tensor edits of every change, grouped by the safetensors file they touch."""
    out: dict[str, list[Edit]] = {}
    for c in changes:
        for e in c.edits:
            if not isinstance(e, ConfigEdit):
                out.setdefault(e.file, []).append(e)
    return out


def _split(pointer: str) -> list[str]:
    return [p.replace("~1", "/").replace("~0", "~") for p in pointer.split("/")[1:]]


def _parent(doc: Any, pointer: str, *, create: bool) -> tuple[dict[str, Any], str]:
    parts = _split(pointer)
    node = doc
    for p in parts[:-1]:
        if not isinstance(node, dict):
            raise ConfigError(f"cannot edit `{pointer}`: `{p}` is not inside an object")
        if p not in node and create:
            node[p] = {}
        node = node.get(p)
    if not isinstance(node, dict) or not parts:
        raise ConfigError(f"cannot edit `{pointer}`: its parent is not an object")
    return node, parts[-1]


def apply_edit(doc: Any, e: ConfigEdit) -> dict[str, Any]:
    """Apply one edit to a JSON document in place; returns its manifest entry."""
    parent, key = _parent(
        doc, e.pointer, create=e.action in (ConfigAction.SET, ConfigAction.APPEND)
    )
    before = copy.deepcopy(parent.get(key))
    if e.action == ConfigAction.SET:
        parent[key] = copy.deepcopy(e.value)
    else:
        items = parent.setdefault(key, []) if e.action == ConfigAction.APPEND else parent.get(key)
        if not isinstance(items, list):
            raise ConfigError(f"cannot edit `{e.pointer}`: not a list")
        if e.action == ConfigAction.REMOVE:
            items[:] = [v for v in items if v != e.value]
        elif e.action == ConfigAction.APPEND:
            if e.value not in items:
                items.append(copy.deepcopy(e.value))
        else:
            new = [v for v in e.value if v not in items or v == e.old]
            at = items.index(e.old) if e.old in items else len(items)
            items[at : at + (e.old in items)] = new
    return {
        "file": e.file,
        "pointer": e.pointer,
        "action": e.action.value,
        "value": e.value,
        **({"old": e.old} if e.action == ConfigAction.REPLACE else {}),
        "before": before,
        "after": copy.deepcopy(parent.get(key)),
    }


def apply_config_edits(
    ckpt: Checkpoint, changes: tuple[Change, ...], log: list[dict[str, Any]]
) -> dict[str, Any]:
    """The edited JSON documents, by file; every edit is appended to ``log``."""
    assert ckpt.root is not None
    docs: dict[str, Any] = {}
    for c in changes:
        for e in c.edits:
            if not isinstance(e, ConfigEdit):
                continue
            if e.file not in docs:
                docs[e.file] = json.loads((ckpt.root / e.file).read_text(encoding="utf-8"))
            entry = apply_edit(docs[e.file], e)
            log.append({**entry, "change": c.title, "codes": list(c.codes)})
    return docs


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


class ChangeData:
    """New tensor contents, computed once per change when first needed, freed when every file
    the change writes is done; keeps the sha256 and error of each tensor for the manifest."""

    def __init__(self, ckpt: Checkpoint, changes: tuple[Change, ...]) -> None:
        self.ckpt = ckpt
        self.changes = changes
        self.source = TensorSource(ckpt)
        self.owner: dict[str, int] = {}
        self.pending: dict[int, set[str]] = {}
        for i, c in enumerate(changes):
            for e in c.edits:
                if isinstance(e, WriteTensor):
                    self.owner[e.name] = i
                    self.pending.setdefault(i, set()).add(e.file)
        self.cache: dict[int, dict[str, TensorData]] = {}
        self.after: dict[str, dict[str, Any]] = {}
        self.errors: dict[str, dict[str, float]] = {}

    def contents(self, name: str) -> TensorData:
        """The new contents of a written tensor."""
        i = self.owner[name]
        if i not in self.cache:
            c = self.changes[i]
            assert c.compute is not None, f"{c.title}: writes tensors but computes none"
            computed = c.compute(self.source)
            self.cache[i] = dict(computed.tensors)
            for n, t in computed.tensors.items():
                self.after[n] = {
                    "name": n,
                    "dtype": t.dtype,
                    "shape": list(t.shape),
                    "sha256": _sha(t.data),
                }
            self.errors.update({n: dict(v) for n, v in computed.errors.items()})
        return self.cache[i][name]

    def done(self, file: str) -> None:
        """``file`` is written: free the contents of changes with no file left to write."""
        for i, files in self.pending.items():
            files.discard(file)
            if not files:
                self.cache.pop(i, None)

    def records(self) -> Iterator[dict[str, Any]]:
        """One manifest record per tensor edit (``_before``: the stored tensor to hash)."""
        stored = self.ckpt.tensors
        for c in self.changes:
            common = {
                "codes": list(c.codes),
                "applicability": c.applicability.value,
                "change": c.title,
            }
            for e in c.edits:
                if isinstance(e, ConfigEdit):
                    continue
                yield {**_record(e, stored, self.after, self.errors), **common}


def _info(t: Any) -> dict[str, Any]:
    return {"name": t.name, "dtype": t.dtype, "shape": list(t.shape)}


def _record(
    e: Edit, stored: Any, after: dict[str, dict[str, Any]], errors: dict[str, dict[str, float]]
) -> dict[str, Any]:
    if isinstance(e, WriteTensor):
        old = stored.get(e.name)
        rec: dict[str, Any] = {
            "tensor": e.name,
            "file": e.file,
            "action": "write",
            "before": _info(old) if old else None,
            "after": after.get(e.name),
        }
        if e.name in errors:
            rec["error"] = errors[e.name]
        if old is not None:
            rec["_before"] = old
        return rec
    if isinstance(e, RenameTensor):
        old = stored[e.old]
        return {
            "tensor": e.new,
            "file": e.file,
            "action": "rename",
            "before": _info(old),
            "after": {**_info(old), "name": e.new},
            "_before": old,
        }
    assert isinstance(e, DropTensor)
    old = stored[e.name]
    return {
        "tensor": e.name,
        "file": e.file,
        "action": "drop",
        "before": _info(old),
        "after": None,
        "_before": old,
    }
