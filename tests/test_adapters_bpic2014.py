"""BPI Challenge 2014 adapters (incidents, interactions, changes) on slices and on the full files."""

from __future__ import annotations

import csv
import gzip
from collections import Counter, defaultdict
from collections.abc import Iterable
from datetime import UTC, datetime
from pathlib import Path

import pytest

from opsintel.events import ChangeEvent, TicketEvent, decode_any, encode
from streams.adapters import Rejected
from streams.adapters.bpic2014 import (
    read_bpic2014_changes,
    read_bpic2014_incidents,
    read_bpic2014_interactions,
)

DATA = Path(__file__).parent / "data"
SHARED = Path(__file__).parents[1] / ".." / "shared" / "data" / "bpic2014"


def slice_lines(name: str) -> list[str]:
    return gzip.decompress((DATA / f"bpic2014_{name}.csv.gz").read_bytes()).decode().splitlines(keepends=True)


def data_rows(path: Path) -> int:
    """Rows with at least one non-empty cell, counted independently of the adapter."""
    with gzip.open(path, "rt", newline="") as f:
        return sum(1 for row in csv.reader(f, delimiter=";") if any(row)) - 1


def by_ticket(items: Iterable[object]) -> dict[str, list[TicketEvent]]:
    by: dict[str, list[TicketEvent]] = defaultdict(list)
    for ev in items:
        assert isinstance(ev, TicketEvent), ev
        by[ev.ticket_id].append(ev)
    return by


def mutate(lines: list[str], ticket: str, **cells: str) -> str:
    """A real row of ``lines`` with some cells replaced (to build rows the export should not have)."""
    header = lines[0].rstrip("\r\n").split(";")
    row = next(line for line in lines if f";{ticket};" in line).rstrip("\r\n").split(";")
    for column, value in cells.items():
        row[header.index(column.replace("_", " "))] = value
    return ";".join(row) + "\r\n"


# --- incidents ------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def incidents() -> dict[str, list[TicketEvent]]:
    return by_ticket(read_bpic2014_incidents(DATA / "bpic2014_Detail_Incident.csv.gz"))


def test_incident_events_per_timestamp_in_time_order(incidents):
    assert len(incidents) == data_rows(DATA / "bpic2014_Detail_Incident.csv.gz") == 224
    for evs in incidents.values():
        assert [e.version for e in evs] == list(range(len(evs)))
        assert [e.event_time for e in evs] == sorted(e.event_time for e in evs)
        assert evs[0].kind == "created" and evs[0].event_time == evs[0].opened_at
    reopened = [evs for evs in incidents.values() if len(evs) == 4]
    assert reopened
    assert all([e.kind.value for e in evs] == ["created", "reopened", "resolved", "closed"] for evs in reopened)


def test_incident_columns(incidents):
    first = incidents["IM0000004"]
    assert [e.kind.value for e in first] == ["created", "resolved", "closed"]
    ev = first[0]
    assert ev.event_id == "bpic2014:IM0000004:created" and ev.source == "bpic2014"
    assert ev.opened_at == datetime(2012, 2, 5, 13, 32, 57, tzinfo=UTC)  # dd/mm/yyyy HH:MM:SS
    assert ev.closed_at == datetime(2013, 11, 4, 13, 51, 17, tzinfo=UTC) and ev.reopened_at is None
    assert (ev.service, ev.ci, ev.ci_type, ev.caused_by_ci) == ("WBS000162", "SUB000508", "subapplication", "SUB000508")
    assert (ev.priority, ev.impact, ev.urgency, ev.category) == ("4", "4", "4", "incident")
    assert (ev.knowledge_article, ev.reassignment_count, ev.closure_code) == ("KM0000553", 26, "Other")
    assert ev.handle_time_hours == pytest.approx(3871.691111)  # decimal comma
    assert ev.state == "Closed" and ev.related_change == ""
    assert all(e.handle_time_hours == ev.handle_time_hours for e in first)


def test_incident_markers_and_odd_rows(incidents):
    lines = slice_lines("Detail_Incident")
    multi = [line.split(";")[4] for line in lines if line.split(";")[23] == "#MULTIVALUE"]
    single = [line.split(";")[4] for line in lines if line.split(";")[23].startswith("C0")]
    nb = [line.split(";")[4] for line in lines if line.split(";")[24] == "#N/B"]
    assert multi and single and nb
    assert all(incidents[t][0].related_change == "" for t in multi)  # many changes: none invented
    assert all(incidents[t][0].related_change.startswith("C0") for t in single)
    assert all(incidents[t][0].caused_by_ci == "" for t in nb)
    assert incidents["IM0024778"][0].reassignment_count is None  # the one empty count
    assert any(evs[0].state == "Work in progress" for evs in incidents.values())
    assert any(evs[0].urgency == "5 - Very Low" for evs in incidents.values())


def test_incident_bad_rows(tmp_path):
    lines = slice_lines("Detail_Incident")
    bad = [
        mutate(lines, "IM0000004", Open_Time="31/02/2012 13:32:57"),
        mutate(lines, "IM0000005", **{"Handle_Time (Hours)": "12,3,4"}),
        mutate(lines, "IM0000006", Incident_ID="#N/B"),
    ]
    path = tmp_path / "inc.csv"
    path.write_text(lines[0] + "".join(bad) + lines[4])
    out = list(read_bpic2014_incidents(path))
    rejects = [r for r in out if isinstance(r, Rejected)]
    assert [r.reason.split(":")[0] for r in rejects] == ["bad_timestamp", "bad_number", "missing_field"]
    assert rejects[0].source == "inc.csv:2" and rejects[0].raw == bad[0].encode()
    assert len(out) - len(rejects) == 3


@pytest.mark.slow
def test_full_incident_file():
    path = SHARED / "Detail_Incident.csv.gz"
    if not path.exists():
        pytest.skip("../shared/data not present")
    out = [e for evs in by_ticket(read_bpic2014_incidents(path)).values() for e in evs]
    by = by_ticket(out)
    assert len(by) == data_rows(path) == 46_606
    kinds = Counter(e.kind.value for e in out)
    assert kinds == {"created": 46_606, "closed": 46_606, "resolved": 44_826, "reopened": 2_284}
    assert len({e.event_id for e in out}) == len(out)
    for ev in out[::20]:
        assert decode_any(encode(ev)) == ev


# --- interactions ---------------------------------------------------------------------------------


def test_interactions():
    by = by_ticket(read_bpic2014_interactions(DATA / "bpic2014_Detail_Interaction.csv.gz"))
    assert len(by) == 213 and all([e.kind.value for e in evs] == ["created", "closed"] for evs in by.values())
    first = by["SD0000001"][0]
    assert first.source == "bpic2014-interaction" and first.event_id == "bpic2014-interaction:SD0000001:created"
    assert first.event_time == datetime(2011, 9, 9, 9, 23, tzinfo=UTC)  # d-m-yyyy H:MM
    assert by["SD0000001"][1].event_time == datetime(2014, 2, 14, 9, 5, tzinfo=UTC)
    assert (first.related_incident, first.knowledge_article, first.channel) == ("IM0000001", "KM0000987", "")
    assert first.handle_time_hours == pytest.approx(239 / 3600)
    lines = slice_lines("Detail_Interaction")
    multi = [line.split(";")[4] for line in lines if line.rstrip("\r\n").endswith(";#MULTIVALUE")]
    nb_ci = [line.split(";")[4] for line in lines if line.startswith("#N/B;")]
    assert multi and nb_ci
    assert all(by[t][0].related_incident == "" for t in multi)
    assert all(by[t][0].ci == "" for t in nb_ci)
    assert any(evs[0].state == "Open - Linked" for evs in by.values())


@pytest.mark.slow
def test_full_interaction_file():
    path = SHARED / "Detail_Interaction.csv.gz"
    if not path.exists():
        pytest.skip("../shared/data not present")
    by = by_ticket(read_bpic2014_interactions(path))  # asserts that nothing was rejected
    assert len(by) == data_rows(path) == 147_004
    assert all([e.kind.value for e in evs] == ["created", "closed"] for evs in by.values())
    assert sum(1 for evs in by.values() if evs[0].related_incident) == 51_881


# --- changes --------------------------------------------------------------------------------------


def only_changes(items: Iterable[object]) -> list[ChangeEvent]:
    out = list(items)
    assert all(isinstance(e, ChangeEvent) for e in out), [e for e in out if not isinstance(e, ChangeEvent)]
    return out  # type: ignore[return-value]


def test_changes():
    out = only_changes(read_bpic2014_changes(DATA / "bpic2014_Detail_Change.csv.gz"))
    assert len(out) == data_rows(DATA / "bpic2014_Detail_Change.csv.gz") == 215
    first = out[0]
    assert first.event_id == "bpic2014-change:C00000003:HMD000002"
    assert (first.change_type, first.risk, first.emergency, first.cab_required) == (
        "Release Type 11",
        "Minor Change",
        False,
        False,
    )
    assert first.event_time == first.actual_start == datetime(2013, 12, 18, 14, 0, tzinfo=UTC)
    assert first.planned_start == datetime(2012, 8, 30, 7, 0, tzinfo=UTC) and first.downtime_start is None
    assert (first.opened_at, first.origin) == (datetime(2011, 9, 1, 9, 13, tzinfo=UTC), "Problem")
    no_actual = [e for e in out if e.actual_start is None]
    assert no_actual and all(e.event_time == e.planned_start for e in no_actual)
    assert any(e.emergency for e in out) and any(e.downtime_start for e in out)


def test_repeated_change_ci_rows_keep_distinct_ids_unless_identical():
    out = only_changes(read_bpic2014_changes(DATA / "bpic2014_Detail_Change.csv.gz"))
    groups: dict[tuple[str, str], list[ChangeEvent]] = defaultdict(list)
    for e in out:
        groups[(e.change_id, e.ci)].append(e)
    repeated = [g for g in groups.values() if len(g) > 1]
    identical = [g for g in repeated if all(encode(e) == encode(g[0]) for e in g)]
    differing = [g for g in repeated if g not in identical]
    assert identical and differing
    assert all(len({e.event_id for e in g}) == 1 for g in identical)  # an exact repeat folds
    assert all(len({e.event_id for e in g}) == len(g) for g in differing)
    assert all(g[0].event_id == f"bpic2014-change:{g[0].change_id}:{g[0].ci}" for g in repeated)


def test_change_falls_back_to_open_time_and_rejects_bad_flags(tmp_path):
    lines = slice_lines("Detail_Change")
    no_start = mutate(lines, "C00000007", Actual_Start="", Planned_Start="")
    bad_flag = mutate(lines, "C00000005", Emergency_Change="maybe")
    path = tmp_path / "chg.csv"
    path.write_text(lines[0] + no_start + bad_flag)
    ok, rejected = list(read_bpic2014_changes(path))
    assert isinstance(ok, ChangeEvent) and ok.event_time == ok.opened_at == datetime(2011, 11, 14, 17, 17, tzinfo=UTC)
    assert isinstance(rejected, Rejected) and rejected.reason == "bad_bool: Emergency Change: 'maybe'"


@pytest.mark.slow
def test_full_change_file():
    path = SHARED / "Detail_Change.csv.gz"
    if not path.exists():
        pytest.skip("../shared/data not present")
    out = only_changes(read_bpic2014_changes(path))
    assert len(out) == data_rows(path) == 30_275
    assert len({e.change_id for e in out}) == 18_000
    assert len({e.event_id for e in out}) == 30_275 - 2  # two lines are exact repeats
    for ev in out[::10]:
        assert decode_any(encode(ev)) == ev
