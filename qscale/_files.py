"""Small file helpers shared by the CLI and the library."""

from __future__ import annotations

import os
import stat
from collections.abc import Sequence
from pathlib import Path

from qscale.errors import UsageError


def write_text_atomic(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` through a sibling temp file and a rename, so readers never
    see a half-written file. Raises OSError (the temp file is removed first).

    A symbolic link is written through (its target is replaced, the link stays), and a path
    that is not a regular file (``/dev/null``, ``/dev/stdout``, a FIFO) is written into as it
    is: a rename would put a regular file in place of the device (as root, for every
    process of the machine)."""
    path = Path(os.path.realpath(path))
    try:
        mode = path.stat().st_mode
    except FileNotFoundError:
        mode = None
    if mode is not None and not stat.S_ISREG(mode):
        with open(path, "w", encoding="utf-8") as fh:
            fh.write(text)
        return
    tmp = path.with_name(path.name + ".tmp")
    try:
        tmp.write_text(text, encoding="utf-8")
        tmp.replace(path)
    except OSError:
        tmp.unlink(missing_ok=True)
        raise


def refuse_overwrite(target: Path, inputs: Sequence[Path], option: str) -> None:
    """Refuse to write ``target`` when it is (or links to) one of ``inputs``.

    Raises:
        UsageError: naming the option and the input file.
    """
    try:
        real = target.resolve()
    except (OSError, RuntimeError):  # a link loop (RuntimeError before Python 3.13)
        raise UsageError(f"{option} {target}: is a symbolic link loop") from None
    for path in inputs:
        try:
            same = real == path.resolve() or (
                target.exists() and path.exists() and os.path.samefile(target, path)
            )
        except (OSError, RuntimeError):
            continue
        if same:
            raise UsageError(
                f"{option} {target}: is an input of this run ({path.name}); refusing to"
                " overwrite it",
                hint="write it outside the checkpoint, e.g. ./qscale-report.json",
            )
