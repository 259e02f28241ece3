"""Edit, Change, Refusal, FixPlan, FixResult: what `qscale fix` plans, applies and reports.

A *change* is one remedy: a title, an applicability (safe / unsafe), the findings it resolves,
and its *edits*. Edits are a closed union — a tensor written with new contents, a tensor
renamed, a tensor dropped, a config value edited — each naming the file it touches, so a plan
can be grouped by file and sized before anything is read or written. The contents of written
tensors come from the change's ``compute`` function, called only when the output is written.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from enum import Enum
from typing import TYPE_CHECKING, Any

from qscale.findings import Applicability, Finding, Report
from qscale.safetensors_io import DTYPES

if TYPE_CHECKING:
    from qscale.checkpoint import Checkpoint
    from qscale.fix.tensors import TensorSource

JSON = Any


def finding_key(f: Finding) -> tuple[str, str, str, str]:
    """What identifies a finding across two checks of related checkpoints: its code and where
    it points (messages may word the same problem differently)."""
    loc = f.location
    key = loc.key or ""
    if not (loc.param or loc.tensor):  # e.g. one finding per ignore entry: name the entry
        key += "|" + f.message.split("`")[1] if f.message.count("`") >= 2 else ""
    return (f.code, loc.param or "", loc.tensor or "", key)


def error_fields(err: Any) -> dict[str, float]:
    """The numeric fields of a numerics ``QuantError`` (a dataclass), for reports."""
    return {
        k: float(v)
        for k, v in dataclasses.asdict(err).items()
        if isinstance(v, int | float) and not isinstance(v, bool)
    }


def nbytes(dtype: str, shape: tuple[int, ...]) -> int:
    """Bytes a tensor of this dtype and shape holds on disk."""
    return (math.prod(shape) * DTYPES[dtype].bits + 7) // 8


@dataclass(frozen=True, slots=True)
class WriteTensor:
    """A tensor written with new contents: in place of a stored one of the same name, or new
    (placed right after ``after`` in its file, else at the end)."""

    name: str
    file: str
    dtype: str
    shape: tuple[int, ...]
    after: str | None = None

    @property
    def nbytes(self) -> int:
        """Bytes of the new contents."""
        return nbytes(self.dtype, self.shape)


@dataclass(frozen=True, slots=True)
class RenameTensor:
    """A stored tensor kept byte for byte under another name."""

    old: str
    new: str
    file: str


@dataclass(frozen=True, slots=True)
class DropTensor:
    """A stored tensor left out of the output."""

    name: str
    file: str


class ConfigAction(str, Enum):
    """What a config edit does at its JSON pointer."""

    SET = "set"  #: set the key to ``value`` (``old`` is what was there, None if absent)
    REMOVE = "remove"  #: remove ``value`` from the list
    APPEND = "append"  #: append ``value`` to the list (created when absent)
    REPLACE = "replace"  #: replace the list item ``old`` with the items in ``value``


@dataclass(frozen=True, slots=True)
class ConfigEdit:
    """One edit of a JSON config file (``config.json``, ``hf_quant_config.json``)."""

    file: str
    pointer: str  #: JSON pointer of the key or list, e.g. /quantization_config/ignore
    action: ConfigAction
    value: JSON
    old: JSON = None


Edit = WriteTensor | RenameTensor | DropTensor | ConfigEdit


def touched(e: Edit) -> tuple[str, ...]:
    """The tensor names an edit touches (none for config edits)."""
    match e:
        case WriteTensor() | DropTensor():
            return (e.name,)
        case RenameTensor():
            return (e.old, e.new)
        case ConfigEdit():
            return ()
    raise AssertionError(e)  # unreachable: the union is closed


@dataclass(frozen=True, slots=True)
class TensorData:
    """New contents of a tensor: safetensors dtype, shape and little-endian bytes."""

    dtype: str
    shape: tuple[int, ...]
    data: bytes


@dataclass(frozen=True, slots=True)
class Computed:
    """What a change's ``compute`` returns: the contents of every tensor it writes, and for
    lossy rewrites the error each one carries (``max_abs``, ``rmse``, ``rel_rmse``, …)."""

    tensors: Mapping[str, TensorData]
    errors: Mapping[str, Mapping[str, float]] = field(default_factory=dict)


Compute = Callable[["TensorSource"], Computed]


@dataclass(frozen=True)
class Change:
    """One remedy: its edits, the findings it resolves, and how to compute new tensors."""

    fixer: str  #: the fixer that planned it, e.g. "per-channel-scale"
    title: str  #: imperative, e.g. "Rewrite `…in_proj_qkv` scales per channel"
    applicability: Applicability
    edits: tuple[Edit, ...]
    resolves: tuple[Finding, ...] = ()  #: empty: an improvement no finding asked for
    compute: Compute | None = None  #: contents of the WriteTensor edits
    detail: str = ""  #: one line on why the rewrite is correct (or what it costs)

    @property
    def files(self) -> tuple[str, ...]:
        """Files this change touches, in first-touched order."""
        return tuple(dict.fromkeys(e.file for e in self.edits))

    @property
    def codes(self) -> tuple[str, ...]:
        """Codes of the findings it resolves."""
        return tuple(dict.fromkeys(f.code for f in self.resolves))


@dataclass(frozen=True, slots=True)
class Refusal:
    """A fixer's reason for not fixing a finding it recognises (it becomes the rejection)."""

    finding: Finding
    reason: str


@dataclass(frozen=True, slots=True)
class Rejection:
    """A finding left unresolved, and why."""

    finding: Finding
    reason: str
    blocking: bool  #: True: the checkpoint cannot be fixed (at or above the error severity)


@dataclass(frozen=True, slots=True)
class FileAction:
    """What the output does with one file."""

    file: str
    action: str  #: "rewrite", "link", "write" (configs, index, manifest)
    bytes: int  #: size in the output (estimated before writing for rewrites)
    source_bytes: int = 0  #: size in the source (0 for new files)
    tensors: tuple[str, ...] = ()  #: tensors written, renamed or dropped in it


@dataclass(frozen=True)
class FixPlan:
    """Everything `qscale fix` would do, before anything is written."""

    source: str
    engine: str
    report: Report  #: the check before fixing
    applied: tuple[Change, ...]
    available: tuple[Change, ...]  #: unsafe changes not applied (no --unsafe-fixes)
    rejected: tuple[Rejection, ...]  #: findings that stay, blocking or not
    files: tuple[FileAction, ...] = ()
    checkpoint: Checkpoint | None = field(default=None, repr=False)  #: the source, as read
    rebuild_index: bool = False  #: the index is stale (QS007): regenerate it from the files

    @property
    def blocked(self) -> bool:
        """Whether a finding that no applied change resolves makes the checkpoint unfixable."""
        return any(r.blocking for r in self.rejected)


class Status(str, Enum):
    """How a fix run ended."""

    FIXED = "fixed"  #: DST written and re-checked
    CLEAN = "clean"  #: nothing to change; DST written as links to the source
    DRY_RUN = "dry-run"  #: plan only, nothing written
    REJECTED = "rejected"  #: findings without a fix; nothing written
    RECHECK_FAILED = "recheck-failed"  #: written, but the re-check still finds what was fixed


@dataclass(frozen=True)
class FixResult:
    """The outcome of :func:`qscale.fix.fix`."""

    plan: FixPlan
    status: Status
    out: str | None = None  #: the output folder, when written
    records: tuple[Mapping[str, JSON], ...] = ()  #: the manifest's tensor records
    config_edits: tuple[Mapping[str, JSON], ...] = ()
    recheck: Report | None = None
    still_there: tuple[Finding, ...] = ()  #: claimed fixed, found again by the re-check
    introduced: tuple[Finding, ...] = ()  #: errors the re-check finds that were not there

    @property
    def exit_code(self) -> int:
        """0: fixed, clean or dry run that could be fixed; 1: rejected or re-check failed."""
        if self.status in (Status.REJECTED, Status.RECHECK_FAILED):
            return 1
        return 1 if self.plan.blocked else 0
