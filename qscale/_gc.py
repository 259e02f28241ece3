"""gc_paused(): the cyclic GC paused over bulk allocation (reads, checks).

Reading headers and checking a checkpoint allocate a few objects per tensor and module (10^5 to
10^6 on a large MoE checkpoint), none of them in a reference cycle; every collection would rescan
all of them and everything kept so far (bench/README.md measures what that costs).
"""

from __future__ import annotations

import gc
from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def gc_paused() -> Iterator[None]:
    """Disable the cyclic GC inside the block; restore its previous state after, on error too."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()
