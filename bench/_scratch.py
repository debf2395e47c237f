"""Benchmarks' Kafka topics are scratch: each invocation deletes the ones it made.

Every invocation loads the log into fresh topics and runs workers under fresh consumer groups
(Faust names its own topics after the group). Left behind, they pile up on the local broker
(30 GB and ~9,500 partitions after a few sessions), and a broker carrying that many partitions
makes the next measurements slower and noisier.
"""

from __future__ import annotations

from collections.abc import Iterable

from opsintel.settings import Settings


def drop_topics(settings: Settings, prefixes: Iterable[str]) -> list[str]:
    """Delete every topic whose name starts with one of ``prefixes``; returns the names deleted."""
    from kafka.admin import KafkaAdminClient

    starts = tuple(p for p in prefixes if p)
    if not starts:
        return []
    admin = KafkaAdminClient(**settings.kafka_client_options(), client_id="opsintel-bench")
    try:
        names = sorted(t for t in admin.list_topics() if t.startswith(starts))
        for i in range(0, len(names), 100):
            admin.delete_topics(names[i:i + 100], timeout_ms=60_000)
        return names
    finally:
        admin.close()
