"""Memory the process frees goes back to the system (issue 15 §4: a web process kept hundreds of
megabytes after large request bodies had come and gone)."""

from __future__ import annotations

import ctypes

M_MMAP_THRESHOLD = -3  # glibc's <malloc.h>
MMAP_THRESHOLD_BYTES = 1024 * 1024


def return_large_blocks_when_freed() -> bool:
    """Pin glibc's mmap threshold at 1 MiB: a block of that size or more (a request body, the text
    parsed from it) gets a mapping of its own, unmapped when freed. Left alone, glibc raises the
    threshold to the largest block freed so far (up to 32 MiB), and later blocks of that size come
    from the heap, which keeps the pages it grew by. Whether the allocator took it (glibc only)."""
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):  # not glibc: its allocator has no such setting
        return False
    return bool(mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES))
