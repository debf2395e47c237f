"""Insert batches encoded in a child process (:class:`sinks.clickhouse.native.NativeEncoder`).

The child must change nothing that is stored, keep the store's error classes (a poison batch is
still refused as data, so the writer isolates the record), survive its child dying, and never
outlive the worker.
"""

from __future__ import annotations

import asyncio
import os
import pickle
import signal
import time
from collections.abc import Iterator
from concurrent.futures import Future
from datetime import UTC, datetime
from pathlib import Path
from typing import NoReturn, cast

import pytest

from opsintel.catalog import Catalog
from opsintel.events import ChangeEvent, MonitoringEvent
from opsintel.events import encode as encode_event
from opsintel.impact import ImpactModel
from sinks.clickhouse import TABLES_BY_NAME, ClickHouseStore
from sinks.clickhouse.native import Encoding, NativeEncoder
from sinks.deadletter import DeadLetter
from sinks.exceptions import SinkRejected
from streams.metrics import WorkerMetrics
from streams.pipeline import TICKETS, BatchWriter, RawMessage
from tests.support import WorkerProcess
from tests.test_stream_stages import first_events, messages

T0 = datetime(2016, 3, 1, 9, 0, tzinfo=UTC)


@pytest.fixture
def stores(tmp_path: Path) -> Iterator[tuple[ClickHouseStore, ClickHouseStore]]:
    """The same embedded engine, two databases: one store encodes in process, one in a child."""
    plain = ClickHouseStore(f"chdb://{tmp_path / 'ch'}", "plain")
    child = ClickHouseStore(f"chdb://{tmp_path / 'ch'}", "child", encoder=NativeEncoder())
    for store in (plain, child):
        store.migrate()
    yield plain, child
    child.close()
    plain.close()


def digest(store: ClickHouseStore, table: str) -> tuple[int, int]:
    # every column of every row (FINAL), order-independent (as tests/store_digest.py)
    columns = ", ".join(TABLES_BY_NAME[table].column_names)
    rows = store.query(f"SELECT count(), sum(cityHash64(tuple({columns}))) FROM {{db}}.{table} FINAL")
    return int(rows[0][0]), int(rows[0][1])


def test_what_the_child_encodes_is_stored_exactly_as_the_client_would(
        stores: tuple[ClickHouseStore, ClickHouseStore]) -> None:
    events = first_events(3000)
    impact = ImpactModel(Catalog.empty()).rows_for(events)
    alert = MonitoringEvent(event_id="am:f1:firing", source="alertmanager", event_time=T0, status="firing",
                            fingerprint="f1", name="InstanceDown", starts_at=T0, labels={"job": "node", "é": "ü"})
    change = ChangeEvent(event_id="c:C1:CI1", source="bpic2014", event_time=T0, change_id="C1", ci="CI1",
                         emergency=True)
    for store in stores:
        for start in range(0, len(events), 1000):  # several batches, as the worker sends them
            batch = events[start:start + 1000]
            store.insert_ticket_events(batch, [start % 4] * len(batch), list(range(start, start + len(batch))))
        store.insert_incident_impact(impact)
        store.insert_monitoring_events([alert], [2], [7])
        store.insert_change_events([change], [1], [0])
    plain, child = stores
    assert child.encoder is not None and child.encoder.pids(), "the child store did not start a child"
    for table in ("ticket_events", "incidents", "incident_impact", "monitoring_events", "change_events"):
        assert digest(child, table) == digest(plain, table), table
    assert digest(child, "ticket_events")[0] == 3000
    assert digest(child, "incident_impact")[0] == len({(r.source, r.ticket_id) for r in impact}) > 0


def test_a_batch_the_columns_cannot_hold_is_refused_as_data(stores: tuple[ClickHouseStore, ClickHouseStore]) -> None:
    events = first_events(3)
    for store in stores:  # kafka_partition is a UInt16: the writer must isolate this, not retry it forever
        with pytest.raises(SinkRejected):
            store.insert_ticket_events(events, [70_000, 0, 0], [1, 2, 3])
        assert store.table_counts(["ticket_events"]) == {"ticket_events": 0}


def test_a_dead_child_is_replaced_and_its_batch_still_stored(stores: tuple[ClickHouseStore, ClickHouseStore]) -> None:
    _, child = stores
    assert child.encoder is not None
    events = first_events(200)
    child.insert_ticket_events(events[:100], [0] * 100, list(range(100)))
    running = child.encoder.pids()
    assert len(running) == 1, f"expected one encoder child after the first batch, found {running}"
    first = running[0]
    os.kill(first, signal.SIGKILL)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and _alive(first):
        time.sleep(0.05)
    child.insert_ticket_events(events[100:], [0] * 100, list(range(100, 200)))  # encoded in process
    child.insert_ticket_events(events[:10], [0] * 10, list(range(10)))  # a new child (a replay: folded)
    assert child.table_counts(["ticket_events"]) == {"ticket_events": 200}
    running = child.encoder.pids()
    assert len(running) == 1 and running[0] != first, f"expected a new child instead of {first}, found {running}"


def test_a_hung_child_is_killed_and_its_batch_encoded_in_process(tmp_path: Path) -> None:
    """A child that stops answering (here: stopped with SIGSTOP) holds a flush for
    ``answer_seconds`` at most; then it is killed and replaced, and the batch is stored anyway."""
    store = ClickHouseStore(f"chdb://{tmp_path / 'ch'}", "hung", encoder=NativeEncoder(answer_seconds=2))
    encoder = store.encoder
    assert encoder is not None
    try:
        store.migrate()
        events = first_events(200)
        store.insert_ticket_events(events[:100], [0] * 100, list(range(100)))
        (first,) = encoder.pids()
        os.kill(first, signal.SIGSTOP)
        started = time.monotonic()
        store.insert_ticket_events(events[100:], [0] * 100, list(range(100, 200)))
        waited = time.monotonic() - started
        assert store.table_counts(["ticket_events"]) == {"ticket_events": 200}
        assert 2 <= waited < 30, f"the insert waited {waited:.1f} s for a child given 2 s"
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and _alive(first):
            time.sleep(0.05)
        assert not _alive(first), "the hung child was not killed"
        store.insert_ticket_events(events[:10], [0] * 10, list(range(10)))  # a new child takes the next batch
        (second,) = encoder.pids()
        assert second != first
    finally:
        store.close()


@pytest.mark.parametrize("blocked", ["no child process", "full spool disk"])
def test_a_batch_the_child_cannot_take_is_encoded_in_process(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, blocked: str) -> None:
    """Handing a batch over happens as the worker decodes it: a failure there must not fail the
    batch (the worker would stop), only send it the in-process way."""
    from sinks.clickhouse import native

    def refused(*args: object, **kwargs: object) -> NoReturn:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(*((native, "ProcessPoolExecutor", refused) if blocked == "no child process"
                          else (native.tempfile, "mkstemp", refused)))
    store = ClickHouseStore(f"chdb://{tmp_path / 'ch'}", "blocked", encoder=NativeEncoder())
    try:
        store.migrate()
        assert store.encoder is not None
        assert store.encoder.submit(TABLES_BY_NAME["ticket_events"], first_events(5), ([0] * 5, list(range(5)))) is None
        store.insert_ticket_events(first_events(50), [0] * 50, list(range(50)))
        assert store.table_counts(["ticket_events"]) == {"ticket_events": 50}
    finally:
        store.close()


def test_any_failure_on_the_child_road_falls_back_to_encoding_in_process(
        stores: tuple[ClickHouseStore, ClickHouseStore], monkeypatch: pytest.MonkeyPatch) -> None:
    """A failure of the offload itself (here: the call cannot reach the child) is not a store outage
    to retry forever: the batch is encoded in process instead."""
    _, child = stores
    assert child.encoder is not None
    child.encoder.start()
    pool = child.encoder._pool
    assert pool is not None

    def unreachable(*args: object, **kwargs: object) -> Future[bytes]:
        failed: Future[bytes] = Future()
        failed.set_exception(pickle.PicklingError("cannot send this"))
        return failed

    monkeypatch.setattr(pool, "submit", unreachable)
    child.insert_ticket_events(first_events(50), [0] * 50, list(range(50)))
    assert child.table_counts(["ticket_events"]) == {"ticket_events": 50}


def test_the_worker_s_encoded_batches_store_what_its_rows_would_and_a_poison_record_is_still_isolated(
        stores: tuple[ClickHouseStore, ClickHouseStore]) -> None:
    """Batches encoded as they are decoded (BatchWriter.prepare) go in as one insert per flush;
    when that insert cannot (a value the columns cannot hold), the rows are written the usual way,
    which isolates the record and dead-letters it."""
    plain, child = stores
    events = first_events(2000)
    msgs = messages(events, 0)

    async def run() -> list[DeadLetter]:
        writer = BatchWriter(child, WorkerMetrics())
        batches = [writer.decode(TICKETS, msgs[i:i + 500]) for i in range(0, 2000, 500)]
        encodings = [writer.prepare(TICKETS, b) for b in batches]
        assert all(e is not None for e in encodings)
        dead = await writer.write(TICKETS, [e for b in batches for e in b.events],
                                  [m for b in batches for m in b.messages], cast(list[Encoding], encodings))
        # a poison record: a Kafka partition a UInt16 cannot hold
        bad = [RawMessage("t.tickets", 70_000, 9, encode_event(events[0]), {})]
        done = writer.decode(TICKETS, bad)
        encoding = writer.prepare(TICKETS, done)
        assert encoding is not None
        return dead + await writer.write(TICKETS, done.events, done.messages, [encoding])

    dead = asyncio.run(run())
    assert [d.reason.split(":")[0] for d in dead] == ["sink_rejected"]
    plain.insert_ticket_events(events, [0] * len(events), list(range(len(events))))
    assert digest(child, "ticket_events") == digest(plain, "ticket_events")
    assert digest(child, "incidents") == digest(plain, "incidents")


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def _children(pid: int) -> list[int]:
    with open(f"/proc/{pid}/task/{pid}/children") as f:
        return [int(p) for p in f.read().split()]


@pytest.mark.integration
@pytest.mark.parametrize("how", ["terminate", "kill"])
def test_the_child_never_outlives_the_worker(worker_env: dict[str, str], tmp_path: Path, how: str) -> None:
    """A stopped worker takes its encoder child with it; so does a killed one (the child sees its
    parent's end of the pipe close)."""
    w = WorkerProcess(worker_env, tmp_path / "worker.log").start()
    assert w.proc is not None
    children = _children(w.proc.pid)
    assert children, "the worker started no encoder child"
    if how == "kill":
        w.proc.kill()
        w.proc.wait()
    else:
        w.stop()
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and any(_alive(c) for c in children):
        time.sleep(0.1)
    assert not any(_alive(c) for c in children), f"encoder child outlived the worker ({how})"
