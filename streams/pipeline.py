"""The batch path from Kafka to ClickHouse, free of Faust so it can be tested directly.

An agent hands :meth:`BatchWriter.process` a batch of raw messages; the writer decodes them,
writes the valid events to ClickHouse (in the store's single executor thread) and returns the
dead letters to send. It never raises for bad data or an unavailable store:

* a message that fails to decode or validate becomes a :class:`~sinks.deadletter.DeadLetter`;
* an unavailable store is retried with exponential backoff until it comes back - the agent does
  not ack (so Kafka offsets are not committed) past data that has not been written;
* a batch the store rejects for its content is split in halves until the one poison record is
  isolated and dead-lettered, so one bad row cannot block a partition.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

import msgspec

from opsintel.events import decode_change, decode_monitoring, decode_ticket
from sinks.clickhouse import TABLES_BY_NAME, ClickHouseStore
from sinks.clickhouse.native import Encoding, EncodingFailed
from sinks.deadletter import DeadLetter
from sinks.exceptions import SchemaError, SinkRejected, SinkUnavailable
from streams.metrics import WorkerMetrics

log = logging.getLogger(__name__)

E = TypeVar("E")


class RawMessage(msgspec.Struct, frozen=True, gc=False):
    """What the pipeline needs of a Kafka message (one per event in flight: a struct that is cheap
    to make and, holding no containers of objects, untracked by the garbage collector)."""

    topic: str
    partition: int
    offset: int
    value: bytes | None
    headers: dict[str, bytes]
    key: bytes | None = None

    @property
    def origin(self) -> str:
        return f"{self.topic}/{self.partition}/{self.offset}"


@dataclass(frozen=True)
class EventKind(Generic[E]):
    """How one topic's messages are decoded and stored."""

    table: str
    decode: Callable[[bytes], E]
    write: Callable[[ClickHouseStore, Sequence[E], Sequence[int], Sequence[int]], int]


TICKETS: EventKind[Any] = EventKind("ticket_events", decode_ticket, ClickHouseStore.insert_ticket_events)
MONITORING: EventKind[Any] = EventKind(
    "monitoring_events", decode_monitoring, ClickHouseStore.insert_monitoring_events
)
CHANGES: EventKind[Any] = EventKind("change_events", decode_change, ClickHouseStore.insert_change_events)


def decode_batch(kind: EventKind[E], messages: Sequence[RawMessage]) -> tuple[list[E], list[RawMessage],
                                                                              list[DeadLetter]]:
    """Split a batch into decoded events (with their messages) and dead letters."""
    events: list[E] = []
    kept: list[RawMessage] = []
    dead: list[DeadLetter] = []
    for msg in messages:
        if msg.value is None:
            reason = "empty: message has no value (tombstone)"
        else:
            try:
                events.append(kind.decode(msg.value))
                kept.append(msg)
                continue
            except msgspec.ValidationError as e:
                reason = f"validation: {e}"
            except msgspec.DecodeError as e:
                reason = f"bad_json: {e}"
            except (ValueError, TypeError, OverflowError) as e:  # defensive: a decoder bug is still data
                reason = f"invalid: {type(e).__name__}: {e}"
        dead.append(DeadLetter.for_record(msg.value or b"", reason=reason, origin=msg.origin,
                                          origin_topic=msg.topic))
    return events, kept, dead


@dataclass(frozen=True, slots=True)
class Processed(Generic[E]):
    """The outcome of one batch: stored events with their messages, and dead letters."""

    events: list[E]
    messages: list[RawMessage]
    dead_letters: list[DeadLetter]


class BatchWriter:
    """Writes decoded batches to the store, with retry, backoff and poison isolation."""

    def __init__(self, store: ClickHouseStore, metrics: WorkerMetrics, *, max_backoff: float = 30.0) -> None:
        self.store = store
        self.metrics = metrics
        self.max_backoff = max_backoff
        # chDB is one engine per process and its client is sync: every call goes through this thread
        self.executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="clickhouse")
        self.stopping = False

    async def call(self, fn: Callable[..., Any], *args: Any) -> Any:
        """Run a blocking store call in the store's thread."""
        return await asyncio.get_running_loop().run_in_executor(self.executor, fn, *args)

    def decode(self, kind: EventKind[E], messages: Sequence[RawMessage]) -> Processed[E]:
        """Decode one batch: the events (with their messages) and the dead letters of the rest."""
        if messages:
            self.metrics.consumed.labels(messages[0].topic).inc(len(messages))
            self.metrics.batch_size.labels(messages[0].topic).observe(len(messages))
        events, kept, dead = decode_batch(kind, messages)
        self.metrics.count_dead_letters(dead)
        return Processed(events, kept, dead)

    def prepare(self, kind: EventKind[E], done: Processed[E]) -> Encoding | None:
        """Start encoding a decoded batch for its insert now, in the store's encoder child (None
        without one): it encodes while the detectors learn the batch, and the flush only inserts."""
        encoder = self.store.encoder
        if encoder is None or not done.events:
            return None
        table = TABLES_BY_NAME[kind.table]
        if not encoder.takes(table, done.events):  # (before listing the positions submit would not use)
            return None
        return encoder.submit(table, done.events, ([m.partition for m in done.messages],
                                                   [m.offset for m in done.messages]))

    async def write(self, kind: EventKind[E], events: list[E], kept: list[RawMessage],
                    encodings: Sequence[Encoding] | None = None) -> list[DeadLetter]:
        """Write decoded events (already encoded, if ``encodings`` has each batch of them); returns
        the dead letters of those the store refused (rare: a poison record is isolated by halving
        the batch), the rest is written."""
        if encodings:
            try:
                await self.retrying(kind.table, self.store.insert_encoded, kind.table, encodings)
            except (EncodingFailed, _Rejected) as e:
                # encoded from the rows again, in process, where a poison record can be isolated
                log.info("%s: the encoded batch did not go in (%s); writing its rows", kind.table, e)
            else:
                self.metrics.written.labels(kind.table).inc(len(events))
                return []
        rejected = await self._write(kind, events, kept)
        self.metrics.count_dead_letters(rejected)
        return rejected

    async def process(self, kind: EventKind[E], messages: Sequence[RawMessage]) -> Processed[E]:
        """Decode and write one batch.

        Returns the events now stored (with their messages) and the dead letters the caller must
        send before acking.
        """
        done = self.decode(kind, messages)
        rejected = await self.write(kind, done.events, done.messages)
        if not rejected:
            return done
        refused = {dl.origin for dl in rejected}
        pairs = [(e, m) for e, m in zip(done.events, done.messages, strict=True) if m.origin not in refused]
        return Processed([e for e, _ in pairs], [m for _, m in pairs], done.dead_letters + rejected)

    async def write_dead_letters(self, letters: Sequence[DeadLetter]) -> None:
        await self.retrying("dead_letters", self.store.insert_dead_letters, letters)
        self.metrics.written.labels("dead_letters").inc(len(letters))

    async def _write(self, kind: EventKind[E], events: list[E], kept: list[RawMessage]) -> list[DeadLetter]:
        if not events:
            return []
        partitions = [m.partition for m in kept]
        offsets = [m.offset for m in kept]
        try:
            await self.retrying(kind.table, kind.write, self.store, events, partitions, offsets)
        except _Rejected as e:
            if len(events) == 1:
                return [DeadLetter.for_record(kept[0].value or b"", reason=f"sink_rejected: {e}",
                                              origin=kept[0].origin, origin_topic=kept[0].topic)]
            mid = len(events) // 2
            return await self._write(kind, events[:mid], kept[:mid]) + await self._write(
                kind, events[mid:], kept[mid:]
            )
        self.metrics.written.labels(kind.table).inc(len(events))
        return []

    async def retrying(self, table: str, fn: Callable[..., Any], *args: Any) -> Any:
        delay = 0.5
        while True:
            started = asyncio.get_running_loop().time()
            try:
                result = await self.call(fn, *args)
            except SchemaError as e:
                log.error("%s; creating the schema", e)
                await self.call(self.store.migrate)
                continue
            except SinkUnavailable as e:
                self.metrics.write_failures.labels(table).inc()
                if self.stopping:
                    raise
                log.warning("write to %s failed (%s); retrying in %.1fs", table, e, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, self.max_backoff)
                continue
            except SinkRejected as e:
                raise _Rejected(str(e)) from e
            self.metrics.flush_seconds.labels(table).observe(asyncio.get_running_loop().time() - started)
            return result

    def close(self) -> None:
        self.stopping = True
        self.executor.shutdown(wait=True)
        self.store.close()


class _Rejected(Exception):
    """The store refused the batch because of its content (not retryable as is)."""
