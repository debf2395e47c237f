"""Prometheus metrics of the worker, on their own registry (served at ``/metrics``).

Names follow Prometheus conventions (``_total`` counters, base units in seconds); ``promtool check
metrics`` runs over a real scrape in the tests.
"""

from __future__ import annotations

from collections.abc import Iterable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, ProcessCollector

from sinks.deadletter import DeadLetter
from sinks.itsm import ItsmOutbox

#: outcomes of ITSM pushes, and the outbox counter each one is read from
ITSM_OUTCOMES = {"sent": "sent", "retried": "retries", "rejected": "rejected", "dropped": "dropped"}


class WorkerMetrics:
    """The worker's metrics. One instance per worker process (tests make their own)."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        r = self.registry
        ProcessCollector(registry=r)  # process_resident_memory_bytes, process_cpu_seconds_total, ...
        self.consumed = Counter(
            "opsintel_events_consumed_total", "Kafka messages consumed, per topic.", ["topic"], registry=r
        )
        self.written = Counter(
            "opsintel_rows_written_total", "Rows written to ClickHouse, per table.", ["table"], registry=r
        )
        self.dead_lettered = Counter(
            "opsintel_events_dead_lettered_total",
            "Records sent to the dead-letter topic, per origin topic and reason code.",
            ["topic", "reason"],
            registry=r,
        )
        self.flush_seconds = Histogram(
            "opsintel_flush_duration_seconds",
            "Time to write one batch to ClickHouse, per table.",
            ["table"],
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0),
            registry=r,
        )
        self.stage_seconds = Histogram(
            "opsintel_stage_duration_seconds",
            "Time one batch spends in each stage of the worker: decode, detect (learn + send problems and "
            "anomalies to Kafka); per flush: publish (waiting for Kafka to confirm them), write (raw "
            "events to ClickHouse), impact, problems, checkpoint (detector state), dead_letter.",
            ["stage"],
            buckets=(0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0),
            registry=r,
        )
        self.batch_size = Histogram(
            "opsintel_batch_size_events",
            "Events per processed batch, per topic.",
            ["topic"],
            buckets=(1, 10, 100, 500, 1000, 2500, 5000, 10000, 20000),
            registry=r,
        )
        self.write_failures = Counter(
            "opsintel_sink_failures_total",
            "Failed ClickHouse writes that were retried, per table.",
            ["table"],
            registry=r,
        )
        self.clickhouse_memory = Gauge(
            "opsintel_clickhouse_embedded_memory_bytes",
            "Memory the embedded ClickHouse engine (chDB) tracks in this worker process: queries, inserts, "
            "merges, caches (its MemoryTracking). The rest of process_resident_memory_bytes is the worker's own.",
            registry=r,
        )
        self.consumer_lag = Gauge(
            "opsintel_consumer_lag_messages",
            "Messages not yet processed: high watermark minus next offset to process, per topic partition.",
            ["topic", "partition"],
            registry=r,
        )
        self.webhook_requests = Counter(
            "opsintel_webhook_requests_total",
            "Alertmanager webhook requests, per HTTP status code.",
            ["code"],
            registry=r,
        )
        self.offset_gaps = Counter(
            "opsintel_detector_offset_gaps_total",
            "Messages a detector never saw: offsets skipped between two it learned, per detector and topic.",
            ["detector", "topic"],
            registry=r,
        )
        self.ready = Gauge("opsintel_worker_ready", "1 when the worker is connected and serving.", registry=r)
        self.itsm_pushes = Counter(
            "opsintel_itsm_pushes_total",
            "Problem record pushes to an ITSM, per target and outcome (sent, retried, rejected, dropped).",
            ["target", "outcome"],
            registry=r,
        )
        self.itsm_pending = Gauge(
            "opsintel_itsm_pending_records",
            "Problem records waiting to be pushed to an ITSM (retrying), per target.",
            ["target"],
            registry=r,
        )
        self._itsm_seen: dict[tuple[str, str], int] = {}

    def count_dead_letters(self, letters: Iterable[DeadLetter]) -> None:
        """Count dead letters by origin topic and reason code."""
        for dl in letters:
            self.dead_lettered.labels(dl.origin_topic, dl.reason_code).inc()

    def observe_itsm(self, outbox: ItsmOutbox) -> None:
        """Bring the ITSM metrics of one target up to date with its outbox's counters."""
        target = outbox.client.name
        for outcome, attr in ITSM_OUTCOMES.items():
            count = getattr(outbox, attr)
            seen = self._itsm_seen.get((target, outcome), 0)
            self.itsm_pushes.labels(target, outcome).inc(max(0, count - seen))
            self._itsm_seen[target, outcome] = count
        self.itsm_pending.labels(target).set(len(outbox))
