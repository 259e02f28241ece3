"""A stale index (QS007) rebuilt from the files' own headers.

``read_local_checkpoint`` stops on an index that places tensors in the wrong file, lists tensors no
file holds, or misses some (QS007). When every file the index names exists and no other file
is present, the files themselves say which tensors they hold: :func:`read_ignoring_index` reads
each of them (the same strict header validation) and :func:`rebuild` plans the index that the
writer then regenerates from the output headers.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np

from qscale.checkpoint import Checkpoint, read_local_checkpoint
from qscale.errors import ShardIndexError
from qscale.findings import Applicability, Finding, Location, Severity
from qscale.fix.model import Change
from qscale.safetensors_io import TensorInfo

NAME = "rebuild-index"


def read_ignoring_index(root: Path, exc: ShardIndexError) -> tuple[Checkpoint, Finding] | None:
    """The checkpoint as its safetensors files hold it, and the QS007 finding the stale index
    raised; None when the index is not merely stale (a file missing or unlisted)."""
    if exc.code != "QS007":
        return None
    index = next(iter(sorted(root.glob("*.safetensors.index.json"))), None)
    files = sorted(root.glob("*.safetensors"))
    if index is None or not files:
        return None
    parts = [read_local_checkpoint(f) for f in files]
    tensors: dict[str, TensorInfo] = {}
    values: dict[str, np.ndarray] = {}
    for part in parts:
        for name, t in part.tensors.items():
            if name in tensors:
                return None  # duplicated across files: QS005, not a stale index
            tensors[name] = t
        values.update(part.values)
    ckpt = dataclasses.replace(
        parts[0],
        source=str(root),
        files=tuple(h for part in parts for h in part.files),
        tensors=tensors,
        values=values,
        index_file=index.name,
    )
    finding = Finding(
        "QS007",
        Severity.ERROR,
        exc.message,
        Location(file=index.name),
        name="index-tensor-mismatch",
    )
    return ckpt, finding


def rebuild(finding: Finding, index_file: str) -> Change:
    """The change that rewrites the index from the output files."""
    return Change(
        fixer=NAME,
        title=f"Rebuild `{index_file}` from the tensors each file holds",
        applicability=Applicability.SAFE,
        edits=(),
        resolves=(finding,),
        detail="the weight map is regenerated from the safetensors headers; no tensor changes",
    )
