"""``opsintel ingest``: produce canonical events from source files to Kafka."""

from __future__ import annotations

import argparse

FORMATS = ("servicenow-csv", "bpic2014-incident", "bpic2014-interaction", "bpic2014-change", "alertmanager",
           "jsonl")


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("ingest", help="send events from files (csv, json, jsonl; gzip ok) to Kafka")
    parser.add_argument("--format", required=True, choices=FORMATS, help="input format")
    parser.add_argument("paths", nargs="+", metavar="PATH")
    parser.add_argument("--rate", type=float, default=None, help="at most this many events per second")
    parser.add_argument("--order", choices=("time", "file"), default="time",
                        help="time: replay sorted by event time, as it happened (default; holds the file in "
                             "memory); file: stream in file order")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from tqdm import tqdm

    from opsintel.cli import CommandError
    from opsintel.settings import load_settings
    from streams.ingest import Ingestor, ensure_topics

    for p in args.paths:
        if not Path(p).is_file():
            raise CommandError(f"no such file: {p}")
    settings = load_settings()
    ensure_topics(settings)
    ingestor = Ingestor(settings, rate=args.rate)
    try:
        with tqdm(unit=" events", disable=args.no_progress, desc=f"ingest {args.format}") as bar:
            report = ingestor.ingest(args.format, args.paths, order=args.order, progress=bar)
    finally:
        ingestor.close()
    for topic, n in sorted(report.sent.items()):
        print(f"{topic}: {n} messages")
    for reason, n in sorted(report.rejected.items()):
        print(f"rejected ({reason}): {n} → dead-letter topic")
    print(f"{report.total} messages in {report.seconds:.1f}s ({report.total / max(report.seconds, 1e-9):,.0f}/s)")
    return 0
