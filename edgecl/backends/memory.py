"""Keep memory that MLX frees for its next allocation, in a process that trains (Linux glibc);
`MLXModel.policy_gradient` calls it, so processes that only answer keep glibc's defaults.

MLX's CPU allocator has no cache of its own: every array is malloc'd and freed. glibc maps each
large block fresh from the kernel and unmaps it on free, so the kernel clears the same pages
again for every array of every micro-batch (`clear_page` took 3-11% of an update under `perf`).
An update allocates the same sizes over and over, so keeping freed memory in the heap costs no
more than its peak: the update of one micro-batch of 8 x 128 tokens on one core took medians
of 12.4 / 12.9 / 12.8 s as glibc does it and 11.8 / 12.0 / 11.1 s this way, for 1% more peak
memory (benchmarks/README.md levers table).
"""

from __future__ import annotations

import ctypes
import functools
import sys

M_TRIM_THRESHOLD, M_MMAP_MAX = -1, -4  # glibc's <malloc.h>


@functools.cache
def hold_freed_memory() -> bool:
    """Serve large blocks from the heap and never give its free top back to the kernel (the
    process's memory stays at its peak until it exits). False where libc has no mallopt."""
    if sys.platform != "linux":
        return False
    mallopt = getattr(ctypes.CDLL(None), "mallopt", None)  # musl has none
    return bool(mallopt and mallopt(M_MMAP_MAX, 0) and mallopt(M_TRIM_THRESHOLD, -1))
