"""The business-impact model: the incident fold (idempotent, order-independent, reopen and
re-prioritise without double counting), the formulas, and the ClickHouse tables and rollups."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta
from typing import Any

import msgspec
import pytest

from opsintel.catalog import Catalog
from opsintel.events import TicketEvent
from opsintel.impact import ImpactModel, ImpactRow, IncidentState, fold, impact_row
from sinks.clickhouse.analytics_schema import INCIDENT_IMPACT_COLUMNS
from tests.support import ROOT

T0 = datetime(2016, 3, 1, 9, 0, tzinfo=UTC)  # a Tuesday
CATALOG = Catalog.from_text("""
calendars: {office: {timezone: UTC, start: "09:00", end: "17:00"}}
impact_share: {1: 1.0, 2: 0.1, 3: 0.01}
sla_targets:
  1: {response: 15m, resolution: 2h}
  3: {response: 1h, resolution: 8h}
services:
  - {id: shop, business_unit: Sales, users: 1000, business_hours: 24x7, cost_per_user_hour: 40,
     customer_facing: true, revenue_per_hour: 6000}
  - {id: erp, business_unit: Finance, users: 200, business_hours: office, cost_per_user_hour: 60}
rules:
  - {service: shop, match: {category: Web}}
  - {service: erp, match: {category: ERP}}
""")


def ev(v: int, kind: str, state: str, minutes: float, **kw: Any) -> TicketEvent:
    base: dict[str, Any] = dict(category="ERP", priority="3 - Moderate", impact="2 - Medium", opened_at=T0)
    base.update(kw)
    return TicketEvent(event_id=f"sn:INC1:{v}", source="servicenow", ticket_id="INC1", kind=kind, version=v,
                       state=state, event_time=T0 + timedelta(minutes=minutes), **base)


LIFECYCLE = [
    ev(0, "created", "New", 0), ev(1, "assigned", "Active", 30), ev(2, "resolved", "Resolved", 120),
    ev(3, "reopened", "Active", 180, reopen_count=1), ev(4, "resolved", "Resolved", 240, reopen_count=1),
    ev(5, "closed", "Closed", 600, reopen_count=1, sla_made=True),
]


def test_fold_is_idempotent_and_order_independent() -> None:
    reference = impact_row(IncidentState.fold(LIFECYCLE), CATALOG)
    for perm in itertools.islice(itertools.permutations(LIFECYCLE), 0, None, 37):
        assert impact_row(IncidentState.fold([*perm, *perm[:2]]), CATALOG) == reference


def test_reopen_counts_both_open_periods_once() -> None:
    row = impact_row(IncidentState.fold(LIFECYCLE), CATALOG)
    assert row.reopens == 1 and not row.is_open
    assert row.interruption_min == 120 + 60  # 09:00-11:00 and 12:00-13:00, not the resolved hour between
    assert row.time_to_resolve_min == 240  # opened -> final resolution
    assert row.time_to_respond_min == 30 and row.sla_response_met is True
    # ERP: 200 users x 0.1 (impact 2) x 3 business hours x 60/h
    assert row.productivity_loss == pytest.approx(20 * 3 * 60)
    assert row.customer_impact == 0.0  # not customer-facing


def test_reprioritising_replaces_the_numbers_instead_of_adding() -> None:
    model = ImpactModel(CATALOG)
    first = model.rows_for(LIFECYCLE[:2])
    later = model.rows_for([ev(6, "updated", "Active", 700, priority="1 - Critical", impact="1 - High")])
    assert [r.version for r in first] == [1] and [r.version for r in later] == [6]
    assert later[0].priority_level == 1 and later[0].sla_resolution_target_min == 120
    assert later[0].users_affected == 200  # impact 1: every user


def test_open_incidents_are_measured_to_their_newest_event_and_breach_while_open() -> None:
    row = impact_row(IncidentState.fold([ev(0, "created", "New", 0), ev(1, "updated", "New", 600)]), CATALOG)
    assert row.is_open and row.resolved_at is None and row.time_to_resolve_min is None
    assert row.interruption_min == 600 and row.interruption_bh_min == 8 * 60  # 09:00-17:00 only
    assert row.sla_response_met is False  # no response yet, 8 business hours > 1 h target
    assert row.sla_resolution_met is None  # 8 h target not yet passed (exactly at it)


def test_sla_met_but_resolution_slow_is_flagged() -> None:
    evs = [ev(0, "created", "New", 0), ev(1, "assigned", "Active", 5),
           ev(2, "resolved", "Resolved", 60 * 24 * 3, sla_made=True)]
    row = impact_row(IncidentState.fold(evs), CATALOG)
    assert row.sla_made is True and row.sla_resolution_met is False
    assert row.sla_disagrees and row.sla_met_resolution_slow


def test_customer_facing_services_carry_customer_impact_on_their_own_clock() -> None:
    evs = [ev(0, "created", "New", 0, category="Web", impact="1 - High"),
           ev(1, "resolved", "Resolved", 90, category="Web", impact="1 - High")]
    row = impact_row(IncidentState.fold(evs), CATALOG)
    assert row.service == "shop" and row.interruption_bh_min == 90  # 24x7
    assert row.customer_impact == pytest.approx(1.5 * 6000)


def test_impact_row_matches_the_clickhouse_columns() -> None:
    assert list(ImpactRow.__struct_fields__) == [c for c, _ in INCIDENT_IMPACT_COLUMNS]


def test_batching_does_not_change_the_result() -> None:
    from streams.adapters import read_events

    events = [e for e in read_events("servicenow-csv", ROOT / "deploy" / "demo-data" / "servicenow_slice.csv.gz")
              if isinstance(e, TicketEvent)][:4000]
    whole = {(r.source, r.ticket_id): r for r in (impact_row(s, CATALOG) for s in fold(events).values())}
    model, streamed = ImpactModel(CATALOG), {}
    for i in range(0, len(events), 333):
        streamed.update({(r.source, r.ticket_id): r for r in model.rows_for(events[i:i + 333])})
    assert streamed == whole


def test_store_keeps_one_row_per_incident_under_replay_and_updates(chdb_store: Any) -> None:
    model = ImpactModel(CATALOG)
    other = [TicketEvent(event_id="sn:INC2:0", source="servicenow", ticket_id="INC2", kind="created", version=0,
                         state="New", event_time=T0, opened_at=T0, category="Web", priority="3 - Moderate")]
    for batch in (LIFECYCLE[:3], LIFECYCLE[:3], LIFECYCLE[3:], other, LIFECYCLE):  # replays included
        chdb_store.insert_incident_impact(model.rows_for(batch))
    rows = chdb_store.query("SELECT ticket_id, version, reopens FROM {db}.incident_impact FINAL ORDER BY ticket_id")
    assert rows == [("INC1", 5, 1), ("INC2", 0, 0)]
    daily = chdb_store.query("SELECT service, sum(opened), sum(resolved), sum(interruption_min) "
                             "FROM {db}.impact_daily GROUP BY service ORDER BY service")
    assert daily == [("erp", 1, 1, 180.0), ("shop", 1, 0, 0.0)]
    (backlog,) = chdb_store.query("SELECT count() FROM {db}.backlog_daily WHERE service = 'shop'")
    assert backlog == (1,)  # the open one counts at the end of its day


def test_restored_history_completes_a_ticket_seen_mid_life() -> None:
    fresh = ImpactModel(CATALOG)
    partial = fresh.rows_for(LIFECYCLE[3:])[0]  # started after the worker restarted: first events unknown
    restored = ImpactModel(CATALOG)
    restored.restore(LIFECYCLE[:4])  # the history read back from ticket_events
    full = restored.rows_for(LIFECYCLE[3:])[0]
    assert full == impact_row(IncidentState.fold(LIFECYCLE), CATALOG)
    assert partial.time_to_respond_min != full.time_to_respond_min  # why the restore matters


def test_restoring_one_ticket_never_evicts_another_the_batch_folds_into() -> None:
    """The stage restores the tickets a batch finds missing, then folds the batch: with the cap
    reached, the restore must not push out a ticket of the same batch (its state would restart
    mid-life and lose its first response; found by the crash test with a 20,000 cap)."""
    model = ImpactModel(CATALOG, max_tickets=2)
    model.rows_for(LIFECYCLE[:2])  # INC1 created and responded to
    other = [msgspec.structs.replace(e, ticket_id=t, event_id=f"{t}:{e.version}") for t in ("INC2", "INC3")
             for e in LIFECYCLE[:1]]
    model.rows_for(other[:1])  # INC2: the cap is reached, INC1 is now the least recently touched
    model.restore(other[1:])  # INC3's history, read back because the batch below finds it missing
    row = next(r for r in model.rows_for(LIFECYCLE[2:3] + other[1:]) if r.ticket_id == "INC1")
    assert row == impact_row(IncidentState.fold(LIFECYCLE[:3]), CATALOG)
