"""The stateful stream stages survive a restart: real chDB store, real models, no Kafka needed."""

from __future__ import annotations

import asyncio
from typing import Any

from opsintel.catalog import Catalog
from opsintel.events import TicketEvent, encode
from opsintel.impact import ImpactModel, fold, impact_row
from sinks.clickhouse import TABLES_BY_NAME, ClickHouseStore
from streams.adapters import read_events
from streams.impact_stage import ImpactStage
from streams.metrics import WorkerMetrics
from streams.pipeline import TICKETS, BatchWriter, RawMessage
from tests.support import ROOT

SLICE = ROOT / "deploy" / "demo-data" / "servicenow_slice.csv.gz"


def first_events(n: int) -> list[TicketEvent]:
    out = []
    for ev in read_events("servicenow-csv", SLICE):
        assert isinstance(ev, TicketEvent)
        out.append(ev)
        if len(out) == n:
            break
    return out


def messages(events: list[TicketEvent], start: int) -> list[RawMessage]:
    return [RawMessage("t.tickets", 0, start + i, encode(e), {}) for i, e in enumerate(events)]


def impact_rows(store: ClickHouseStore) -> dict[tuple[str, str], dict[str, Any]]:
    names = TABLES_BY_NAME["incident_impact"].column_names
    rows = store.query(f"SELECT {', '.join(names)} FROM {{db}}.incident_impact FINAL")
    return {(r[names.index("source")], r[names.index("ticket_id")]): dict(zip(names, r, strict=True)) for r in rows}


def test_impact_after_a_restart_equals_an_undisturbed_run(chdb_store: ClickHouseStore) -> None:
    """Half the log, a 'restart' (new, empty model), the other half: same rows as one fold."""
    events = first_events(3000)
    full = fold(events)
    # cut inside a ticket whose later events alone would give a different row (its response came earlier)
    cut = next(
        i for i in range(1, len(events))
        if events[i].ticket_id == events[i - 1].ticket_id
        and impact_row(fold(events[i:])[(events[i].source, events[i].ticket_id)], Catalog.empty())
        != impact_row(full[(events[i].source, events[i].ticket_id)], Catalog.empty())
    )

    async def run() -> None:
        writer = BatchWriter(chdb_store, WorkerMetrics())
        for part, start in ((events[:cut], 0), (events[cut:], cut)):
            stage = ImpactStage(ImpactModel(Catalog.empty()), writer)  # a fresh worker each time
            done = await writer.process(TICKETS, messages(part, start))
            await stage.process(done.events)

    asyncio.run(run())
    reference = ClickHouseStore(chdb_store.dsn, "reference")  # one chDB engine per process: another database
    try:
        reference.migrate()
        reference.insert_incident_impact([impact_row(s, Catalog.empty()) for s in full.values()])
        expected = impact_rows(reference)
    finally:
        reference.close()
    got = impact_rows(chdb_store)
    assert set(got) == set(expected)
    for key in expected:
        assert got[key] == expected[key], key
