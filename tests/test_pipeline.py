"""The batch path (decode → ClickHouse → dead letters) without Kafka: real chDB, real decoding."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Any

from opsintel.events import TicketEvent, encode
from sinks.clickhouse import ClickHouseStore
from sinks.exceptions import SinkRejected, SinkUnavailable
from streams.metrics import WorkerMetrics
from streams.pipeline import TICKETS, BatchWriter, RawMessage


def msg(offset: int, value: bytes | None, partition: int = 0) -> RawMessage:
    return RawMessage("opsintel.tickets", partition, offset, value, {})


def good(i: int) -> bytes:
    return encode(TicketEvent(event_id=f"t:{i}", source="test", ticket_id=f"INC{i}", kind="created", version=0,
                              state="New", event_time=datetime(2016, 3, 1, tzinfo=UTC)))


def run(coro: Any) -> Any:
    return asyncio.run(coro)


def test_bad_messages_become_dead_letters_and_good_ones_are_written(chdb_store: ClickHouseStore) -> None:
    writer = BatchWriter(chdb_store, WorkerMetrics())
    batch = [
        msg(0, good(0)),
        msg(1, b'{"type": "ticket", "event_id": '),  # truncated JSON
        msg(2, good(2)),
        msg(3, good(3).replace(b"2016-03-01", b"1800-03-01")),  # out-of-range timestamp
        msg(4, None),  # tombstone
        msg(5, good(5)),
    ]
    done = run(writer.process(TICKETS, batch))
    dead = done.dead_letters
    assert [m.offset for m in done.messages] == [0, 2, 5]
    assert [(d.origin, d.reason_code) for d in dead] == [
        ("opsintel.tickets/0/1", "bad_json"), ("opsintel.tickets/0/3", "validation"),
        ("opsintel.tickets/0/4", "empty"),
    ]
    assert dead[0].payload == b'{"type": "ticket", "event_id": '
    assert chdb_store.table_counts(["ticket_events"]) == {"ticket_events": 3}
    m = writer.metrics
    assert m.consumed.labels("opsintel.tickets")._value.get() == 6
    assert m.written.labels("ticket_events")._value.get() == 3


class FlakyStore:
    """Wraps the real store; its first ``failures`` ticket inserts fail as if ClickHouse were down."""

    def __init__(self, store: ClickHouseStore, failures: int) -> None:
        self.store, self.failures = store, failures

    def insert_ticket_events(self, *args: Any) -> int:
        if self.failures:
            self.failures -= 1
            raise SinkUnavailable("connection refused")
        return self.store.insert_ticket_events(*args)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.store, name)


def test_unavailable_store_is_retried_until_it_comes_back(chdb_store: ClickHouseStore) -> None:
    flaky = FlakyStore(chdb_store, failures=3)
    writer = BatchWriter(flaky, WorkerMetrics(), max_backoff=0.05)  # type: ignore[arg-type]
    kind = TICKETS.__class__(TICKETS.table, TICKETS.decode, lambda s, *a: s.insert_ticket_events(*a))
    dead = run(writer.process(kind, [msg(i, good(i)) for i in range(4)])).dead_letters
    assert dead == []
    assert flaky.failures == 0
    assert chdb_store.table_counts(["ticket_events"]) == {"ticket_events": 4}
    assert writer.metrics.write_failures.labels("ticket_events")._value.get() == 3


class PoisonStore(FlakyStore):
    """Refuses any batch containing ticket INC13, as a server would refuse an unstorable value."""

    def insert_ticket_events(self, events: Any, *args: Any) -> int:
        if any(e.ticket_id == "INC13" for e in events):
            raise SinkRejected("Cannot parse value")
        return self.store.insert_ticket_events(events, *args)


def test_one_poison_record_is_isolated_and_the_rest_written(chdb_store: ClickHouseStore) -> None:
    store = PoisonStore(chdb_store, failures=0)
    writer = BatchWriter(store, WorkerMetrics())  # type: ignore[arg-type]
    kind = TICKETS.__class__(TICKETS.table, TICKETS.decode, lambda s, *a: s.insert_ticket_events(*a))
    done = run(writer.process(kind, [msg(i, good(i)) for i in range(20)]))
    dead = done.dead_letters
    assert len(done.events) == 19 and 13 not in [m.offset for m in done.messages]
    assert [(d.origin, d.reason_code) for d in dead] == [("opsintel.tickets/0/13", "sink_rejected")]
    assert chdb_store.table_counts(["ticket_events"]) == {"ticket_events": 19}
