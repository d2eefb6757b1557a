"""Process-level settings of ``embdrift serve``: the allocator's arena cap.

glibc's ``malloc`` gives each new thread that meets a busy arena a new one, up to 8 per core.
The server runs request work on a pool of up to 40 threads, and each arena keeps the high-water
mark of the allocations made in it (parsed batches, window tests, explanations), so resident
memory creeps upward for minutes under concurrent load even though nothing is retained:
``python benchmarks/load.py`` measured +45 MiB per 1,000 batches after warm-up with the
default arenas against +5 MiB with ``MALLOC_ARENA_MAX=2`` (same run, same machine) and +5 to
+20 MiB (two runs; 0.38 MiB per batch) with this in-process cap.
:func:`cap_malloc_arenas` sets ``M_ARENA_MAX`` through ``mallopt`` before the server starts its
threads, which is what the ``MALLOC_ARENA_MAX`` environment variable does at process start.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import sys

__all__ = ["cap_malloc_arenas"]

_M_ARENA_MAX = -8  # from glibc's malloc.h


def cap_malloc_arenas(arenas: int = 2) -> bool:
    """Cap glibc's malloc arenas at ``arenas`` for threads started from now on.

    Does nothing (returns False) off Linux/glibc, or when ``MALLOC_ARENA_MAX`` is set in the
    environment (the user's choice wins); returns True when the cap was applied.
    """
    if not sys.platform.startswith("linux") or "MALLOC_ARENA_MAX" in os.environ:
        return False
    name = ctypes.util.find_library("c")
    if name is None:
        return False
    try:
        libc = ctypes.CDLL(name)
        mallopt = libc.mallopt
    except (OSError, AttributeError):  # musl and others have no mallopt
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    return bool(mallopt(_M_ARENA_MAX, int(arenas)))
