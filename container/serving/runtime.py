"""Process-level tuning that every serving worker (and the benchmark floor) gets.

Thread caps and the allocator must be set before numpy and pandas start
allocating, so `serve` sets them first thing; the heap is frozen last, just
before the workers fork. Forked workers inherit all three.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import functools
import gc
import os
import sys

from serving.settings import available_cpus

_THREAD_VARIABLES = (
    "OMP_NUM_THREADS",
    "OPENBLAS_NUM_THREADS",
    "MKL_NUM_THREADS",
    "BLIS_NUM_THREADS",
    "VECLIB_MAXIMUM_THREADS",
    "NUMEXPR_NUM_THREADS",
)

# glibc mallopt() parameters (malloc.h).
_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
# 32 MiB is glibc's largest allowed mmap threshold on 64-bit.
MMAP_THRESHOLD = 32 * 1024 * 1024
TRIM_THRESHOLD = 128 * 1024 * 1024


def limit_native_threads(workers: int) -> None:
    """One worker per core: give each worker's BLAS/OpenMP pool its share of cores.

    Without this every worker starts a pool as large as the machine and they
    oversubscribe the CPUs. Values the operator set are kept. Only effective
    before numpy is first imported.
    """
    per_worker = max(1, available_cpus() // max(1, workers))
    for variable in _THREAD_VARIABLES:
        os.environ.setdefault(variable, str(per_worker))


def tune_allocator() -> bool:
    """Keep freed memory for the next request instead of returning it to the kernel.

    Each 6 MiB request allocates tens of MB (body chunks, parser buffers,
    columns) and frees them again. With glibc's defaults, blocks over its
    (moving) mmap threshold are mapped and unmapped every time, and the heap
    top is trimmed, so every request page-faults its memory in again:
    measured here, ~10-15 ms of kernel time per 6 MiB request and a CSV parse
    of ~25 ms instead of ~16 ms. A fixed 32 MiB mmap threshold and a 128 MiB
    trim threshold keep a request's working set mapped; memory stays bounded
    by the largest request (bigger blocks are still mapped and unmapped).
    Returns False where there is no glibc (nothing to tune).
    """
    if not sys.platform.startswith("linux"):
        return False
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
        mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
        mallopt.restype = ctypes.c_int
        return bool(
            mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD)
            and mallopt(_M_TRIM_THRESHOLD, TRIM_THRESHOLD)
        )
    return False


def freeze_heap() -> None:
    """Move everything allocated so far out of the garbage collector's sight.

    The libraries and the model are loaded once and live forever. Frozen, they
    are never scanned again by full collections (cheaper GC per request), and
    a forked worker's collections never write to their object headers, so
    their memory stays shared with the parent instead of being copied page by
    page (copy-on-write). No gc.collect() first: it would add ~55 ms to start-up
    just to free a little import-time garbage.
    """
    gc.freeze()


class _MallInfo2(ctypes.Structure):
    """glibc's `struct mallinfo2` (glibc >= 2.33): sizes in bytes."""

    _fields_ = [
        (name, ctypes.c_size_t)
        for name in (
            "arena",
            "ordblks",
            "smblks",
            "hblks",
            "hblkhd",
            "usmblks",
            "fsmblks",
            "uordblks",
            "fordblks",
            "keepcost",
        )
    ]


@functools.cache
def _libc() -> ctypes.CDLL | None:
    if not sys.platform.startswith("linux"):
        return None
    try:
        return ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
    except OSError:
        return None


def free_heap_bytes() -> int | None:
    """Bytes glibc's heap holds free (`mallinfo2().fordblks`); None without glibc >= 2.33."""
    libc = _libc()
    mallinfo2 = getattr(libc, "mallinfo2", None)
    if mallinfo2 is None:
        return None
    mallinfo2.restype = _MallInfo2
    return int(mallinfo2().fordblks)


def release_free_memory(min_free_bytes: int = 0) -> int | None:
    """Give free heap memory back to the kernel (`malloc_trim(0)`) if at least `min_free_bytes`.

    `tune_allocator` keeps freed memory for the next request; after a burst of
    large requests (4 concurrent 100 MiB bodies left ~300 MiB resident) that
    is memory nobody uses. Workers call this only once they have been idle for
    a second, so a steady stream of requests never pays for it. Returns the
    free heap bytes it found when it trimmed (0 if unknown), None when it did not.
    """
    libc = _libc()
    if libc is None or not hasattr(libc, "malloc_trim"):
        return None
    free = free_heap_bytes()
    if free is not None and free < min_free_bytes:
        return None
    libc.malloc_trim.argtypes = [ctypes.c_size_t]
    libc.malloc_trim.restype = ctypes.c_int
    libc.malloc_trim(0)
    return free or 0


def raise_open_file_limit() -> None:
    """Lift the soft open-files limit to the hard one.

    Each connection is a file descriptor in its worker; the common soft limit
    of 1024 would refuse connections well below SERVING_MAX_CONNECTIONS.
    """
    try:
        import resource
    except ImportError:  # pragma: no cover - not Unix
        return
    with contextlib.suppress(ValueError, OSError):
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        if hard == resource.RLIM_INFINITY or soft < hard:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
