"""BPI Challenge 2014 (Rabobank ITSM) exports → :class:`TicketEvent` / :class:`ChangeEvent`.

Three ``;``-separated files, read with the same conventions:

* ``#N/B`` (Dutch "not available") and an empty cell are missing → ``""`` / ``None``;
* ``#MULTIVALUE`` means *several* values that the export did not list. No single value is true,
  so the field stays empty (e.g. ``related_change``) rather than holding one invented id or the
  marker itself; the count columns of the export (``# Related Changes``) are the place to see it;
* decimal comma (``3871,691111``); dates ``dd/mm/yyyy HH:MM:SS`` (incidents) and ``d-m-yyyy H:MM``
  (interactions, changes), without a zone: read in ``tz`` (the bank is in the Netherlands, so
  ``tz="Europe/Amsterdam"`` is probably right; the default is UTC like every adapter);
* rows whose cells are all empty (the incident file ends with 203 of them) are no records and are
  skipped; trailing empty columns are ignored.

Incidents give one event per existing timestamp (created / reopened / resolved / closed, versions
in time order), interactions a created and a closed event, changes one event per change × CI row.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import datetime
from hashlib import blake2b
from pathlib import Path

from opsintel.events import ChangeEvent, TicketEvent, TicketEventKind

from ._base import AdapterOutput, DayFirstClock, Rejected, csv_records, open_text

Row = Mapping[str, str]
MISSING_MARKERS = frozenset({"", "#N/B", "#MULTIVALUE"})


class RowError(ValueError):
    """A row that cannot be mapped; ``str(e)`` is the reason code and message."""


def text(row: Row, column: str) -> str:
    """A cell, with the export's missing / many markers read as empty.

    >>> text({"Related Change": "#MULTIVALUE", "KM number": "KM0000553"}, "Related Change")
    ''
    """
    value = row.get(column, "").strip()
    return "" if value in MISSING_MARKERS else value


def number(row: Row, column: str) -> float | None:
    """A decimal-comma number (``"3871,691111"`` → 3871.691111); ``None`` if missing.

    >>> number({"Handle Time (Hours)": "3871,691111"}, "Handle Time (Hours)")
    3871.691111
    """
    value = text(row, column)
    if not value:
        return None
    try:
        return float(value.replace(".", "").replace(",", ".") if "," in value else value)
    except ValueError:
        raise RowError(f"bad_number: {column}: {value!r}") from None


def count(row: Row, column: str) -> int | None:
    value = number(row, column)
    if value is None:
        return None
    if value < 0 or value != int(value):
        raise RowError(f"bad_number: {column}: {row[column]!r} is not a count")
    return int(value)


def flag(row: Row, column: str) -> bool | None:
    value = text(row, column).upper()
    if value in ("Y", "N"):
        return value == "Y"
    if not value:
        return None
    raise RowError(f"bad_bool: {column}: {row[column]!r}")


def instant(row: Row, column: str, clock: DayFirstClock) -> datetime | None:
    value = text(row, column)
    if not value:
        return None
    try:
        return clock(value)
    except ValueError as e:
        raise RowError(f"bad_timestamp: {column}: {e}") from None


def required(row: Row, column: str) -> str:
    value = text(row, column)
    if not value:
        raise RowError(f"missing_field: {column}")
    return value


_INCIDENT_STEPS = (
    (TicketEventKind.CREATED, "Open Time"),
    (TicketEventKind.REOPENED, "Reopen Time"),
    (TicketEventKind.RESOLVED, "Resolved Time"),
    (TicketEventKind.CLOSED, "Close Time"),
)


def incident_events(row: Row, clock: DayFirstClock) -> list[TicketEvent]:
    """The events of one ``Detail_Incident`` row: one per timestamp the row has, in time order.

    Every event carries the same attributes (the row is the incident's final state); ``version``
    counts 0.. in time order (ties keep open, reopen, resolved, close order) and ``event_id`` is
    ``bpic2014:<Incident ID>:<kind>``. A ``Status`` of ``Work in progress`` is kept as ``state``
    even where the row has a close time.
    """
    ticket_id = required(row, "Incident ID")
    times = {kind: instant(row, column, clock) for kind, column in _INCIDENT_STEPS}
    steps = sorted(((t, i, kind) for i, (kind, t) in enumerate(times.items()) if t is not None))
    if not steps:
        raise RowError("missing_field: Open Time (and no other timestamp)")
    attributes = {
        "state": text(row, "Status"),
        "opened_at": times[TicketEventKind.CREATED],
        "reopened_at": times[TicketEventKind.REOPENED],
        "resolved_at": times[TicketEventKind.RESOLVED],
        "closed_at": times[TicketEventKind.CLOSED],
        "service": text(row, "Service Component WBS (aff)"),
        "ci": text(row, "CI Name (aff)"),
        "ci_type": text(row, "CI Type (aff)"),
        "category": text(row, "Category"),
        "priority": text(row, "Priority"),
        "impact": text(row, "Impact"),
        "urgency": text(row, "Urgency"),
        "knowledge_article": text(row, "KM number"),
        "reassignment_count": count(row, "# Reassignments"),
        "related_change": text(row, "Related Change"),
        "caused_by_ci": text(row, "CI Name (CBy)"),
        "closure_code": text(row, "Closure Code"),
        "handle_time_hours": number(row, "Handle Time (Hours)"),
    }
    return [
        TicketEvent(
            event_id=f"bpic2014:{ticket_id}:{kind.value}",
            source="bpic2014",
            ticket_id=ticket_id,
            kind=kind,
            event_time=at,
            version=version,
            **attributes,  # type: ignore[arg-type]
        )
        for version, (at, _, kind) in enumerate(steps)
    ]


def interaction_events(row: Row, clock: DayFirstClock) -> list[TicketEvent]:
    """The events of one ``Detail_Interaction`` row: created at first touch, closed at close time.

    The export has no channel, so ``channel`` stays empty; ``Related Incident`` goes to
    ``related_incident`` (empty for ``#MULTIVALUE``); ``Handle Time (secs)`` becomes hours. The
    ``First Call Resolution`` flag has no canonical field and is not carried.
    """
    ticket_id = required(row, "Interaction ID")
    opened = instant(row, "Open Time (First Touch)", clock)
    closed = instant(row, "Close Time", clock)
    seconds = number(row, "Handle Time (secs)")
    attributes = {
        "state": text(row, "Status"),
        "opened_at": opened,
        "closed_at": closed,
        "service": text(row, "Service Comp WBS (aff)"),
        "ci": text(row, "CI Name (aff)"),
        "ci_type": text(row, "CI Type (aff)"),
        "category": text(row, "Category"),
        "priority": text(row, "Priority"),
        "impact": text(row, "Impact"),
        "urgency": text(row, "Urgency"),
        "knowledge_article": text(row, "KM number"),
        "related_incident": text(row, "Related Incident"),
        "closure_code": text(row, "Closure Code"),
        "handle_time_hours": None if seconds is None else seconds / 3600.0,
    }
    steps = [(TicketEventKind.CREATED, opened), (TicketEventKind.CLOSED, closed)]
    present = [(kind, at) for kind, at in steps if at is not None]
    if not present:
        raise RowError("missing_field: Open Time (First Touch) (and no Close Time)")
    return [
        TicketEvent(
            event_id=f"bpic2014-interaction:{ticket_id}:{kind.value}",
            source="bpic2014-interaction",
            ticket_id=ticket_id,
            kind=kind,
            event_time=at,
            version=version,
            **attributes,  # type: ignore[arg-type]
        )
        for version, (kind, at) in enumerate(present)
    ]


def change_event(row: Row, clock: DayFirstClock, *, event_id: str = "") -> ChangeEvent:
    """The event of one ``Detail_Change`` row (one change on one CI).

    ``event_time`` is the actual start, else the planned start, else the record's open time.
    ``event_id`` defaults to ``bpic2014-change:<Change ID>:<CI Name (aff)>``.
    """
    change_id = required(row, "Change ID")
    ci = text(row, "CI Name (aff)")
    actual_start = instant(row, "Actual Start", clock)
    planned_start = instant(row, "Planned Start", clock)
    opened_at = instant(row, "Change record Open Time", clock)
    event_time = actual_start or planned_start or opened_at
    if event_time is None:
        raise RowError("missing_field: Actual Start, Planned Start and Change record Open Time all empty")
    return ChangeEvent(
        event_id=event_id or f"bpic2014-change:{change_id}:{ci}",
        source="bpic2014",
        event_time=event_time,
        change_id=change_id,
        ci=ci,
        ci_type=text(row, "CI Type (aff)"),
        service=text(row, "Service Component WBS (aff)"),
        change_type=text(row, "Change Type"),
        risk=text(row, "Risk Assessment"),
        emergency=flag(row, "Emergency Change"),
        cab_required=flag(row, "CAB-approval needed"),
        origin=text(row, "Originated from"),
        planned_start=planned_start,
        planned_end=instant(row, "Planned End", clock),
        actual_start=actual_start,
        actual_end=instant(row, "Actual End", clock),
        downtime_start=instant(row, "Scheduled Downtime Start", clock),
        downtime_end=instant(row, "Scheduled Downtime End", clock),
        opened_at=opened_at,
        closed_at=instant(row, "Change record Close Time", clock),
    )


MapRow = Callable[[Row, str], list[TicketEvent] | list[ChangeEvent]]


def _read(path: str | Path, map_row: MapRow) -> AdapterOutput:
    name = Path(path).name
    with open_text(path) as f:
        records = csv_records(f, delimiter=";")
        header = next(records, None)
        if header is None:
            return
        columns = [c.strip() for c in header.fields]
        for record in records:
            where = f"{name}:{record.line}"
            if record.error:
                yield Rejected(where, f"bad_csv: {record.error}", record.raw.encode())
                continue
            if not any(record.fields):
                continue
            row = {c: v for c, v in zip(columns, record.fields, strict=False) if c}
            try:
                yield from map_row(row, record.raw)
            except RowError as e:
                yield Rejected(where, str(e), record.raw.encode())
            except ValueError as e:  # the event's own validation
                yield Rejected(where, f"validation: {e}", record.raw.encode())


def read_bpic2014_incidents(path: str | Path, *, tz: str = "UTC") -> AdapterOutput:
    """Read ``Detail_Incident.csv`` (plain or gzip): 1-4 ticket events per incident, in file order.

    >>> sample = Path(__file__).parents[2] / "tests" / "data" / "bpic2014_Detail_Incident.csv.gz"
    >>> [(e.ticket_id, e.kind.value, e.version) for e in read_bpic2014_incidents(sample)][:3]
    [('IM0000004', 'created', 0), ('IM0000004', 'resolved', 1), ('IM0000004', 'closed', 2)]
    """
    clock = DayFirstClock(tz)
    return _read(path, lambda row, _raw: incident_events(row, clock))


def read_bpic2014_interactions(path: str | Path, *, tz: str = "UTC") -> AdapterOutput:
    """Read ``Detail_Interaction.csv`` (plain or gzip): a created and a closed event per interaction."""
    clock = DayFirstClock(tz)
    return _read(path, lambda row, _raw: interaction_events(row, clock))


def read_bpic2014_changes(path: str | Path, *, tz: str = "UTC") -> AdapterOutput:
    """Read ``Detail_Change.csv`` (plain or gzip): one change event per change × CI row.

    The export repeats some change × CI pairs (151 repeats in the public file, most with another
    ``Change record Close Time``, some with other planned / actual windows). The first occurrence
    gets the plain id; a repeat gets ``…:<8 hex of the row's text>``, so differing repeats stay
    separate events while an exact repeat of a line gets the id of its twin and folds.
    """
    clock = DayFirstClock(tz)
    seen: dict[tuple[str, str], str] = {}

    def map_row(row: Row, raw: str) -> list[ChangeEvent]:
        key = (text(row, "Change ID"), text(row, "CI Name (aff)"))
        digest = blake2b(raw.rstrip("\r\n").encode(), digest_size=4).hexdigest()
        first = seen.setdefault(key, digest)
        suffix = "" if first == digest else f":{digest}"
        return [change_event(row, clock, event_id=f"bpic2014-change:{key[0]}:{key[1]}{suffix}")]

    return _read(path, map_row)
