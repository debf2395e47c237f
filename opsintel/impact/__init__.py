"""The business-impact model: incidents in, IT metrics and business metrics out.

:class:`IncidentState` folds a ticket's events (idempotent, order-independent);
:func:`impact_row` turns a state into an :class:`ImpactRow` using the service catalogue
(:mod:`opsintel.catalog`); :class:`ImpactModel` keeps the states of the tickets in flight and is
the seam the worker calls for every batch of ticket events::

    model = ImpactModel.from_settings(settings)       # once
    rows = model.rows_for(batch_of_ticket_events)     # per batch: one row per touched incident
    store.insert_incident_impact(rows)                 # ReplacingMergeTree(version): latest wins

Formulas and units: ``docs/impact.md``.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterable
from typing import Any

from opsintel.catalog import Catalog, CatalogFile
from opsintel.events import TicketEvent
from opsintel.impact._metrics import SELF_SERVICE_CHANNELS, ImpactRow, impact_row
from opsintel.impact._state import NEW_STATES, RESOLVED_STATES, IncidentState, Step

__all__ = [
    "NEW_STATES",
    "RESOLVED_STATES",
    "SELF_SERVICE_CHANNELS",
    "ImpactModel",
    "ImpactRow",
    "IncidentState",
    "Step",
    "fold",
    "impact_row",
]


def fold(events: Iterable[TicketEvent]) -> dict[tuple[str, str], IncidentState]:
    """Every ticket's state after ``events`` (offline replays and tests)."""
    states: dict[tuple[str, str], IncidentState] = {}
    for ev in events:
        key = (ev.source, ev.ticket_id)
        prev = states.get(key)
        states[key] = IncidentState.start(ev) if prev is None else prev.apply(ev)
    return states


class ImpactModel:
    """Incident states of the tickets in flight, and their impact rows.

    Parameters
    ----------
    catalog
        A :class:`Catalog`, or a :class:`CatalogFile` that reloads itself when the file changes
        (the next batch uses the new catalogue; rows of untouched incidents keep the old numbers
        until their next event).
    max_tickets
        States kept in memory (least recently touched dropped first; 20,000 is ~50 MB; in the
        time-ordered ServiceNow log 180 of 141,712 events find their ticket dropped). In the
        worker a ticket whose state was dropped, or that started before the worker did, is
        rebuilt from its stored events on its next event (:mod:`streams.impact_stage`), so the
        cap bounds memory without changing any row; on its own the model measures such a ticket
        from the events seen since.

    Examples
    --------
    >>> from datetime import datetime, timezone
    >>> ev = TicketEvent(event_id="e0", source="sn", ticket_id="INC1", kind="created", version=0,
    ...                  event_time=datetime(2016, 3, 1, tzinfo=timezone.utc), priority="3 - Moderate")
    >>> model = ImpactModel(Catalog.empty())
    >>> [r.service for r in model.rows_for([ev, ev])], model.tracked
    (['unmapped'], 1)
    """

    def __init__(self, catalog: Catalog | CatalogFile, *, max_tickets: int = 20_000) -> None:
        self._catalog = catalog
        self.max_tickets = max_tickets
        self._states: OrderedDict[tuple[str, str], IncidentState] = OrderedDict()

    @classmethod
    def from_settings(cls, settings: Any, **kwargs: Any) -> ImpactModel:
        """From ``settings.service_catalog`` (reloaded on change), or no catalogue at all."""
        path = getattr(settings, "service_catalog", None)
        return cls(CatalogFile(path) if path else Catalog.empty(), **kwargs)

    @property
    def catalog(self) -> Catalog:
        c = self._catalog
        return c.current() if isinstance(c, CatalogFile) else c

    @property
    def tracked(self) -> int:
        return len(self._states)

    def state(self, source: str, ticket_id: str) -> IncidentState | None:
        return self._states.get((source, ticket_id))

    def restore(self, events: Iterable[TicketEvent]) -> None:
        """Fold earlier events (e.g. a ticket's history read back after a restart) without
        computing rows; idempotent, so events the model already holds change nothing. Nothing is
        evicted here: a restored history must not push out a ticket the next ``rows_for`` folds
        into (its state would restart mid-life); ``rows_for`` evicts once it has folded."""
        self._fold(events, evict=False)

    def rows_for(self, events: Iterable[TicketEvent]) -> list[ImpactRow]:
        """Fold ``events`` into their tickets' states; one row per ticket the batch touched."""
        touched = self._fold(events)
        catalog = self.catalog
        return [impact_row(self._states[k], catalog) for k in touched if k in self._states]

    def _fold(self, events: Iterable[TicketEvent], evict: bool = True) -> dict[tuple[str, str], None]:
        touched: dict[tuple[str, str], None] = {}
        states, start = self._states, IncidentState.start
        for ev in events:
            key = (ev.source, ev.ticket_id)
            prev = states.pop(key, None)  # and back in at the end: the most recently touched
            states[key] = start(ev) if prev is None else prev.apply(ev)
            touched[key] = None
        while evict and len(states) > self.max_tickets:
            states.popitem(last=False)
        return touched
