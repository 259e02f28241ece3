"""How much of the long tests a run does.

By default the random tests run a fixed-seed sample of their cases and the full-scale layout
test a few layers of the model; ``QSCALE_FUZZ=full`` runs the full case counts and every
layer (minutes more on 2 cores). Both are deterministic: a failure reproduces with the same
setting.
"""

from __future__ import annotations

import os

FULL = os.environ.get("QSCALE_FUZZ", "").strip().lower() == "full"


def cases(default: int, full: int) -> int:
    """``full`` under ``QSCALE_FUZZ=full``, else ``default``."""
    return full if FULL else default
