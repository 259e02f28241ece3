"""read_checkpoint(): a local folder or file, or a Hugging Face Hub repo id.

The one place that decides whether a source is local or on the Hub. :mod:`qscale.checkpoint`
reads local files, :mod:`qscale.hub` reads a repo through HTTP range requests (or from the
local cache) on top of it; neither imports this module, so the three form no import cycle.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import TYPE_CHECKING

from qscale.checkpoint import REPO_SPEC, Checkpoint, read_local_checkpoint

if TYPE_CHECKING:
    from qscale.progress import ReadProgress

#: Names of safetensors/JSON files are never repo ids, so that a mistyped local file path stays
#: a "no such file" error.
_NOT_A_REPO = re.compile(r".*\.(safetensors|json)(@.*)?")


def is_repo_spec(source: str | os.PathLike[str]) -> bool:
    """Whether ``source`` names a Hub repo: no local path has that name, and it reads
    ``org/name[@revision]``."""
    text = str(source)
    return (
        not Path(source).exists()
        and REPO_SPEC.fullmatch(text) is not None
        and not _NOT_A_REPO.fullmatch(text)
    )


def read_checkpoint(
    source: str | os.PathLike[str],
    *,
    progress: ReadProgress | None = None,
    header_only: bool = False,
) -> Checkpoint:
    """Read a local checkpoint folder, a single ``.safetensors`` file, or a Hub repo.

    A ``source`` that is no local path and reads ``org/name[@revision]`` is read from the
    Hugging Face Hub (or its local cache) by :func:`qscale.hub.read_hub_checkpoint`.
    ``progress`` is told how many files there are and when each one has been read.
    ``header_only`` skips the deep scan of scale values (:mod:`qscale.scale_scan`).

    Raises:
        CheckpointNotFound, HeaderError, ShardIndexError, UnsafePathError, ConfigError,
        HubError (and its subclasses, for Hub repos)
    """
    if is_repo_spec(source):
        from qscale.hub import read_hub_checkpoint  # imports huggingface_hub: only when needed

        return read_hub_checkpoint(str(source), progress=progress, header_only=header_only)
    return read_local_checkpoint(source, progress=progress, header_only=header_only)
