"""``opsintel topics``: create the Kafka topics (admin client), idempotent."""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("topics", help="create the Kafka topics if missing")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from opsintel.settings import load_settings
    from streams.ingest import ensure_topics

    created = ensure_topics(load_settings())
    print("created: " + (", ".join(created) if created else "nothing (all topics exist)"))
    return 0
