"""What each agent does with a batch, without Faust: detect, publish, write, dead-letter.

Per batch of input events (tickets, alerts, changes): decode; the partition's detectors learn the
events and their changed problem records and anomalies are published to Kafka at once - the
latency path, which never waits for a ClickHouse write. Everything the batch stores - its raw events, the
impact rows of its tickets, those problem records and anomalies - is written by the next
**flush**, which then writes the detectors' state *as of the flush's last batch* (snapshotted
when the flush begins), sends the dead letters, and only then acks every batch it covered, so
Kafka commits an offset only when everything the batch caused is durable. Feedback batches are
checkpointed and acked the same way. A flush starts once ``batch_size`` events are
pending or the oldest pending batch is ``flush_seconds`` old (a timer looks too) and runs while
the next batches are detected. One flush runs at a time: batches detected meanwhile wait for the
next one, which starts as the running one ends; once ``BACKLOG_BATCHES`` × ``batch_size`` events
wait, detection waits too (a slow store holds the stream back, memory stays bounded); before
partitions are revoked, the worker waits for a flush of everything. A crash at any point
replays the unacked batches into idempotent tables and detectors that skip what they have seen
(their stored checkpoint never covers a batch whose rows are not all stored).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import msgspec

from opsintel.problems import Feedback, ProblemRecord, decode_feedback, decode_problem, encode_problem, newest_versions
from opsintel.settings import Settings
from sinks.clickhouse.native import Encoding
from sinks.deadletter import DeadLetter
from sinks.itsm import ItsmDelivery
from streams.detection import Checkpoint, PartitionedDetector
from streams.impact_stage import ImpactStage
from streams.pipeline import TICKETS, BatchWriter, EventKind, Processed, RawMessage

log = logging.getLogger(__name__)

#: events pending behind a running flush, in ``batch_size`` units, beyond which detection waits for it
BACKLOG_BATCHES = 2

#: sends one Kafka message; the returned awaitable resolves when the broker has it
Send = Callable[[str, bytes, bytes, list[tuple[str, bytes]] | None], Awaitable[Awaitable[Any]]]


class StreamHandlers:
    def __init__(self, settings: Settings, writer: BatchWriter, stages: Sequence[PartitionedDetector],
                 send: Send, impact: ImpactStage | None = None, itsm: ItsmDelivery | None = None,
                 commit: Callable[[], Awaitable[object]] | None = None) -> None:
        self.settings = settings
        self.writer = writer
        self.stages = list(stages)
        self.send = send
        self.impact = impact
        self.itsm = itsm
        #: commits the acked offsets (the consumer's ``commit``): called once a flush has acked
        self.commit = commit
        # the agents share each partition's detectors: one agent's checkpoint must never include
        # what another agent's batch has learned but not yet published (a crash would then skip
        # re-publishing it), so learn -> publish, and a flush, run one at a time
        self._detecting = asyncio.Lock()
        self._pending = _Pending()
        # flushes run one at a time, in the background of the next batches' detection
        self._flushing: asyncio.Future[None] | None = None
        self._next_flush: asyncio.Future[None] | None = None  #: started by the flush before it, as it ended
        self._in_backlog = False  #: the last flush was due by size: the input is a backlog
        self._caught_up = False  #: the last batch reached the end of its topic
        self._finishing = False  #: the worker stops: every pending batch is due at once
        self._flush_gate = asyncio.Lock()
        self._failed: Exception | None = None

    async def events(self, kind: EventKind[Any], messages: Sequence[RawMessage],
                     ack: Callable[[], Awaitable[None]], caught_up: bool = False) -> None:
        """Tickets, changes, alerts: detect and publish to Kafka now; store, checkpoint and ``ack``
        in the next flush (started now if one is due). ``caught_up``: this batch reached the end
        of what its topic holds (see :meth:`_due`)."""
        self._caught_up = caught_up
        timed = self.writer.metrics.stage_seconds.labels
        with timed("decode").time():
            done = self.writer.decode(kind, messages)
            encoding = self.writer.prepare(kind, done)  # the encoder child works while the detectors learn
        async with self._detecting:
            if done.events:
                with timed("detect").time():
                    for stage in self.stages:
                        await self.publish(await stage.learn(done.events, done.messages))
                        await self.publish_anomalies(stage.pop_anomalies())
            self._pending.add(ack, asyncio.get_running_loop().time(), kind, done, encoding=encoding)
        await self._flush_when_due()

    async def feedback(self, messages: Sequence[RawMessage], ack: Callable[[], Awaitable[None]]) -> None:
        """Human decisions on problems: apply to the owning partition's detector, publish the result;
        checkpointed and acked by the next flush, like the events."""
        dead: list[DeadLetter] = []
        decisions: list[tuple[Feedback, RawMessage]] = []
        for msg in messages:
            try:
                decisions.append((decode_feedback(msg.value or b""), msg))
            except (msgspec.DecodeError, msgspec.ValidationError, ValueError) as e:
                dead.append(_undecodable(msg, e))
        self.writer.metrics.count_dead_letters(dead)
        async with self._detecting:
            for fb, msg in decisions:
                known = False
                for stage in self.stages:
                    applied, records = await stage.apply_feedback(fb, msg)
                    known |= applied
                    await self.publish(records)
                if not known:
                    # no detector tracks it any more (its group expired): record the decision on the stored
                    # record, so the queue shows it, even though nothing will re-raise the group anyway
                    changed = await self.writer.retrying("problems", self.writer.store.record_decision, fb)
                    log.info("decision %s on %s applied to the stored record (%s)", fb.action, fb.problem_id,
                             "found" if changed else "no such problem")
            self._pending.add(ack, asyncio.get_running_loop().time(), dead_letters=dead)
        await self._flush_when_due()

    async def flush_if_due(self) -> None:
        """The timer's check: a stream that went quiet still gets its batches stored and acked."""
        if self._due():
            await self._start_flush()

    async def flush(self) -> None:
        """Store, checkpoint and ack everything pending, and wait for it (before a rebalance)."""
        await self._start_flush(force=True)
        async with self._flush_gate:
            await self._end_flush()

    async def finish(self) -> None:
        """The worker has stopped reading: flush what is pending now, and any batch still handed
        over as soon as it is (the caller bounds the wait; see :class:`streams.app.WorkerApp`)."""
        self._finishing = True
        await self.flush()

    async def _flush_when_due(self) -> None:
        """After a batch: start a flush if one is due. While one runs, batches pile up behind it
        (the running flush starts the next as it ends) up to ``BACKLOG_BATCHES`` × ``batch_size``
        events; past that, wait for it."""
        if not self._due():
            return
        # a flush is running, or someone (the timer, the flush before as it ended) is about to
        # start one once it has: that one takes these batches too
        busy = self._flush_gate.locked() or (self._flushing is not None and not self._flushing.done())
        if busy and self._pending.events < BACKLOG_BATCHES * self.settings.batch_size:
            return
        await self._start_flush()

    def _after_flush(self, flushed: asyncio.Future[None]) -> None:
        # a flush that failed stops all later ones (_end_flush says why to whoever comes next)
        if not flushed.cancelled() and flushed.exception() is None and self._due():
            self._next_flush = asyncio.ensure_future(self._start_flush())

    def _due(self) -> bool:
        """A flush is due once ``batch_size`` events pend, or the oldest pending batch is
        ``flush_seconds`` old - or at once when a backlog (flushed by size) has just been read to
        its end: what is left of it is stored now, not a ``flush_seconds`` later. A live stream
        that is always caught up is flushed by time alone, so it makes no more inserts than before."""
        p = self._pending
        return bool(p.acks) and (
            self._finishing
            or p.events >= self.settings.batch_size
            or asyncio.get_running_loop().time() - p.since >= self.settings.flush_seconds
            or (self._caught_up and self._in_backlog)
        )

    async def _start_flush(self, force: bool = False) -> None:
        async with self._flush_gate:
            # the previous flush must end first (its acks come first); while it runs, the next
            # batches are detected - a flush slower than the stream holds the stream back here
            await self._end_flush()
            async with self._detecting:
                if not (self._pending.acks and (force or self._due())):
                    return
                pending, self._pending = self._pending, _Pending()
                self._in_backlog = pending.events >= self.settings.batch_size
                # the detectors' state as of exactly these batches: written last, once all they
                # caused is stored, so a replay that skips their learning loses nothing
                pending.checkpoints = [stage.take_checkpoint() for stage in self.stages]
            self._flushing = asyncio.ensure_future(self._flush(pending))
            self._flushing.add_done_callback(self._after_flush)

    def fail(self, error: BaseException) -> None:
        """A batch failed in a way no retry fixes (a bug, a flush that failed for good): no flush
        after this point, so nothing from the failed batch on is checkpointed or acked."""
        if self._failed is None:
            self._failed = error if isinstance(error, Exception) else RuntimeError(repr(error))

    @property
    def failed(self) -> bool:
        return self._failed is not None

    async def _end_flush(self) -> None:
        """Wait for the running flush (the caller holds the gate). A flush that failed for good
        (retryable store errors are retried inside it) stops all later ones: their checkpoint
        would cover its unstored batches, which stay uncommitted so that a restart replays them."""
        if self._failed is not None:
            raise FlushFailed("an earlier flush failed: nothing is checkpointed past its batches "
                              "until the worker restarts and replays them") from self._failed
        if self._flushing is None:
            return
        flushing, self._flushing = self._flushing, None
        try:
            await flushing
        except Exception as e:  # a cancelled flush (shutdown) is not a failure
            self._failed = e
            log.critical("flush failed, no further flushes until the worker restarts: %r", e)
            raise

    async def _flush(self, pending: _Pending) -> None:
        timed = self.writer.metrics.stage_seconds.labels
        dead = pending.dead_letters
        if pending.deliveries:
            # the problem records and anomalies these batches published must be in Kafka before
            # their events are stored, checkpointed past and acked
            with timed("publish").time():
                await asyncio.gather(*pending.deliveries)
        # the events go to the store's thread while their impact rows are worked out here
        writing = asyncio.ensure_future(self._write_events(pending))
        try:
            rows, spent = await self._impact_rows(pending)
        finally:
            dead.extend(await writing)  # a flush never leaves a write running behind it
        if self.impact is not None and pending.tickets:
            started = time.perf_counter()
            await self.impact.write(rows)
            timed("impact").observe(spent + time.perf_counter() - started)
        with timed("problems").time():
            if pending.problems:
                await self.writer.retrying("problems", self.writer.store.insert_problems, pending.problems)
                self.writer.metrics.written.labels("problems").inc(len(pending.problems))
            if pending.anomalies:
                await self.writer.retrying("anomalies", self.writer.store.insert_anomalies, pending.anomalies)
                self.writer.metrics.written.labels("anomalies").inc(len(pending.anomalies))
        with timed("checkpoint").time():
            for stage, cp in zip(self.stages, pending.checkpoints, strict=True):
                await stage.write_checkpoint(cp)
        with timed("dead_letter").time():
            await self.send_dead_letters(dead)
        for ack in pending.acks:
            await ack()
        if self.commit is not None and pending.acks:
            # what was just stored is committed now rather than at the consumer's next commit tick
            # (up to broker_commit_interval later): lag and progress show the truth sooner, and a
            # crash re-reads less
            await self.commit()

    async def _write_events(self, pending: _Pending) -> list[DeadLetter]:
        dead: list[DeadLetter] = []
        with self.writer.metrics.stage_seconds.labels("write").time():
            for kind, (events, messages, encodings) in pending.by_kind.items():
                # a record the store refuses has been seen by the detectors (they learn before the
                # flush); it is dead-lettered here with the store's reason, the rest is written
                dead.extend(await self.writer.write(kind, events, messages, encodings))
        return dead

    async def _impact_rows(self, pending: _Pending) -> tuple[list[Any], float]:
        """The flush's impact rows, and the seconds it took to work them out."""
        if self.impact is None or not pending.tickets:
            return [], 0.0
        started = time.perf_counter()
        rows = await self.impact.rows(pending.tickets)
        return rows, time.perf_counter() - started

    async def push_problems(self, messages: Sequence[RawMessage]) -> None:
        """Problem records from the problems topic to every configured ITSM; returns once each has
        the newest version of every problem in the batch (retrying as long as it takes)."""
        if self.itsm is None:
            return
        records: list[ProblemRecord] = []
        dead: list[DeadLetter] = []
        for msg in messages:
            if msg.value is None:  # a tombstone of the compacted topic: nothing to push
                continue
            try:
                records.append(decode_problem(msg.value))
            except (msgspec.DecodeError, msgspec.ValidationError, ValueError) as e:
                dead.append(_undecodable(msg, e))
        await self.dead_letter(dead)
        await self.itsm.deliver(records)

    async def dead_letter(self, letters: Sequence[DeadLetter]) -> None:
        """Count and send dead letters of records an agent could not decode."""
        self.writer.metrics.count_dead_letters(letters)
        await self.send_dead_letters(letters)

    async def dead_letters(self, messages: Sequence[RawMessage]) -> None:
        letters = [DeadLetter.from_kafka(m.value, m.headers) for m in messages]
        await self.writer.write_dead_letters(letters)

    async def publish(self, records: Sequence[ProblemRecord]) -> None:
        """Problem records to the compacted problems topic now (what problem managers' tools and the
        ITSM pushes read); to ClickHouse (latest version wins) with the next flush, which also waits
        for Kafka to confirm them before it stores and acks anything (detection goes on meanwhile)."""
        if not records:
            return
        topic = self.settings.topic("problems")
        # the recurring detector is asked for updates after every event, so a batch can change a
        # problem many times (36,373 versions over a 3x replay of the ServiceNow log, one per ~12
        # events); the topic is compacted by problem id and the ITSM pushes read it, so each
        # problem goes out once per batch, at its newest version
        newest = newest_versions(records)
        sent = [await self.send(topic, r.problem_id.encode(), encode_problem(r), None) for r in newest]
        self._pending.deliveries.extend(sent)
        # every version to the store: it writes the newest row of each problem, and the links each
        # version changed (sinks.clickhouse.analytics_store.LinkLedger)
        self._pending.problems.extend(records)

    async def publish_anomalies(self, rows: Sequence[Any]) -> None:
        """Anomaly rows to the anomalies topic now (confirmed by the next flush, as :meth:`publish`);
        to ClickHouse (deterministic ids: replays fold) with the next flush."""
        if not rows:
            return
        topic = self.settings.topic("anomalies")
        sent = [await self.send(topic, r.service.encode(), msgspec.json.encode(r), None) for r in rows]
        self._pending.deliveries.extend(sent)
        self._pending.anomalies.extend(rows)

    async def send_dead_letters(self, letters: Sequence[DeadLetter]) -> None:
        topic = self.settings.topic("deadletter")
        pending = [await self.send(topic, dl.origin.encode(), dl.payload, dl.kafka_headers()) for dl in letters]
        if pending:
            await asyncio.gather(*pending)


def _undecodable(msg: RawMessage, error: Exception) -> DeadLetter:
    # msgspec.ValidationError subclasses DecodeError: well-formed JSON of the wrong shape is "validation"
    wrong_shape = isinstance(error, msgspec.ValidationError) or not isinstance(error, msgspec.DecodeError)
    code = "validation" if wrong_shape else "bad_json"
    return DeadLetter.for_record(msg.value or b"", reason=f"{code}: {error}", origin=msg.origin,
                                 origin_topic=msg.topic)


class FlushFailed(RuntimeError):
    """A flush failed earlier: the handlers refuse to checkpoint past its batches."""


class _Pending:
    """What was learned and published since the last flush and is still to be stored: the events
    by kind, their ticket events (for the impact model), problem records, anomaly rows (and their
    Kafka deliveries), dead letters, how to ack each batch, and (once the flush takes it) the
    detectors' checkpoints."""

    def __init__(self) -> None:
        #: per kind: events, their messages, and each batch's encoding (None once one batch has none)
        self.by_kind: dict[EventKind[Any], tuple[list[Any], list[RawMessage], list[Encoding] | None]] = {}
        self.tickets: list[Any] = []
        self.problems: list[ProblemRecord] = []
        self.anomalies: list[Any] = []
        self.dead_letters: list[DeadLetter] = []
        #: Kafka deliveries of the problem records and anomalies published (awaited by the flush)
        self.deliveries: list[Awaitable[Any]] = []
        self.acks: list[Callable[[], Awaitable[None]]] = []
        self.checkpoints: list[Checkpoint] = []
        self.events = 0
        self.since = 0.0  #: loop time the oldest pending batch arrived

    def add(self, ack: Callable[[], Awaitable[None]], now: float, kind: EventKind[Any] | None = None,
            done: Processed[Any] | None = None, dead_letters: Sequence[DeadLetter] = (),
            encoding: Encoding | None = None) -> None:
        if not self.acks:
            self.since = now
        if kind is not None and done is not None:
            if done.events:
                events, messages, encodings = self.by_kind.get(kind, ([], [], []))
                events.extend(done.events)
                messages.extend(done.messages)
                if encodings is not None and encoding is not None:
                    encodings.append(encoding)
                else:
                    encodings = None  # the flush encodes this kind's rows itself
                self.by_kind[kind] = (events, messages, encodings)
                if kind is TICKETS:
                    self.tickets.extend(done.events)
            self.dead_letters.extend(done.dead_letters)
            self.events += len(done.events)
        self.dead_letters.extend(dead_letters)
        self.acks.append(ack)
