"""glibc's malloc set to give the memory of decoded photos back as soon as it is freed.

Image intake decodes photos of up to 40 megapixels on up to INTAKE_CONCURRENCY threads,
in Pillow's 16 MiB blocks. By default glibc raises its mmap threshold each time such a
block is freed, so later ones come from per-thread arenas that keep what is freed: 40
accepted photos on 16 threads left a process at 2.9 GB. A fixed threshold (which also
turns the raising off) between the two kinds of large buffer keeps both cheap:
- above a download's buffers (READ_CHUNK_SIZE, 4 MiB; config/asgi.py's hops, up to 8 MiB),
  which the heap keeps for reuse: mapped afresh each time, or trimmed and grown again, their
  page faults took a download from 0.19 to 0.46-0.60 CPU seconds per GB;
- below Pillow's blocks, which are mapped and unmapped: the same 40 photos peaked at
  0.66 GB and left 0.31 GB, and 120 left no more.
Elsewhere than glibc, nothing changes.
"""

import ctypes
import ctypes.util

M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3  # <malloc.h>
MMAP_THRESHOLD = 12 * 1024 * 1024
# What glibc's own raising sets beside it: a download's freed buffers stay for the next
# one instead of going back to the system and faulting in again.
TRIM_THRESHOLD = 2 * MMAP_THRESHOLD


def large_blocks_returned() -> bool:
    """Fix glibc's mmap threshold for this process (and what it forks); True if it took."""
    name = ctypes.util.find_library("c")
    if name is None:
        return False
    try:
        mallopt = ctypes.CDLL(name).mallopt
    except (OSError, AttributeError):  # not glibc: musl and macOS have no mallopt
        return False
    return bool(
        mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD) and mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD)
    )
