"""Process-wide memory settings shared by the worker and its insert encoder child."""

from __future__ import annotations

import ctypes
import logging
import platform

log = logging.getLogger(__name__)

#: allocations from this size up are mapped and unmapped on their own (glibc), see :func:`tune_malloc`
MMAP_THRESHOLD = 128 * 1024
_M_MMAP_THRESHOLD = -3  #: mallopt parameter (glibc malloc.h)


def tune_malloc() -> bool:
    """Keep glibc's malloc from holding on to freed memory in a long-running worker.

    glibc serves an allocation of ``M_MMAP_THRESHOLD`` or more from its own mapping, given back
    when freed, but raises that threshold to the size of every such block freed (up to 32 MiB):
    after the first few, the worker's large buffers - fetched Kafka data, the column blocks of
    each insert, detector snapshots - come from the heap, whose freed space glibc mostly keeps.
    Over a 10x replay of the ServiceNow log its heap grew to 288 MB with ~190 MB of it free; with
    the threshold fixed at 128 KiB it stayed at ~120 MB (~25-55 MB free) and the worker's peak RSS
    was ~115 MB lower (BENCHMARKS.md, "Latency, memory and inserts"). A fixed value also turns
    off the dynamic raise. Returns whether the setting took (only on glibc).
    """
    if platform.libc_ver()[0] != "glibc":
        return False
    try:
        libc = ctypes.CDLL("libc.so.6")
        ok = bool(libc.mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD))
    except (OSError, AttributeError):
        ok = False
    if not ok:
        log.warning("could not set malloc's mmap threshold; freed memory may stay in the heap")
    return ok
