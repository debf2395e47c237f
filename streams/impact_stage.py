"""Business impact in the stream: every ticket batch updates its incidents' impact rows.

The impact model folds a ticket's lifecycle events into its state. The worker keeps the states of
tickets in flight in memory; a ticket it has not seen since it started (a restart, a rebalance, or
an eviction) is first rebuilt from its earlier events in ClickHouse's ``ticket_events``, which
hold every event the worker ever committed. So a restart never writes a partial row over a
complete one, and re-applying an event changes nothing (the fold is idempotent).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import msgspec

from opsintel.events import TicketEvent
from opsintel.impact import ImpactModel
from sinks.clickhouse import ClickHouseStore
from sinks.clickhouse.schema import TICKET_COLUMNS
from streams.pipeline import BatchWriter

_COLUMNS = [name for name, _ in TICKET_COLUMNS]


def load_ticket_history(store: ClickHouseStore, keys: set[tuple[str, str]]) -> list[TicketEvent]:
    """Every stored event of the given ``(source, ticket_id)`` tickets, in lifecycle order.

    The filter is a ``PREWHERE``: with ``FINAL`` a ``WHERE`` is applied after the parts are merged
    (ClickHouse does not move it before ``FINAL`` by itself), and on a long history that read cost
    1.6 s and up to 270 MB for 5 tickets among 1.4 M events, against 0.06 s (BENCHMARKS.md, "RSS,
    session 9"). Filtering first is exact here: ``ticket_id`` is in the sorting key, so every copy
    of an event passes or fails it together and ``FINAL`` still folds them."""
    rows = store.query(
        f"SELECT {', '.join(_COLUMNS)} FROM {{db}}.ticket_events FINAL "  # noqa: S608 - our column list
        "PREWHERE ticket_id IN {ids:Array(String)} ORDER BY source, ticket_id, version",
        {"ids": sorted({t for _, t in keys})},
    )
    events = []
    for row in rows:
        data = dict(zip(_COLUMNS, row, strict=True))
        if (data["source"], data["ticket_id"]) in keys:
            events.append(msgspec.convert({k: v for k, v in data.items() if v is not None}, TicketEvent))
    return events


class ImpactStage:
    """Feeds ticket batches to the :class:`~opsintel.impact.ImpactModel` and writes its rows."""

    def __init__(self, model: ImpactModel, writer: BatchWriter) -> None:
        self.model = model
        self.writer = writer

    async def process(self, events: Sequence[Any]) -> int:
        """Update and write the impact rows of the incidents ``events`` touch; returns the rows written."""
        return await self.write(await self.rows(events))

    async def rows(self, events: Sequence[Any]) -> list[Any]:
        """Fold ``events`` into their tickets' states and return those incidents' impact rows.

        Needs only the events *before* these in ClickHouse (a ticket not in memory is rebuilt from
        them; folding an event twice changes nothing), so it may run while these are being written.
        """
        tickets = [e for e in events if isinstance(e, TicketEvent)]
        if not tickets:
            return []
        first_version: dict[tuple[str, str], int] = {}
        for ev in tickets:
            key = (ev.source, ev.ticket_id)
            first_version[key] = min(first_version.get(key, ev.version), ev.version)
        # a ticket whose state is not in memory and whose batch does not start its life: rebuild it
        missing = {k for k, v in first_version.items() if v > 0 and self.model.state(*k) is None}
        if missing:
            # retried like a write: during an outage the flush waits for ClickHouse, it does not fail
            history = await self.writer.retrying("ticket_events", load_ticket_history, self.writer.store, missing)
            self.model.restore(history)
        return self.model.rows_for(tickets)

    async def write(self, rows: Sequence[Any]) -> int:
        if not rows:
            return 0
        await self.writer.retrying("incident_impact", self.writer.store.insert_incident_impact, rows)
        self.writer.metrics.written.labels("incident_impact").inc(len(rows))
        return len(rows)
