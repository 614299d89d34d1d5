"""glibc malloc settings (`mallopt`) for a process that handles one large buffer after
another.

The API holds each upload's body in memory (up to 64 MB) while it splits and stores it.
glibc's default heap hands memory freed at the top of the heap back to the kernel once
it passes a threshold that it keeps adjusting, and serves a buffer larger than any
freed before from fresh pages: a stream of 17 MB bodies then faults most pages of each
one in again (~4,000 page faults per body, measured), which on two busy cores shared
with the workers is CPU taken from the images. Fixed thresholds keep the freed memory
in the process for the next body instead.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging

log = logging.getLogger("imgburst.malloc")

M_TRIM_THRESHOLD = -1  # mallopt parameter numbers, from glibc's malloc.h
M_MMAP_THRESHOLD = -3
MMAP_THRESHOLD_MAX = 32 << 20  # the largest glibc accepts on 64-bit (HEAP_MAX_SIZE / 2)


def keep_freed_heap(retain_mb: int) -> bool:
    """Keep up to `retain_mb` of freed heap for reuse, and serve buffers below 32 MB
    from the heap rather than from fresh mappings. Returns whether it took effect
    (False off glibc, e.g. musl, where it is not needed in the same way)."""
    name = ctypes.util.find_library("c")
    try:
        mallopt = ctypes.CDLL(name).mallopt if name else None
    except (OSError, AttributeError):
        mallopt = None
    if mallopt is None:
        log.debug("no glibc mallopt here: heap left at its defaults")
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    done = mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD_MAX) == 1
    return mallopt(M_TRIM_THRESHOLD, retain_mb << 20) == 1 and done
