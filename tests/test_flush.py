"""Detect now, store later: what a batch is acked after, without Faust or Kafka (real chDB store).

``StreamHandlers.events`` detects a batch and sends its problem records at once; its rows, the
detectors' checkpoint and the ack wait for a flush. These tests pin the order that makes a crash
safe: nothing is acked before everything it caused is stored, and the stored checkpoint covers
exactly the batches whose rows are stored.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import msgspec
import pytest

from detectors import RecurringIncidentDetector
from detectors._seasonal import AnomalyVerdict
from detectors._trend_series import anomaly_row
from opsintel.problems import ProblemRecord, decode_problem
from opsintel.settings import Settings
from sinks.clickhouse import ClickHouseStore
from streams.detection import PartitionedDetector
from streams.handlers import FlushFailed, StreamHandlers
from streams.metrics import WorkerMetrics
from streams.pipeline import TICKETS, BatchWriter
from tests.test_stream_stages import first_events, messages


class Sent:
    """A Kafka producer stand-in: records what was sent, delivered at once (or, with ``hold``, when
    :meth:`deliver` says so)."""

    def __init__(self) -> None:
        self.records: list[tuple[str, bytes]] = []
        self.hold = False
        self.waiting: list[asyncio.Future[None]] = []

    async def __call__(self, topic: str, key: bytes, value: bytes, headers: Any) -> asyncio.Future[None]:
        self.records.append((topic, value))
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        if self.hold:
            self.waiting.append(done)
        else:
            done.set_result(None)
        return done

    def deliver(self, error: Exception | None = None) -> None:
        for done in self.waiting:
            if error is None:
                done.set_result(None)
            else:
                done.set_exception(error)
        self.waiting.clear()


def make(store: ClickHouseStore, **settings: Any) -> tuple[StreamHandlers, Sent, PartitionedDetector]:
    writer = BatchWriter(store, WorkerMetrics())
    stage = PartitionedDetector("recurring", RecurringIncidentDetector, RecurringIncidentDetector.from_snapshot,
                                writer)
    sent = Sent()
    handlers = StreamHandlers(Settings(topic_prefix="t.", **settings), writer, [stage], sent)
    return handlers, sent, stage


def counts(store: ClickHouseStore) -> dict[str, int]:
    return store.table_counts(["ticket_events", "problems", "detector_state"])


def an_anomaly() -> Any:
    verdict = AnomalyVerdict(9.0, 2.0, (0.0, 4.0), 4.5, True, "spike")
    return anomaly_row("Payments", "tickets_opened", datetime(2016, 3, 1, tzinfo=UTC), verdict, "spike", "seasonal")


def stored_position(store: ClickHouseStore) -> int | None:
    rows = store.query("SELECT positions FROM {db}.detector_state FINAL WHERE detector = 'recurring'")
    return int(rows[0][0]["t.tickets"]) if rows else None


def test_a_batch_is_acked_only_by_the_flush_that_stores_it(chdb_store: ClickHouseStore) -> None:
    events = first_events(3000)
    acked: list[int] = []

    async def run() -> None:
        handlers, _, stage = make(chdb_store, batch_size=100_000, flush_seconds=3600)
        for i in range(0, 3000, 500):
            async def ack(i: int = i) -> None:
                acked.append(i)
            await handlers.events(TICKETS, messages(events[i:i + 500], i), ack)
        # learned (the detector is at offset 3000), nothing stored or acked yet
        assert stage._partitions[0].positions == {"t.tickets": 3000}
        assert acked == [] and counts(chdb_store) == {"ticket_events": 0, "problems": 0, "detector_state": 0}
        await handlers.flush()
        assert acked == [0, 500, 1000, 1500, 2000, 2500]
        assert counts(chdb_store) == {"ticket_events": 3000, "problems": 0, "detector_state": 1}
        assert stored_position(chdb_store) == 3000
        await handlers.flush()  # nothing pending: nothing written, nothing acked twice
        assert acked == [0, 500, 1000, 1500, 2000, 2500]

    asyncio.run(run())


def test_a_batch_publishes_each_problem_once_and_stores_every_versions_links(chdb_store: ClickHouseStore) -> None:
    """The recurring detector numbers a version per event; a batch sends each problem's newest one
    to the (compacted) topic, and the flush stores the newest row and the links of every version."""
    handlers, sent, _ = make(chdb_store)
    t = datetime(2016, 3, 1, tzinfo=UTC)
    a1 = ProblemRecord(problem_id="PRB-a", kind="recurring", version=1, status="candidate", title="a",
                       first_seen=t, last_seen=t, raised_at=t, updated_at=t, source="test",
                       incident_ids=["INC1", "INC2", "INC3"], incident_count=3)
    # version 2 lists the newest two only (a record lists the newest max_linked_ids incidents)
    a2 = msgspec.structs.replace(a1, version=2, incident_ids=["INC3", "INC4"], incident_count=4)
    b1 = msgspec.structs.replace(a1, problem_id="PRB-b", incident_ids=["INC9"], incident_count=1)

    async def ack() -> None:
        pass

    async def run() -> None:
        await handlers.publish([a1, b1, a2])
        await handlers.events(TICKETS, messages(first_events(10), 0), ack)  # a batch to flush with
        await handlers.flush()

    asyncio.run(run())
    ours = ("PRB-a", "PRB-b")
    published = [decode_problem(v) for _, v in sent.records]
    assert [(r.problem_id, r.version) for r in published if r.problem_id in ours] == [("PRB-a", 2), ("PRB-b", 1)]
    assert chdb_store.query("SELECT problem_id, version FROM {db}.problems FINAL "
                            "WHERE problem_id IN {ids:Array(String)} ORDER BY problem_id",
                            {"ids": list(ours)}) == [("PRB-a", 2), ("PRB-b", 1)]
    links = chdb_store.query("SELECT ticket_id FROM {db}.problem_incidents FINAL WHERE linked "
                             "AND problem_id IN {ids:Array(String)} ORDER BY ticket_id", {"ids": list(ours)})
    assert [r[0] for r in links] == ["INC1", "INC2", "INC3", "INC4", "INC9"]


def test_a_flush_commits_right_after_its_acks(chdb_store: ClickHouseStore) -> None:
    """The offsets a flush acked are committed by that flush, not at the consumer's next commit tick."""
    events = first_events(1000)
    log: list[str] = []

    async def commit() -> bool:
        log.append(f"commit after {counts(chdb_store)['ticket_events']} rows")
        return True

    async def run() -> None:
        handlers, _, _ = make(chdb_store, batch_size=100_000, flush_seconds=3600)
        handlers.commit = commit
        for i in range(0, 1000, 500):
            async def ack(i: int = i) -> None:
                log.append(f"ack {i}")
            await handlers.events(TICKETS, messages(events[i:i + 500], i), ack)
        assert log == []
        await handlers.flush()
        assert log == ["ack 0", "ack 500", "commit after 1000 rows"]
        await handlers.flush()  # nothing acked: nothing to commit
        assert log == ["ack 0", "ack 500", "commit after 1000 rows"]

    asyncio.run(run())


def test_the_stored_checkpoint_covers_exactly_the_flushed_batches(chdb_store: ClickHouseStore) -> None:
    """A batch learned while a flush is writing is not in that flush's checkpoint: a crash then
    replays it into the detector instead of skipping it (its rows are not stored yet)."""
    events = first_events(2000)
    acked: list[int] = []

    async def ack_of(i: int) -> Any:
        async def ack() -> None:
            acked.append(i)
        return ack

    async def run() -> None:
        handlers, _, _ = make(chdb_store, batch_size=1000, flush_seconds=3600)
        await handlers.events(TICKETS, messages(events[:1000], 0), await ack_of(0))  # due: a flush starts
        assert handlers._flushing is not None
        await handlers.events(TICKETS, messages(events[1000:1500], 1000), await ack_of(1000))  # learned meanwhile
        await handlers._flushing
        assert acked == [0]
        assert stored_position(chdb_store) == 1000  # not 1500: that batch's rows wait for the next flush
        assert chdb_store.table_counts(["ticket_events"]) == {"ticket_events": 1000}
        await handlers.flush()
        assert acked == [0, 1000] and stored_position(chdb_store) == 1500

    asyncio.run(run())


def test_a_quiet_stream_is_flushed_by_the_timer_check(chdb_store: ClickHouseStore) -> None:
    events = first_events(10)
    acked: list[str] = []

    async def run() -> None:
        handlers, _, _ = make(chdb_store, batch_size=100_000, flush_seconds=0.2)

        async def ack() -> None:
            acked.append("x")

        await handlers.events(TICKETS, messages(events, 0), ack)
        await handlers.flush_if_due()
        assert acked == []  # not due yet
        await asyncio.sleep(0.25)
        await handlers.flush_if_due()
        await handlers.flush()  # waits for the flush the check started
        assert acked == ["x"] and chdb_store.table_counts(["ticket_events"]) == {"ticket_events": 10}

    asyncio.run(run())


def test_a_stopping_worker_flushes_what_is_pending_and_every_batch_still_handed_over(
        chdb_store: ClickHouseStore) -> None:
    """``finish`` (the consumer has stopped reading): nothing waits for size or time any more."""
    events = first_events(30)
    acked: list[int] = []

    async def run() -> None:
        handlers, _, _ = make(chdb_store, batch_size=100_000, flush_seconds=3600)

        async def ack() -> None:
            acked.append(len(acked))

        await handlers.events(TICKETS, messages(events[:10], 0), ack)
        await handlers.finish()
        assert acked == [0] and chdb_store.table_counts(["ticket_events"]) == {"ticket_events": 10}
        # a batch the agent still held when the consumer stopped: flushed as it is handed over
        await handlers.events(TICKETS, messages(events[10:], 10), ack)
        assert handlers._flushing is not None, "the batch handed over after finish() did not start a flush"
        await handlers.flush()
        assert acked == [0, 1] and chdb_store.table_counts(["ticket_events"]) == {"ticket_events": 30}

    asyncio.run(run())


def test_a_partition_revoked_while_its_high_watermark_is_read_is_not_an_error(tmp_path: Path) -> None:
    """The assignment is the consumer thread's: between ``assignment()`` and ``highwater(tp)`` a
    rebalance may take the partition away, and aiokafka then fails an assertion. The worker's
    consumer (streams/transport.py) answers "unknown" instead, for every caller."""
    import aiokafka
    from faust.types import TP

    from streams.app import create_app
    from streams.transport import RunDeliveryConsumer

    app = create_app(Settings(topic_prefix="t.", data_dir=tmp_path))

    async def run() -> None:
        inner = aiokafka.AIOKafkaConsumer(bootstrap_servers="127.0.0.1:1")  # never started: nothing assigned
        with pytest.raises(AssertionError):
            inner.highwater(aiokafka.TopicPartition("t.tickets", 0))
        consumer = app.consumer
        assert isinstance(consumer, RunDeliveryConsumer)
        consumer._thread._consumer = inner  # what the consumer thread reads through, once started
        assert consumer.highwater(TP("t.tickets", 0)) is None
        await inner.stop()

    try:
        asyncio.run(run())
    finally:
        app.opsintel.writer.close()  # type: ignore[attr-defined]


def test_after_a_failed_flush_nothing_is_checkpointed_past_it(chdb_store: ClickHouseStore) -> None:
    """A flush that fails for good (not a retryable outage) leaves its batches unacked; a later
    checkpoint would cover them and a restart would skip their learning, so flushing stops."""
    events = first_events(2000)
    acked: list[int] = []

    async def run() -> None:
        handlers, _, _ = make(chdb_store, batch_size=500, flush_seconds=3600)

        async def refuse(*args: Any) -> Any:
            raise RuntimeError("the store refused our own rows")

        handlers.writer.write = refuse  # type: ignore[method-assign]

        async def ack() -> None:
            acked.append(1)

        await handlers.events(TICKETS, messages(events[:500], 0), ack)  # due: the flush starts and fails
        # the next batch waits behind the running flush (BACKLOG_BATCHES x batch_size events may)
        await handlers.events(TICKETS, messages(events[500:1000], 500), ack)
        with pytest.raises(RuntimeError, match="refused our own rows"):  # the backlog is full: the failure shows
            await handlers.events(TICKETS, messages(events[1000:1500], 1000), ack)
        with pytest.raises(FlushFailed):
            await handlers.events(TICKETS, messages(events[1500:], 1500), ack)
        assert acked == [] and stored_position(chdb_store) is None

    asyncio.run(run())


def test_detection_does_not_wait_for_the_broker_the_flush_does(chdb_store: ClickHouseStore) -> None:
    """What a batch published (problem records, anomalies) must be in Kafka before the flush stores
    and acks the batch; the next batches are detected meanwhile. A delivery that fails fails the
    flush: nothing stored, nothing acked, no later flush (a restart replays and re-publishes)."""
    events = first_events(1000)
    acked: list[int] = []

    async def run() -> None:
        handlers, sent, stage = make(chdb_store, batch_size=100_000, flush_seconds=3600)
        sent.hold = True

        async def ack(i: int) -> None:
            acked.append(i)

        await handlers.events(TICKETS, messages(events[:500], 0), lambda: ack(0))
        await handlers.publish_anomalies([an_anomaly()])  # returns before the broker confirms
        flushing = asyncio.ensure_future(handlers.flush())
        await asyncio.sleep(0.2)
        assert not flushing.done() and acked == [] and counts(chdb_store)["ticket_events"] == 0
        await handlers.events(TICKETS, messages(events[500:], 500), lambda: ack(1))  # detected meanwhile
        assert stage._partitions[0].positions == {"t.tickets": 1000}
        sent.deliver()
        await flushing
        assert acked == [0] and counts(chdb_store)["ticket_events"] == 500
        assert chdb_store.table_counts(["anomalies"]) == {"anomalies": 1}

        await handlers.publish_anomalies([an_anomaly()])
        sent.deliver(RuntimeError("broker gone"))
        with pytest.raises(RuntimeError, match="broker gone"):
            await handlers.flush()
        with pytest.raises(FlushFailed):
            await handlers.flush()
        assert acked == [0] and counts(chdb_store)["ticket_events"] == 500

    asyncio.run(run())


def test_batches_pile_up_behind_a_running_flush_which_starts_the_next(chdb_store: ClickHouseStore) -> None:
    """While a flush runs, due batches do not hold detection back until BACKLOG_BATCHES x batch_size
    events wait; the running flush starts the next one as it ends (no timer needed)."""
    events = first_events(2000)
    acked: list[int] = []

    async def run() -> None:
        handlers, sent, _ = make(chdb_store, batch_size=500, flush_seconds=3600)
        sent.hold = True  # the first flush waits for the broker to confirm an anomaly
        await handlers.publish_anomalies([an_anomaly()])

        def ack(i: int) -> Callable[[], Awaitable[None]]:
            async def done() -> None:
                acked.append(i)
            return done

        await handlers.events(TICKETS, messages(events[:500], 0), ack(0))  # due: the flush starts
        await asyncio.sleep(0.05)
        second = asyncio.ensure_future(handlers.events(TICKETS, messages(events[500:1000], 500), ack(1)))
        await asyncio.sleep(0.2)
        assert second.done() and acked == []  # due too, but it waits behind the running flush
        third = asyncio.ensure_future(handlers.events(TICKETS, messages(events[1000:1500], 1000), ack(2)))
        await asyncio.sleep(0.2)
        assert not third.done()  # BACKLOG_BATCHES x batch_size pending: detection waits for the flush
        sent.deliver()
        await third
        for _ in range(100):  # the next flush was started by the first as it ended
            if acked == [0, 1, 2]:
                break
            await asyncio.sleep(0.05)
        assert acked == [0, 1, 2] and counts(chdb_store)["ticket_events"] == 1500

    asyncio.run(run())


def test_the_end_of_a_backlog_is_flushed_at_once_a_live_stream_by_time(chdb_store: ClickHouseStore) -> None:
    """Once a backlog (flushed by size) has been read to its end, its remainder is stored at once,
    not flush_seconds later; a stream that is not behind waits for flush_seconds as before."""
    events = first_events(1100)
    acked: list[int] = []

    def ack(i: int) -> Callable[[], Awaitable[None]]:
        async def done() -> None:
            acked.append(i)
        return done

    async def settle(want: list[int], tries: int = 100) -> None:
        for _ in range(tries):
            if acked == want:
                return
            await asyncio.sleep(0.05)

    async def run() -> None:
        handlers, _, _ = make(chdb_store, batch_size=500, flush_seconds=3600)
        await handlers.events(TICKETS, messages(events[:100], 0), ack(0), caught_up=True)  # live
        await settle([0], tries=6)
        assert acked == []  # caught up, but never behind: flushed by time only
        await handlers.events(TICKETS, messages(events[100:700], 100), ack(1))  # a backlog: due by size
        await settle([0, 1])
        assert acked == [0, 1]
        await handlers.events(TICKETS, messages(events[700:1000], 700), ack(2), caught_up=True)  # its end
        await settle([0, 1, 2])
        assert acked == [0, 1, 2]
        await handlers.events(TICKETS, messages(events[1000:], 1000), ack(3), caught_up=True)  # live again
        await settle([0, 1, 2, 3], tries=6)
        assert acked == [0, 1, 2]

    asyncio.run(run())
