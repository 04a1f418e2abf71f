"""glibc's malloc set to give large blocks back to the system as soon as they are freed.

Image intake decodes photos of up to 40 megapixels (160 MB, and as much again converted)
on up to INTAKE_CONCURRENCY threads. By default glibc raises its mmap threshold each time
such a block is freed, so later ones come from per-thread arenas that never shrink: 40
accepted photos on 16 threads left a process at 2.8 GB. A fixed 128 KiB threshold (which
also turns the raising off) maps every large block and unmaps it when freed: the same
work peaked at 0.47 GB and fell back to 0.09 GB. Elsewhere than glibc, nothing changes.
"""

import ctypes
import ctypes.util

M_MMAP_THRESHOLD = -3  # <malloc.h>
MMAP_THRESHOLD = 128 * 1024  # glibc's own starting value


def large_blocks_returned() -> bool:
    """Fix glibc's mmap threshold for this process (and what it forks); True if it took."""
    name = ctypes.util.find_library("c")
    if name is None:
        return False
    try:
        mallopt = ctypes.CDLL(name).mallopt
    except (OSError, AttributeError):  # not glibc: musl and macOS have no mallopt
        return False
    return bool(mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD))
