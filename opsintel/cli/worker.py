"""``opsintel worker``: run the Faust worker (same as ``faust -A streams.app worker``)."""

from __future__ import annotations

import argparse
import gc
import logging

from opsintel.memory import tune_malloc

log = logging.getLogger(__name__)

#: new container objects between young collections (CPython's default is 700): see :func:`tune_gc`
GC_YOUNG_THRESHOLD = 20_000


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
    except SystemExit as e:
        if e.code not in (0, None) or app.opsintel.fatal is None:  # type: ignore[attr-defined]
            raise
    finally:
        app.opsintel.writer.close()  # type: ignore[attr-defined]
    # a failed batch stopped the worker: not a clean exit (a supervisor restarts it; it replays the batch)
    return 1 if app.opsintel.fatal is not None else 0  # type: ignore[attr-defined]


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
