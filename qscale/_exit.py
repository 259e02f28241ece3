"""Leave the process without freeing what a command built.

A check of a 400B-class MoE holds ~10^6 objects (tensor records, modules, shard slots);
freeing them one by one when the command returns and the interpreter shuts down costs ~0.15 s
of CPU, more than a tenth of the check (bench/README.md). The console script (:func:`run` in
``qscale.cli``) sets :data:`ENABLED`, commands hand what they built to :func:`keep`, and the
script ends with ``os._exit`` once stdout and stderr are flushed. In process (the tests, a
library caller) nothing is kept and nothing changes.
"""

from __future__ import annotations

import gc
import os
import sys

#: set by the console script only
ENABLED = False
_kept: list[object] = []


def pause_gc() -> None:
    """Turn the cyclic GC off for the rest of the process (only under the console script).

    ``qscale check`` calls it at start-up (:func:`qscale.cli.main`): during the imports, and
    between the read and the check and after it, each collection would visit the 10^5 to
    10^6 records built so far (~0.09 s per check of a 400B-class MoE); they hold no
    reference cycles, and the process ends with the command."""
    if ENABLED:
        gc.disable()


def keep(*objects: object) -> None:
    """Hold ``objects`` until the process exits (only under the console script)."""
    if ENABLED:
        _kept.extend(objects)


def exit_now(code: int) -> None:
    """Flush stdout and stderr and end the process with ``code``, skipping the teardown
    (atexit handlers, module clean-up, freeing every object)."""
    if not (_flushed(sys.stdout) and _flushed(sys.stderr)):
        code = code or 120  # a closed pipe: the exit status the interpreter would give
    os._exit(code)


def _flushed(stream: object) -> bool:
    if stream is None:  # the descriptor was closed when the process started: nothing to flush
        return True
    try:
        stream.flush()  # type: ignore[attr-defined]
    except (OSError, ValueError):
        return False
    return True
