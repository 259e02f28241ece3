"""Progress of a checkpoint read: the hook read_checkpoint calls, and the CLI's rich bar.

The library only calls a :class:`ReadProgress` it is given; whether anything is drawn is the
CLI's choice (:func:`read_progress`): a bar on stderr, only when stderr is a terminal, the
report format is the console one, and the read is worth watching (many files, or a Hub repo).
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from rich.console import Console
    from rich.progress import Progress, TaskID

#: Local reads of fewer files finish before a bar would be worth drawing.
MIN_FILES = 8


class ReadProgress(Protocol):
    """What :func:`qscale.read_checkpoint` reports while it reads."""

    def start(self, files: int, *, remote: bool) -> None:
        """``files`` safetensors files are about to be read, over the network if ``remote``."""
        ...

    def advance(self, nbytes: int) -> None:
        """One more file has been read; ``nbytes`` of it were read (fetched, if remote)."""
        ...


class RichReadProgress:
    """A transient rich progress bar: files read, and the bytes read or fetched."""

    def __init__(self, console: Console) -> None:
        self._console = console
        self._progress: Progress | None = None
        self._task: TaskID | None = None
        self._bytes = 0
        self._verb = "read"

    def start(self, files: int, *, remote: bool) -> None:
        """Draw the bar if the read is remote or has at least :data:`MIN_FILES` files."""
        if self._progress is not None or not (remote or files >= MIN_FILES):
            return
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

        self._verb = "fetched" if remote else "read"
        self._progress = Progress(
            TextColumn("reading safetensors headers"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("files, {task.fields[nbytes]}"),
            console=self._console,
            transient=True,
        )
        self._task = self._progress.add_task("read", total=files, nbytes=self._amount())
        self._progress.start()

    def advance(self, nbytes: int) -> None:
        """Count one file and its bytes."""
        self._bytes += nbytes
        if self._progress is not None and self._task is not None:
            self._progress.update(self._task, advance=1, nbytes=self._amount())

    def close(self) -> None:
        """Remove the bar (it is transient: nothing stays on the terminal)."""
        if self._progress is not None:
            self._progress.stop()
            self._progress = None

    def _amount(self) -> str:
        from rich.filesize import decimal

        return f"{decimal(self._bytes)} {self._verb}"


@contextmanager
def read_progress(enabled: bool) -> Iterator[ReadProgress | None]:
    """The CLI's progress hook: a bar on stderr when ``enabled`` (console format) and stderr is
    a terminal; otherwise None, so that pipes, files and JSON output get no progress output."""
    if not enabled or sys.stderr is None or not sys.stderr.isatty():
        yield None
        return
    from rich.console import Console

    bar = RichReadProgress(Console(stderr=True))
    try:
        yield bar
    finally:
        bar.close()
