"""glibc ``malloc`` settings for CPU benchmarks: keep freed memory for reuse.

By default glibc serves every allocation over ~32 MB with a fresh ``mmap`` and unmaps it on
``free``, so each new large tensor page-faults on first touch: writing it the first time costs
several times what writing it again does (measured: docs/benchmarks.md, "Allocator"). A
caching allocator avoids that; PyTorch's own CPU launcher
(``python -m torch.backends.xeon.run_cpu``) preloads jemalloc or tcmalloc for this reason.
:func:`keep_freed_memory` gets the same effect from glibc itself, in-process, without
preloading anything: no ``mmap`` for large blocks and no trimming of the heap, so freed blocks
are reused already touched.

It changes the whole process (every later allocation) and cannot be undone: tools call it only
when asked to (``--allocator caching``), after the measurements made with the default.
"""

from __future__ import annotations

import ctypes
import ctypes.util

__all__ = ["keep_freed_memory"]

_M_TRIM_THRESHOLD = -1  # from <malloc.h>
_M_MMAP_MAX = -4


def keep_freed_memory() -> bool:
    """Make glibc keep freed memory for reuse; returns False when libc is not glibc.

    Sets ``M_MMAP_MAX = 0`` (large blocks come from the heap, not from fresh ``mmap``s) and
    ``M_TRIM_THRESHOLD`` to its maximum (freed memory at the top of the heap is not returned
    to the system): the same as starting Python with ``MALLOC_MMAP_MAX_=0
    MALLOC_TRIM_THRESHOLD_=2147483647``.
    """
    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name)
    except OSError:
        return False
    mallopt = getattr(libc, "mallopt", None)
    if mallopt is None or getattr(libc, "gnu_get_libc_version", None) is None:
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    return bool(mallopt(_M_MMAP_MAX, 0)) and bool(mallopt(_M_TRIM_THRESHOLD, 2**31 - 1))
