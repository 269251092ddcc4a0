"""The dashboard server's memory: resident size, where the heap bytes are, giving free pages back.

A long-running server allocates from three native heaps besides Python's own: glibc's
``malloc`` (CPython objects above 512 bytes, NumPy, Bokeh's buffers), the Arrow memory pool
(pandas 3 strings, pyarrow tables) and polars' allocator. :func:`heap_bytes` reads the first
two so ``/metrics`` can tell a growing heap (a leak) from a heap that keeps freed pages
(retention); the rest of the resident size is code, stacks and the allocators it cannot see.
"""

from __future__ import annotations

import ctypes
import os
import sys
from functools import cache
from typing import Any

__all__ = [
    "POLARS_IO_THREADS",
    "TRIM_PERIOD",
    "bound_polars_io_threads",
    "heap_bytes",
    "release_free_memory",
    "rss_bytes",
]

#: Seconds between returns of freed heap memory to the system (:func:`release_free_memory`).
TRIM_PERIOD = 60.0

#: Most threads polars may start for blocking reads in a server process.
POLARS_IO_THREADS = 16


def rss_bytes() -> int:
    """Resident set size of this process in bytes (from ``/proc``; 0 where unavailable)."""
    try:
        with open("/proc/self/statm", encoding="ascii") as fh:
            pages = int(fh.read().split()[1])
        return pages * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return 0


_MALLINFO2_FIELDS = (  # glibc >= 2.33 ``struct mallinfo2``: every field a size_t, in order
    "arena", "ordblks", "smblks", "hblks", "hblkhd",
    "usmblks", "fsmblks", "uordblks", "fordblks", "keepcost",
)  # fmt: skip


class _MallInfo2(ctypes.Structure):
    _fields_ = [(name, ctypes.c_size_t) for name in _MALLINFO2_FIELDS]


@cache
def _libc() -> Any:
    import ctypes.util

    try:
        return ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
    except OSError:  # no C library to load by name (unusual platforms)
        return None


@cache
def _mallinfo2() -> Any:
    libc = _libc()
    fn = getattr(libc, "mallinfo2", None) if libc is not None else None
    if fn is not None:
        fn.restype = _MallInfo2
    return fn


def heap_bytes() -> dict[tuple[str, str], int]:
    """Bytes of the native heaps this process can measure, keyed ``(allocator, state)``.

    - ``("glibc", "in_use")``: ``uordblks + hblkhd`` of ``mallinfo2()``, allocated blocks
      (including the ``mmap``-ed large ones);
    - ``("glibc", "free")``: ``fordblks``, freed blocks glibc keeps in its arenas;
    - ``("arrow", "in_use")``: ``pyarrow.total_allocated_bytes()``, when pyarrow is loaded.

    Empty where neither is available (no glibc >= 2.33, no pyarrow).
    """
    out: dict[tuple[str, str], int] = {}
    mallinfo2 = _mallinfo2()
    if mallinfo2 is not None:
        info = mallinfo2()
        out["glibc", "in_use"] = int(info.uordblks + info.hblkhd)
        out["glibc", "free"] = int(info.fordblks)
    pa = sys.modules.get("pyarrow")  # reading it must not import it
    if pa is not None:
        out["arrow", "in_use"] = int(pa.total_allocated_bytes())
    return out


def release_free_memory() -> bool:
    """Give the C heap's free pages back to the system (glibc ``malloc_trim(0)``).

    Every tick allocates and frees frames and sessions come and go; glibc keeps freed
    pages in its arenas. Trimming every :data:`TRIM_PERIOD` seconds lowered the server's
    resident memory after a 30-minute soak from 448 to 420 MB (it did not stop the slow
    growth). Returns whether the C library offers the call (``False`` off glibc).
    """
    libc = _libc()
    trim = getattr(libc, "malloc_trim", None) if libc is not None else None
    if trim is None:
        return False
    trim(0)
    return True


def bound_polars_io_threads(limit: int = POLARS_IO_THREADS) -> int:
    """Cap the threads polars' I/O runtime may start (``POLARS_MAX_BLOCKING_THREAD_COUNT``).

    Polars reads parquet files on a pool of blocking threads that grows to the most reads
    ever in flight at once (up to 512) and keeps its threads while they are reused within
    10 s. The server scans every second from several threads, so the pool ratchets up at
    each busier moment: in a 30-minute soak the server went from 32 to 44 threads, 25 of
    them polars' I/O threads, each with its stack and allocator caches. Call this before
    the process's first scan (polars reads the variable when it starts its runtime); a
    value already set is kept. Returns the limit in effect.

    Reads beyond the limit wait for a thread. Polars warns each time a process reaches
    the limit ("may indicate a deadlock"); with a limit set on purpose that is expected,
    so the warning is silenced (a stuck read would show as stale data on the pages).
    """
    import warnings

    warnings.filterwarnings("ignore", message="POLARS_MAX_BLOCKING_THREAD_COUNT reached")
    return int(os.environ.setdefault("POLARS_MAX_BLOCKING_THREAD_COUNT", str(limit)))
