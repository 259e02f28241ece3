"""glibc malloc settings for the command line's short-lived process.

A check allocates and frees a few hundred numpy temporaries of 0.1-1 MB per checkpoint (the
header scan of each file). Above glibc's mmap threshold (128 KiB, raised only as such blocks
are freed) each one is a fresh ``mmap`` whose pages fault in and are zeroed, and freed memory
at the top of the heap is handed back and faulted in again: on a full-scale Qwen3.5-397B-FP8
layout ~15,000 of a check's ~61,000 page faults (bench/README.md). A fixed threshold of 32 MiB
and a trim threshold of 256 MiB let the heap keep and reuse that memory. Only the command line
sets them (a library caller's process is left alone), and not when the user tuned malloc
through its environment variables.
"""

from __future__ import annotations

import os
import sys

#: mallopt parameters (glibc malloc.h)
M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3
MMAP_THRESHOLD = 32 << 20
TRIM_THRESHOLD = 256 << 20
#: the environment through which glibc takes malloc settings
_USER_SETTINGS = ("MALLOC_", "GLIBC_TUNABLES")


def tune() -> bool:
    """Set the two thresholds; False where malloc is not glibc's or the user set its own."""
    if not sys.platform.startswith("linux"):
        return False
    if any(k.startswith(_USER_SETTINGS) for k in os.environ):
        return False
    try:
        import ctypes

        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):  # no C library to load, or one without mallopt
        return False
    return bool(mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD)) and bool(
        mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD))
