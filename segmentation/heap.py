"""Make glibc give large freed blocks back to the operating system at once.

By default glibc raises its mmap threshold each time a large block is freed (up to 32 MB),
so the next large allocations come from the heap and stay resident after they are freed:
a process that segments one image after another keeps its worst-case working memory, and
fragmentation adds to it. A kiosk with a memory budget wants the opposite. Fixing the
threshold makes every block above it an ``mmap`` of its own, unmapped on ``free``.

The cost is page faults when the next image's buffers are touched again. With transparent
huge pages for malloc (start the process with ``GLIBC_TUNABLES=glibc.malloc.hugetlb=1``;
the systemd unit and the container do) they are 2 MB faults and the cost disappears.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools

#: ``mallopt`` parameter numbers from glibc's ``malloc.h``.
_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
#: Blocks from this size up are mapped individually (glibc's initial default, kept fixed).
MMAP_THRESHOLD = 256 * 1024
#: Free heap top beyond this is trimmed at once.
TRIM_THRESHOLD = 1024 * 1024


@functools.cache
def release_freed_memory_promptly() -> bool:
    """Fix glibc's mmap and trim thresholds (process-wide, once). False where not glibc."""
    name = ctypes.util.find_library("c")
    if name is None:
        return False
    try:
        libc = ctypes.CDLL(name)
        mallopt = libc.mallopt
    except (OSError, AttributeError):  # musl and others have no mallopt
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    return bool(mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD)) and bool(
        mallopt(_M_TRIM_THRESHOLD, TRIM_THRESHOLD)
    )
