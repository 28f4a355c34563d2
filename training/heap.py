"""The training process's heap: glibc malloc settings that keep a step's large tensors from being page-faulted
in again every step, and the trim that keeps the kept memory from growing.

What it is: `keep_freed_memory` (called once by the command line before training) and `release_free_memory`
(called by the loop at every checkpoint). Both go through ctypes to the C library and do nothing (returning
False) where it is not glibc.
What it is not: a memory limit or a torch allocator setting (torch's CPU allocator is malloc).

    from training.heap import keep_freed_memory
    keep_freed_memory()

Tests: tests/test_training.py::test_heap_settings_keep_and_release_memory (in a subprocess, so the settings do
not outlive it); benchmarks/bench_training.py measures what keeping freed memory gains.
"""

from __future__ import annotations

import sys


def keep_freed_memory() -> bool:
    """Make glibc's malloc keep freed memory in the process instead of returning it to the kernel.

    A training step allocates and frees the same few hundred MB of large tensors every step; by default glibc
    serves each from a fresh mmap and unmaps it on free, so every step pays page faults and the kernel's zeroing
    of those pages (measured: a third of the fast GRU loop's time). With mmap off (M_MMAP_MAX = 0) and the trim
    threshold at its maximum the freed blocks are reused. Returns False where this is not glibc (no change).
    The price is fragmentation: blocks of other sizes (validation batches, checkpoints) leave free holes that
    the heap keeps, and a campaign run grew to 7 GB and was killed by the kernel's OOM killer beside other work;
    release_free_memory(), called at every checkpoint, hands those holes back.
    """
    libc = _libc()
    if libc is None:
        return False
    try:
        m_trim_threshold, m_mmap_max = -1, -4
        return bool(libc.mallopt(m_mmap_max, 0)) and bool(libc.mallopt(m_trim_threshold, 2 ** 31 - 1))
    except AttributeError:  # musl and others have no mallopt
        return False


def release_free_memory() -> bool:
    """glibc's malloc_trim(0): return every whole free page of the heap to the kernel (not only its top), so
    the free holes that keep_freed_memory's heap accumulates do not add up; the next steps fault in what they
    reuse, a few milliseconds every checkpoint. Returns whether anything was released (False off glibc)."""
    libc = _libc()
    try:
        return bool(libc.malloc_trim(0)) if libc is not None else False
    except AttributeError:
        return False


def _libc():
    import ctypes
    import ctypes.util

    if sys.platform != "linux":
        return None
    try:
        return ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
    except OSError:
        return None
