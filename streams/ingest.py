"""Ingest: files in a source format → canonical events → Kafka (kafka-python producer).

Events are keyed by service (else CI, else their own id) so one service's events keep their
order on one partition. Records an adapter rejects go to the dead-letter topic with their reason
and original bytes - an ingest never silently drops a row.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from opsintel.events import ChangeEvent, Event, MonitoringEvent, TicketEvent, encode
from opsintel.settings import Settings, TopicName
from sinks.deadletter import DeadLetter
from streams.adapters._base import Rejected

log = logging.getLogger(__name__)

INPUT_TOPICS: tuple[TopicName, ...] = ("tickets", "monitoring", "changes", "deadletter")

#: the topic a format's records go to (a rejected record is counted against it); JSON lines mix
#: types, so their rejects count against the topic of the record before them
FORMAT_TOPIC: dict[str, TopicName] = {
    "servicenow-csv": "tickets",
    "bpic2014-incident": "tickets",
    "bpic2014-interaction": "tickets",
    "bpic2014-change": "changes",
    "alertmanager": "monitoring",
    "jsonl": "tickets",
}


def topic_for(event: Any) -> TopicName:
    if isinstance(event, TicketEvent):
        return "tickets"
    if isinstance(event, MonitoringEvent):
        return "monitoring"
    if isinstance(event, ChangeEvent):
        return "changes"
    raise TypeError(f"not a canonical event: {type(event).__name__}")


#: every topic the pipeline uses; ``problems`` is compacted (keyed by problem id, latest version kept)
ALL_TOPICS: tuple[TopicName, ...] = (*INPUT_TOPICS, "feedback", "problems", "anomalies")
TOPIC_CONFIGS: dict[str, dict[str, str]] = {"problems": {"cleanup.policy": "compact"}}

#: tickets whose first partition key the producer remembers (oldest forgotten first)
_MAX_TICKET_KEYS = 1_000_000


def ensure_topics(settings: Settings, names: Iterable[TopicName] = ALL_TOPICS) -> list[str]:
    """Create the topics that do not exist yet (admin client); returns the names created.

    Input and feedback topics get ``settings.partitions`` partitions each, so partition *p* of
    every input topic (keyed by service) lands on the same worker as its detector state.
    """
    from kafka.admin import KafkaAdminClient, NewTopic
    from kafka.errors import TopicAlreadyExistsError

    admin = KafkaAdminClient(**settings.kafka_client_options(), client_id="opsintel-admin")
    try:
        existing = set(admin.list_topics())
        new = [
            NewTopic(name=settings.topic(n), num_partitions=settings.partitions,
                     replication_factor=settings.replication_factor, topic_configs=TOPIC_CONFIGS.get(n, {}))
            for n in names
            if settings.topic(n) not in existing
        ]
        if new:
            with contextlib.suppress(TopicAlreadyExistsError):  # another process created them meanwhile
                admin.create_topics(new)
        return [t.name for t in new]
    finally:
        admin.close()


@dataclass
class IngestReport:
    sent: Counter[str] = field(default_factory=Counter)  #: messages per topic name
    rejected: Counter[str] = field(default_factory=Counter)  #: adapter rejects per reason code
    seconds: float = 0.0

    @property
    def total(self) -> int:
        return sum(self.sent.values())


class Ingestor:
    """Sends canonical events to Kafka.

    Parameters
    ----------
    settings:
        Kafka connection and topic names.
    rate:
        Upper bound in events per second (``None``: as fast as the producer goes).
    """

    def __init__(self, settings: Settings, *, rate: float | None = None) -> None:
        from kafka import KafkaProducer

        self.settings = settings
        self.rate = rate
        self.producer = KafkaProducer(
            **settings.kafka_client_options(),
            client_id="opsintel-ingest",
            acks="all",
            linger_ms=20,
            batch_size=512 * 1024,
            max_request_size=4 * 1024 * 1024,
        )
        self.report = IngestReport()
        self._errors: list[BaseException] = []
        self._ticket_keys: dict[tuple[str, str], str] = {}

    def send_event(self, event: TicketEvent | MonitoringEvent | ChangeEvent) -> None:
        topic = self.settings.topic(topic_for(event))
        key = event.partition_key
        if isinstance(event, TicketEvent):
            # a ticket keeps the key of its first event even if its service changes later (a
            # re-categorised incident): all its events stay on one partition, in order, with the state
            # the worker keeps for it
            key = self._ticket_keys.setdefault((event.source, event.ticket_id), key)
            if len(self._ticket_keys) > _MAX_TICKET_KEYS:
                self._ticket_keys.pop(next(iter(self._ticket_keys)))
        self._send(topic, key.encode(), encode(event), None)

    def send_rejected(self, rejected: Rejected, origin_topic: str) -> None:
        dl = DeadLetter.for_record(rejected.raw, reason=rejected.reason, origin=rejected.source,
                                   origin_topic=origin_topic)
        self._send(self.settings.topic("deadletter"), dl.origin.encode(), dl.payload, dl.kafka_headers())
        self.report.rejected[dl.reason_code] += 1

    def _send(self, topic: str, key: bytes, value: bytes, headers: list[tuple[str, bytes]] | None) -> None:
        future = self.producer.send(topic, key=key, value=value, headers=headers)
        future.add_errback(self._errors.append)
        self.report.sent[topic] += 1

    def ingest(self, fmt: str, paths: Iterable[str | Path], *, order: str = "time", progress: Any = None,
               **options: Any) -> IngestReport:
        """Read every path in ``fmt`` and produce its events; blocks until all are acknowledged.

        ``order="time"`` (the default) replays the events as they happened: sorted by event time
        (stable, so a ticket's lifecycle keeps its order), which is what a live ITSM stream looks
        like and what the detectors expect. Exports are often grouped by ticket instead (the
        ServiceNow log lists every event of one incident before the next incident), which would
        show the detectors a ticket's closure weeks before the next ticket opens. Sorting holds the
        events in memory (about 1 KB each); ``order="file"`` streams them as read, for huge files
        that are already in time order.
        """
        from streams.adapters import read_events

        if order not in ("time", "file"):
            raise ValueError(f"order must be 'time' or 'file', not {order!r}")
        started = time.monotonic()
        origin_topic = self.settings.topic(FORMAT_TOPIC.get(fmt, "tickets"))
        items: Iterator[Event | Rejected] = (item for path in paths for item in read_events(fmt, path, **options))
        if order == "time":
            events = []
            for item in items:
                if isinstance(item, Rejected):
                    self.send_rejected(item, origin_topic)
                else:
                    events.append(item)
            events.sort(key=lambda e: e.event_time)
            items = iter(events)
        for n, item in enumerate(items, 1):
            if isinstance(item, Rejected):
                self.send_rejected(item, origin_topic)
            else:
                origin_topic = self.settings.topic(topic_for(item))
                self.send_event(item)
            if progress is not None:
                progress.update(1)
            if self.rate:
                ahead = n / self.rate - (time.monotonic() - started)
                if ahead > 0:
                    time.sleep(ahead)
            if self._errors:
                raise self._errors[0]
        self.flush()
        self.report.seconds += time.monotonic() - started
        return self.report

    def flush(self) -> None:
        self.producer.flush()
        if self._errors:
            raise RuntimeError(f"{len(self._errors)} messages failed to send: {self._errors[0]!r}")

    def close(self) -> None:
        self.producer.close()


class OffsetProgress:
    """How far the worker's consumer group is: committed offsets against the end of each topic.

    The worker commits an offset only after the batch is in ClickHouse, so "nothing remaining"
    means every message produced so far has been written (or dead-lettered).
    """

    def __init__(self, settings: Settings, topics: Iterable[str], group: str | None = None) -> None:
        from kafka import KafkaConsumer
        from kafka.admin import KafkaAdminClient

        self.topics = list(topics)
        self.group = group or settings.consumer_group
        self._admin = KafkaAdminClient(**settings.kafka_client_options(), client_id="opsintel-progress")
        self._consumer = KafkaConsumer(**settings.kafka_client_options(), client_id="opsintel-progress",
                                       enable_auto_commit=False)

    def end_offsets(self) -> dict[tuple[str, int], int]:
        from kafka import TopicPartition

        tps = [TopicPartition(t, p) for t in self.topics for p in (self._consumer.partitions_for_topic(t) or ())]
        return {(tp.topic, tp.partition): off for tp, off in self._consumer.end_offsets(tps).items()}

    def committed(self) -> dict[tuple[str, int], int]:
        offsets = self._admin.list_group_offsets({self.group: None}).get(self.group, {})
        return {(tp.topic, tp.partition): meta.offset for tp, meta in offsets.items() if meta.offset >= 0}

    def remaining(self) -> int:
        """Messages on the topics that the group has not committed yet."""
        ends = self.end_offsets()
        done = self.committed()
        return sum(max(end - done.get(tp, 0), 0) for tp, end in ends.items())

    def close(self) -> None:
        self._admin.close()
        self._consumer.close()

    def __enter__(self) -> OffsetProgress:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
