"""Detectors in the stream: one instance per stream partition, checkpointed with its offsets.

The recurring-incident detector is stateful (open groups, baselines, decisions). For a restart
or a rebalance to continue exactly where the last committed batch left off, every partition's
detector is snapshotted to ClickHouse (``detector_state``) together with the next offset it has
seen per topic, *before* the batch is acked:

* a batch replayed after a crash is skipped message by message (``offset < position``), so no
  incident is counted twice;
* a partition that moves to another worker is restored there from its last snapshot;
* events of one service share a partition on every input topic (they are keyed by service, else
  CI), so a partition's detector sees that service's tickets, changes and alerts.

Nothing here imports Faust: the agents in :mod:`streams.app` call :class:`PartitionedDetector`
with decoded events and their Kafka coordinates, and tests call it directly.
"""

from __future__ import annotations

import asyncio
import base64
import logging
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol, cast

from opsintel.events import TicketEvent
from opsintel.problems import Feedback, ProblemRecord
from sinks.clickhouse import ClickHouseStore
from streams.pipeline import BatchWriter, RawMessage

log = logging.getLogger(__name__)

#: how far (seconds) an alert or change may lie ahead of a partition's newest ticket and still be
#: learned by its detectors (a week: the recurring detector's window)
MAX_CONTEXT_LEAD_S = 7 * 24 * 3600.0
#: the ticket clock travels with the offsets in ``detector_state.positions`` (not a topic name)
_CLOCK_KEY = "@ticket_clock"
#: events learned one at a time between two turns of the event loop (~20-40 ms of the recurring
#: detector): each of the background flush's steps waits for such a turn
_YIELD_EVERY = 1024


class StreamDetector(Protocol):
    def learn_one(self, event: Any) -> None: ...

    def pop_updates(self) -> list[ProblemRecord]: ...

    def apply_feedback(self, fb: Feedback) -> bool: ...

    def snapshot(self) -> bytes: ...


def owning_service(event: Any, key: bytes | None) -> str | None:
    """The service whose per-service series an event counts for on the partition it arrived on.

    Producers key events by service, and a ticket keeps the key of its first event
    (:class:`streams.ingest.Ingestor`), so one service's series live on exactly one partition:
    the one its key hashes to. A ticket recategorised later therefore keeps counting for the
    service it was *opened* against - counting it for its new service here would start a
    second, partial copy of that series on the wrong partition (and two anomaly rows with one
    id). Events without a service (keyed by CI or id) count for no service series; an unkeyed
    message counts for its own service.
    """
    if key is None:
        return event.service or None
    k = key.decode("utf-8", "replace")
    if k == event.service:
        return k
    if not event.service or k in (getattr(event, "ci", None), getattr(event, "ticket_id", None)):
        return None  # keyed by CI or id: its first event had no service
    return k


def _by_partition(messages: Sequence[RawMessage]) -> list[tuple[int, list[int]]]:
    """The positions of ``messages`` by partition (ascending), each partition's in offset order.

    A batch taken across a rebalance can hold a partition's redelivered messages after newer
    ones; only then is that partition's share sorted. (Grouping positions, not sorting (event,
    message) pairs, makes no object per message: a sort of pairs was ~10 % of the worker's main
    thread, most of it the garbage collections its tuples triggered.)
    """
    shares: dict[int, list[int]] = {}
    unordered: set[int] = set()
    for i, msg in enumerate(messages):
        share = shares.get(msg.partition)
        if share is None:
            shares[msg.partition] = [i]
            continue
        if msg.offset <= messages[share[-1]].offset:
            unordered.add(msg.partition)
        share.append(i)
    for p in unordered:
        shares[p].sort(key=lambda i: messages[i].offset)
    return sorted(shares.items())


class KeyedDetector(StreamDetector, Protocol):
    def learn_many(self, events: Sequence[Any], series: Sequence[str]) -> None: ...


@dataclass
class _Partition:
    detector: StreamDetector
    positions: dict[str, int] = field(default_factory=dict)
    changes: int = 0  #: bumped on every change; a checkpoint clears ``dirty`` only if none came meanwhile
    dirty: bool = False
    ticket_clock: float = 0.0  #: newest ticket event time seen (POSIX seconds)


@dataclass
class Checkpoint:
    """Snapshots taken of a :class:`PartitionedDetector`'s changed partitions, to be written."""

    rows: list[dict[str, Any]] = field(default_factory=list)
    taken: list[tuple[_Partition, int]] = field(default_factory=list)  #: (partition, its changes then)


class PartitionedDetector:
    """Keeps one detector per partition number, restored from and checkpointed to ClickHouse.

    Parameters
    ----------
    name:
        The detector's name in ``detector_state`` (e.g. ``"recurring"``).
    factory:
        Makes a fresh detector for a partition that has no snapshot yet.
    restore:
        Rebuilds a detector from :meth:`snapshot` bytes.
    writer:
        The batch writer whose executor thread owns the store.
    series_of:
        For a keyed detector whose results do not depend on how its input is chunked (the trend
        monitor: ``learn_many(events, services)``): the series an event counts for, from the
        event and its Kafka key (``None``: it counts for none), e.g. :func:`owning_service`.
    """

    def __init__(self, name: str, factory: Callable[[], StreamDetector],
                 restore: Callable[[bytes], StreamDetector], writer: BatchWriter, *,
                 series_of: Callable[[Any, bytes | None], str | None] | None = None) -> None:
        self.name = name
        self.series_of = series_of
        self.factory = factory
        self.restore = restore
        self.writer = writer
        self.store: ClickHouseStore = writer.store
        self._partitions: dict[int, _Partition] = {}
        self._stale: set[int] = set()
        self.skipped = 0  #: context events skipped for lying far ahead of the tickets' clock
        self.gaps = 0  #: messages never delivered between two learned offsets (should stay 0)

    async def _get(self, partition: int) -> _Partition:
        entry = self._partitions.get(partition)
        if entry is not None and partition in self._stale and not entry.dirty:
            entry = None  # the partition was revoked and may have been advanced by another worker
        if entry is None:
            self._stale.discard(partition)
            rows = await self.writer.retrying(
                "detector_state",
                self.store.query,
                "SELECT state, positions FROM {db}.detector_state FINAL "
                "PREWHERE detector = {d:String} AND partition = {p:UInt16}",
                {"d": self.name, "p": partition},
            )
            if rows:
                state, positions = rows[0]
                clock = float(positions.pop(_CLOCK_KEY, 0))
                entry = _Partition(self.restore(base64.b64decode(state)), {k: int(v) for k, v in positions.items()},
                                   ticket_clock=clock)
                log.info("%s: restored partition %d at %s", self.name, partition, entry.positions)
            else:
                entry = _Partition(self.factory())
            self._partitions[partition] = entry
        return entry

    async def learn(self, events: Sequence[Any], messages: Sequence[RawMessage]) -> list[ProblemRecord]:
        """Feed a batch; returns the problem records that changed.

        Each partition's share is fed in offset order, the partitions in ascending order. By
        default updates are popped after every event, not once per batch: the recurring detector
        decides raises and episode ends when asked for updates, so one fixed cadence makes the
        records the same whatever the batch boundaries were - after a crash and replay, or on
        another worker. A detector given ``series_of`` gives the same results however its input is
        chunked: it learns each partition's share of the batch in one ``learn_many`` call.
        """
        updates: list[ProblemRecord] = []
        for n, (partition, share) in enumerate(_by_partition(messages)):
            if n:
                # let the loop run between partitions (and every _YIELD_EVERY events): the
                # background flush goes on here (its next insert, its impact rows) rather than
                # after the whole batch's detection
                await asyncio.sleep(0)
            entry = await self._get(partition)
            if self.series_of is None:
                for n, i in enumerate(self._admit(entry, events, messages, share), 1):
                    entry.detector.learn_one(events[i])
                    updates.extend(entry.detector.pop_updates())
                    if not n % _YIELD_EVERY:
                        await asyncio.sleep(0)
                continue
            series_of = self.series_of
            chunk_events: list[Any] = []
            chunk_series: list[str] = []
            for i in self._admit(entry, events, messages, share):
                event = events[i]
                series = series_of(event, messages[i].key)
                if series is not None:
                    chunk_events.append(event)
                    chunk_series.append(series)
            if chunk_events:
                cast(KeyedDetector, entry.detector).learn_many(chunk_events, chunk_series)
                updates.extend(entry.detector.pop_updates())
        return updates

    def _admit(self, entry: _Partition, events: Sequence[Any], messages: Sequence[RawMessage],
               share: list[int]) -> Iterator[int]:
        """The positions in ``share`` (one partition's messages, in offset order) whose events
        the detector learns now: not the ones already in its state (a replay after a crash), nor
        context far ahead of the partition's tickets. Moves the partition's positions and clock."""
        positions = entry.positions
        clock = entry.ticket_clock
        for i in share:
            msg = messages[i]
            position = positions.get(msg.topic)
            if position is not None:
                if msg.offset < position:
                    continue  # already in this partition's state (a replay after a crash)
                if msg.offset > position:
                    self._gap(msg, position)
            positions[msg.topic] = msg.offset + 1
            entry.dirty = True
            entry.changes += 1
            event = events[i]
            t = event.event_time.timestamp()
            if isinstance(event, TicketEvent):
                if t >= clock + 1.0:  # the clock keeps whole seconds
                    clock = entry.ticket_clock = float(int(t))
            elif not clock or t > clock + MAX_CONTEXT_LEAD_S:
                # an alert or change far ahead of the tickets' clock (e.g. a replayed ticket
                # history next to live alerts), or one before the partition's first ticket (how
                # far ahead is unknown; it reaches the detectors before the tickets only when
                # the ticket agent lags), would move the trend monitor's clock and drop every
                # ticket as late: it stays in ClickHouse, the detectors skip it
                self.skipped += 1
                continue
            yield i

    def _gap(self, msg: RawMessage, position: int) -> None:
        # the consumer delivered a partition out of order or dropped messages: they would never reach
        # this detector (a later replay skips them), so say so loudly. Kafka itself leaves gaps only
        # for transaction markers and compaction, which opsintel's input topics do not have.
        missing = msg.offset - position
        self.gaps += missing
        self.writer.metrics.offset_gaps.labels(self.name, msg.topic).inc(missing)
        log.warning("%s: %s partition %d jumped from offset %d to %d; %d messages never reached the detector",
                    self.name, msg.topic, msg.partition, position, msg.offset, missing)

    async def apply_feedback(self, feedback: Feedback, msg: RawMessage) -> tuple[bool, list[ProblemRecord]]:
        """Apply a human decision arriving on partition ``msg.partition`` of the feedback topic.

        Returns whether this stage knew the problem (or had already applied this decision), and
        the records that changed.
        """
        entry = await self._get(msg.partition)
        if msg.offset < entry.positions.get(msg.topic, 0):
            return True, []
        applied = entry.detector.apply_feedback(feedback)
        entry.positions[msg.topic] = msg.offset + 1
        entry.dirty = True
        entry.changes += 1
        if not applied:  # another stage may own it (recurring vs trend problems), or it expired
            log.debug("%s: no problem %s on partition %d", self.name, feedback.problem_id, msg.partition)
        return applied, entry.detector.pop_updates()

    def pop_anomalies(self) -> list[Any]:
        """Anomaly rows of detectors that produce them (``pop_anomalies``), from every partition."""
        out: list[Any] = []
        for _, entry in sorted(self._partitions.items()):
            pop = getattr(entry.detector, "pop_anomalies", None)
            if pop is not None:
                out.extend(pop())
        return out

    async def checkpoint(self) -> int:
        """Write the snapshot of every partition that changed since the last checkpoint."""
        return await self.write_checkpoint(self.take_checkpoint())

    def take_checkpoint(self) -> Checkpoint:
        """The snapshot of every partition that changed since the last checkpoint (not yet written:
        take it where the state is consistent, write it once what it covers is stored)."""
        cp = Checkpoint()
        now = datetime.now(UTC)
        version = time.time_ns()
        for p, entry in sorted(self._partitions.items()):
            if entry.dirty:
                cp.taken.append((entry, entry.changes))
                cp.rows.append({"detector": self.name, "partition": p, "version": version,
                                "positions": {**entry.positions, _CLOCK_KEY: int(entry.ticket_clock)},
                                "state": base64.b64encode(entry.detector.snapshot()).decode(),
                                "written_at": now})
        return cp

    async def write_checkpoint(self, cp: Checkpoint) -> int:
        if cp.rows:
            await self.writer.retrying("detector_state", self.store.insert_rows, "detector_state", cp.rows)
            for entry, changes in cp.taken:
                entry.dirty = entry.changes != changes  # still dirty if it learned since the snapshot
        return len(cp.rows)

    def revoke(self, partitions: set[int]) -> None:
        """Partitions taken away by a rebalance: their state is reloaded from ClickHouse on next use
        (a batch still in flight checkpoints first)."""
        self._stale |= partitions & set(self._partitions)
