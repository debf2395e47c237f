"""``opsintel worker``: run the Faust worker (same as ``faust -A streams.app worker``)."""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("worker", help="run the stream worker (Kafka → detectors → ClickHouse)")
    parser.add_argument("-l", "--loglevel", default=None, help="log level (default: OPSINTEL_LOG_LEVEL)")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from faust.worker import Worker

    from opsintel.settings import load_settings
    from streams.app import create_app
    from streams.ingest import ensure_topics

    settings = load_settings()
    # the consumer subscribes once at start: its topics must exist before it joins the group
    ensure_topics(settings)
    (settings.data_dir / "faust").mkdir(parents=True, exist_ok=True)
    app = create_app(settings)
    worker = Worker(app, loglevel=args.loglevel or settings.log_level, quiet=True)
    try:
        worker.execute_from_commandline()
    finally:
        app.opsintel.writer.close()  # type: ignore[attr-defined]
    return 0
