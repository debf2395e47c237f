"""The store's inserts write exactly what clickhouse-connect's own value conversion writes (issue 8).

The store sends ``DateTime64(3)`` columns as integer milliseconds and takes the column types from
the schema (``ClickHouseStore._insert``). Before issue 8 it handed clickhouse-connect the
datetimes and let it ``DESCRIBE`` each table; :class:`ReferenceStore` still does that. Both write
the same rows into two databases of one embedded store, and every table is read back and compared:
time zones, sub-millisecond and pre-1970 times, the epoch itself, NULLs, empty and non-ASCII
strings.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta, timezone
from typing import Any
from zoneinfo import ZoneInfo

import msgspec
import pytest

from detectors._seasonal import AnomalyVerdict
from detectors._trend_series import anomaly_row
from opsintel.catalog import Catalog
from opsintel.events import ChangeEvent, MonitoringEvent, TicketEvent
from opsintel.impact import ImpactModel
from opsintel.problems import ProblemRecord
from sinks.clickhouse import TABLES, ClickHouseStore, Table, quote_identifier
from sinks.deadletter import DeadLetter
from streams.adapters import read_events
from streams.adapters._base import Rejected
from tests.support import TEST_DATA

INDIA = timezone(timedelta(hours=5, minutes=30))  # a non-zero offset (ticket events are normalised to UTC)
LONDON = ZoneInfo("Europe/London")  # offset 0 in winter: an aware non-UTC zone kept as it is
NEW_YORK = ZoneInfo("America/New_York")
T0 = datetime(2016, 3, 1, 9, 0, 0, 123_999, tzinfo=UTC)  # sub-millisecond: floored to .123


class ReferenceStore(ClickHouseStore):
    """The store's insert as it was before issue 8: datetimes as they are, column types from the server."""

    def _insert(self, table: Table, columns: list[list[Any]]) -> None:
        self.client().insert(table.name, columns, column_names=table.column_names, database=self.database,
                             column_oriented=True)


@pytest.fixture
def stores(chdb_store: ClickHouseStore) -> Iterator[tuple[ClickHouseStore, ClickHouseStore]]:
    reference = ReferenceStore(chdb_store.dsn, "opsintel_reference")
    reference._client = chdb_store.client()  # chDB: one engine per process, so one client for both
    reference.migrate()
    yield chdb_store, reference
    reference._client = None  # closed with chdb_store


def _contents(store: ClickHouseStore, table: str) -> list[str]:
    rows = store.query(f"SELECT * FROM {{db}}.{quote_identifier(table)} FINAL")  # our own table names
    return sorted(repr(r) for r in rows)


def assert_same_tables(new: ClickHouseStore, old: ClickHouseStore) -> None:
    for table in TABLES:
        assert _contents(new, table.name) == _contents(old, table.name), table.name


def ticket(ticket_id: str, version: int, **kw: Any) -> TicketEvent:
    fields: dict[str, Any] = {"event_time": T0 + timedelta(minutes=version), "state": "Active"} | kw
    return TicketEvent(event_id=f"test:{ticket_id}:{version}", source="test", ticket_id=ticket_id,
                       kind="created" if version == 0 else "state_changed", version=version, **fields)


def edge_events() -> list[TicketEvent]:
    return [
        ticket("INC1", 0, opened_at=T0, service="Zahlungsverkehr – Über", description="日本語の説明 🚨",
               caller="", priority="1 - Critical", active=True, reassignment_count=0, handle_time_hours=1.25),
        ticket("INC1", 1, event_time=datetime(2016, 3, 1, 14, 30, 0, 999_999, tzinfo=INDIA), opened_at=T0,
               resolved_at=datetime(2016, 3, 1, 9, 0, 0, 500, tzinfo=UTC), knowledge_used=False, sla_made=None),
        ticket("INC2", 0, event_time=datetime(2016, 1, 15, 12, 0, 0, 1_000, tzinfo=LONDON),
               opened_at=datetime(1970, 1, 1, tzinfo=UTC),  # the epoch: 0 ms, which is not NULL
               closed_at=datetime(2099, 12, 31, 23, 59, 59, 999_999, tzinfo=UTC), state="", service=""),
        ticket("INC3", 4, opened_at=None, reopened_at=datetime(2016, 7, 1, 8, 0, tzinfo=NEW_YORK),
               assignment_group="Équipe ñ", reopen_count=None),
    ]


def test_edge_values_are_stored_as_the_clients_own_conversion_stores_them(
        stores: tuple[ClickHouseStore, ClickHouseStore]) -> None:
    new, old = stores
    events = edge_events()
    impact = ImpactModel(Catalog.empty()).rows_for(events)
    assert impact
    # impact rows carry whatever datetimes they are given: other zones, naive (local time), pre-1970
    impact += [
        msgspec.structs.replace(impact[0], ticket_id="INC-NY", as_of=datetime(2016, 11, 6, 1, 30, tzinfo=NEW_YORK),
                                opened_at=datetime(2016, 11, 6, 1, 30, fold=1, tzinfo=NEW_YORK),
                                first_response_at=None, resolved_at=None, service_name="Ünïcödé ✓", currency=""),
        msgspec.structs.replace(impact[0], ticket_id="INC-NAIVE", as_of=datetime(2016, 3, 1, 9, 0, 0, 7_654),
                                opened_at=datetime(1969, 12, 31, 23, 59, 59, 999_500, tzinfo=UTC),
                                first_response_at=datetime(1900, 1, 1, tzinfo=UTC)),
    ]
    verdict = AnomalyVerdict(3.0, 1.0, (0.5, 1.5), 4.2, True, "spike")
    anomalies = [anomaly_row("Ωmega", "tickets", datetime(2016, 3, 1, 10, tzinfo=INDIA), verdict, "spike", "seasonal"),
                 anomaly_row("", "p1", datetime(2016, 3, 1, tzinfo=UTC), verdict, "drop", "seasonal")]
    alert = MonitoringEvent(event_id="am:f1:firing", source="alertmanager", event_time=T0, status="firing",
                            fingerprint="f1", name="ディスク", starts_at=T0, ends_at=None, labels={"job": "nöde"})
    change = ChangeEvent(event_id="c:C1:CI1", source="bpic2014", event_time=T0, change_id="C1", ci="CI1",
                         planned_start=datetime(2016, 3, 1, 8, 0, 0, 250, tzinfo=LONDON), emergency=None)
    letter = DeadLetter.for_record(b"\x00\xff" + "kaputt ✗".encode(), reason="bad_json: ü", origin="x/0/1",
                                   origin_topic="x", received_at=T0)
    problem = ProblemRecord(problem_id="PRB-1", kind="recurring", version=1, status="candidate", title="Über ✓",
                            first_seen=T0, last_seen=datetime(2016, 3, 2, tzinfo=LONDON), raised_at=T0,
                            updated_at=T0, source="test", incident_ids=["INC1", "INC2"], incident_count=2)
    for store in (new, old):
        store.insert_ticket_events(events, [0, 1, 2, 3], [10, 11, 12, 13])
        store.insert_incident_impact(impact)
        store.insert_anomalies(anomalies)
        store.insert_monitoring_events([alert], [0], [1])
        store.insert_change_events([change], [0], [2])
        store.insert_dead_letters([letter])
        store.insert_problems([problem])
    assert_same_tables(new, old)
    # and what that is, in milliseconds since the epoch
    ms = dict(new.query("SELECT ticket_id, toUnixTimestamp64Milli(opened_at) FROM {db}.incident_impact FINAL"))
    assert ms["INC-NAIVE"] == -1  # 1969-12-31 23:59:59.9995 floored
    assert ms["INC-NY"] == int(datetime(2016, 11, 6, 6, 30, tzinfo=UTC).timestamp() * 1000)  # EST after the fold
    times = new.query("SELECT event_id, toUnixTimestamp64Milli(event_time), toUnixTimestamp64Milli(opened_at) "
                      "FROM {db}.ticket_events FINAL ORDER BY event_id")
    assert [t[1:] for t in times] == [
        (1456822800123, 1456822800123),  # 09:00:00.123999 UTC
        (1456822800999, 1456822800123),  # 14:30:00.999999 +05:30 = 09:00:00.999 UTC
        (1452859200001, 0),  # 12:00:00.001 London winter time; the epoch
        (1456823040123, None),
    ]


def test_the_sample_log_is_stored_as_before(stores: tuple[ClickHouseStore, ClickHouseStore]) -> None:
    new, old = stores
    events = [e for e in read_events("servicenow-csv", TEST_DATA / "servicenow_incident_event_log.csv.gz")
              if not isinstance(e, Rejected)]
    events.sort(key=lambda e: e.event_time)
    model = ImpactModel(Catalog.empty())
    batches = [events[i : i + 100] for i in range(0, len(events), 100)]
    impact = [model.rows_for(b) for b in batches]
    assert len(events) > 300 and sum(map(len, impact)) > 100
    for store in (new, old):
        offset = 0
        for batch, rows in zip(batches, impact, strict=True):
            store.insert_ticket_events(batch, [0] * len(batch), range(offset, offset + len(batch)))
            store.insert_incident_impact(rows)
            offset += len(batch)
    assert new.table_counts(["ticket_events"]) == {"ticket_events": len(events)}
    assert_same_tables(new, old)


def test_rows_repeated_within_a_batch_read_back_as_before(stores: tuple[ClickHouseStore, ClickHouseStore]) -> None:
    """The store inserts with ``optimize_on_insert = 0``: a key repeated inside one batch is folded
    by FINAL and the merges, not before the write. What FINAL reads is the same."""
    new, old = stores
    events = edge_events()
    replayed = [*events, events[0], events[1]]  # a replay overlapping the batch it is in
    impact = ImpactModel(Catalog.empty()).rows_for(events)
    tie, newer = impact[0], impact[1]
    twice = [*impact, msgspec.structs.replace(tie, state="Later, same version"),
             msgspec.structs.replace(newer, version=newer.version + 2, state="Newer"),
             msgspec.structs.replace(newer, version=newer.version + 1, state="Older")]
    for store in (new, old):
        store.insert_ticket_events(replayed, [0] * len(replayed), range(len(replayed)))
        store.insert_incident_impact(twice)
    assert new.table_counts(["ticket_events"]) == {"ticket_events": len(events)}
    assert_same_tables(new, old)
    states = dict(new.query("SELECT ticket_id, state FROM {db}.incident_impact FINAL"))
    assert states[newer.ticket_id] == "Newer"
    assert states[tie.ticket_id] == "Later, same version"  # a tie: the last row written wins, as before


HARD_STRINGS = ['quote " and \\ backslash', "tab\tnew\nline\r\x00nul\x1f", "\u2028\u2029 separators",
                "{\"json\": [1, 2]}", "x" * 100_000, "emoji 🚨 and 𝔘𝔫𝔦", "'single' `back`"]
HARD_FLOATS = [0.1 + 0.2, 1e-300, 5e-324, 1.7976931348623157e308, 0.0, 2.0 / 3.0, 123456789.12345679,
               9007199254740993.0, 4.35e-5, 9999999.999999998]
HOURS = [f for f in HARD_FLOATS if f < 1e7]  # what an event's handle_time_hours may hold


def test_hard_strings_numbers_and_maps_are_stored_as_before(stores: tuple[ClickHouseStore, ClickHouseStore]) -> None:
    """Escapes, control characters, long strings, floats to the last bit, the largest version,
    label maps with odd keys: as the client's own conversion stores them."""
    new, old = stores
    events = [ticket(f"INC{i}", i, description=s, caller=s, service=s[:40], handle_time_hours=f,
                     reassignment_count=2**32 - 1, knowledge_article=s[::-1])
              for i, (s, f) in enumerate(zip(HARD_STRINGS * 2, HOURS, strict=False))]
    events.append(TicketEvent(event_id="test:INC-MAX", source="test", ticket_id="INC-MAX", kind="updated",
                              version=2**64 - 1, event_time=T0))
    impact = ImpactModel(Catalog.empty()).rows_for(events)
    impact = [msgspec.structs.replace(r, users_affected=f, productivity_loss=-f, interruption_min=f / 3,
                                      customer_impact=-0.0)
              for r, f in zip(impact, HARD_FLOATS * 2, strict=False)]
    alerts = [MonitoringEvent(event_id=f"am:{i}", source="alertmanager", event_time=T0, status="firing",
                              fingerprint=f"f{i}", name=s[:50], starts_at=T0, summary=s,
                              labels={s[:30]: s[:30], "": "", "job": "x\ny"}, annotations={})
              for i, s in enumerate(HARD_STRINGS)]
    for store in (new, old):
        store.insert_ticket_events(events, [1] * len(events), range(len(events)))
        store.insert_incident_impact(impact)
        store.insert_monitoring_events(alerts, [65535] * len(alerts), [2**63 + i for i in range(len(alerts))])
    assert new.table_counts(["ticket_events", "monitoring_events"]) == {"ticket_events": len(events),
                                                                        "monitoring_events": len(alerts)}
    assert_same_tables(new, old)
    stored = dict(new.query("SELECT ticket_id, handle_time_hours FROM {db}.ticket_events FINAL"))
    assert [stored[f"INC{i}"] for i in range(len(HOURS))] == HOURS  # to the last bit
