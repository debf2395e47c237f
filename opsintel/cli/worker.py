"""``opsintel worker``: run the Faust worker (same as ``faust -A streams.app worker``)."""

from __future__ import annotations

import argparse
import ctypes
import gc
import logging
import platform

log = logging.getLogger(__name__)

#: new container objects between young collections (CPython's default is 700): see :func:`tune_gc`
GC_YOUNG_THRESHOLD = 20_000
#: allocations from this size up are mapped and unmapped on their own (glibc), see :func:`tune_malloc`
MMAP_THRESHOLD = 128 * 1024
_M_MMAP_THRESHOLD = -3  #: mallopt parameter (glibc malloc.h)


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("worker", help="run the stream worker (Kafka → detectors → ClickHouse)")
    parser.add_argument("-l", "--loglevel", default=None, help="log level (default: OPSINTEL_LOG_LEVEL)")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from faust.worker import Worker

    from detectors import compile_trend_kernels
    from opsintel.settings import load_settings
    from streams.app import create_app
    from streams.ingest import ensure_topics

    settings = load_settings()
    # the consumer subscribes once at start: its topics must exist before it joins the group
    ensure_topics(settings)
    (settings.data_dir / "faust").mkdir(parents=True, exist_ok=True)
    app = create_app(settings)
    # the trend detectors' compiled loops: compiled (or loaded from numba's cache) before the
    # consumer joins its group, not inside the first batch (~3 s of CPU without a cache)
    compile_trend_kernels()
    worker = Worker(app, loglevel=args.loglevel or settings.log_level, quiet=True)
    tune_gc()
    tune_malloc()
    try:
        worker.execute_from_commandline()
    finally:
        app.opsintel.writer.close()  # type: ignore[attr-defined]
    return 0


def tune_gc() -> None:
    """Garbage collection for a long-running stream worker.

    CPython's defaults (a young collection every 700 new container objects, a full one every
    100 young ones, subject to the 25 % growth rule) are made for short scripts: in a replay of
    the ServiceNow log the worker spent ~2.9 s of 12.5 s collecting (15 full collections of
    ~140 ms). Everything alive once the app is built - modules, classes, the app - lives for the
    whole run, so it is frozen out of every scan, and young collections run every 20,000
    allocations: what the worker allocates per batch mostly dies within it. Full collections stay
    bounded by the 25 % rule, so cyclic garbage is still reclaimed.
    """
    gc.collect()
    gc.freeze()
    gc.set_threshold(GC_YOUNG_THRESHOLD, 20, 10)


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
