"""ServiceNow incident event log (CSV export, one row per update of an incident) → :class:`TicketEvent`.

The format is the one of the UCI "Incident management process enriched event log": a header line,
``,``-separated, ``?`` for a missing value, dates ``d/m/yyyy HH:MM`` without a zone (read in ``tz``),
and a few values with runs of spaces (``Opened by  8``), which are collapsed to one space.

Mapping choices a caller may rely on:

* one event per row, ``ticket_id`` = ``number``, ``event_time`` = ``sys_updated_at``;
* ``version`` = ``max(sys_mod_count, previous version + 1)``: it equals ServiceNow's own update
  counter wherever that counter grows (all but 5 of 24,918 tickets in the UCI log), and still
  strictly orders a ticket's rows in file order where the counter repeats or goes back;
  ``event_id`` = ``servicenow:<number>:<version>``;
* ``kind`` is derived from the change against the ticket's previous row (see :func:`classify`);
* the log has no service column, so ``service`` is the value of the column named by
  ``service_field`` (default ``"category"``);
* ``incident_state`` is kept as given, including odd values such as ``-100``.

A row that cannot be mapped becomes a :class:`Rejected` and leaves the ticket's state untouched.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime
from operator import itemgetter
from pathlib import Path
from typing import Any, NamedTuple

from opsintel.events import TicketEvent, TicketEventKind

from ._base import AdapterOutput, DayFirstClock, Rejected, csv_records, open_text

SOURCE = "servicenow"
MISSING = "?"

#: TicketEvent field → log column; the text fields, copied after :func:`clean_text`.
TEXT_COLUMNS = {
    "state": "incident_state",
    "ci": "cmdb_ci",
    "category": "category",
    "subcategory": "subcategory",
    "symptom": "u_symptom",
    "priority": "priority",
    "impact": "impact",
    "urgency": "urgency",
    "assignment_group": "assignment_group",
    "assigned_to": "assigned_to",
    "channel": "contact_type",
    "location": "location",
    "caller": "caller_id",
    "related_change": "rfc",
    "closure_code": "closed_code",
}
BOOL_COLUMNS = {"active": "active", "knowledge_used": "knowledge", "sla_made": "made_sla"}
INT_COLUMNS = {"reassignment_count": "reassignment_count", "reopen_count": "reopen_count"}
TIME_COLUMNS = {"opened_at": "opened_at", "resolved_at": "resolved_at", "closed_at": "closed_at"}
REQUIRED_COLUMNS = ("number", "sys_updated_at")


class RowError(ValueError):
    """A row that cannot be mapped; ``str(e)`` is the reason code and message."""


class TicketSnapshot(NamedTuple):
    """What :func:`classify` needs to know about a ticket's previous row."""

    version: int
    state: str
    reassignment_count: int | None
    reopen_count: int | None
    assignment_group: str
    assigned_to: str


def clean_text(value: str) -> str:
    """A log value with ``?`` read as missing and whitespace runs collapsed.

    >>> clean_text("Opened by  8"), clean_text("?"), clean_text("3 - Moderate")
    ('Opened by 8', '', '3 - Moderate')
    """
    if value == MISSING:
        return ""
    if "  " in value or value[:1].isspace() or value[-1:].isspace():
        return " ".join(value.split())
    return value


def classify(prev: TicketSnapshot | None, now: TicketSnapshot) -> TicketEventKind:
    """The kind of a row, from the ticket's previous row (``None`` for its first row).

    Precedence: created, resolved, closed, reopened, reassigned, assigned (group or person
    first set), state_changed, updated.

    >>> a = TicketSnapshot(0, "New", 0, 0, "Group 56", "")
    >>> classify(None, a).value, classify(a, a._replace(state="Resolved")).value
    ('created', 'resolved')
    >>> classify(a, a._replace(assigned_to="Resolver 17")).value
    'assigned'
    """
    if prev is None:
        return TicketEventKind.CREATED
    if now.state != prev.state:
        if now.state == "Resolved":
            return TicketEventKind.RESOLVED
        if now.state == "Closed":
            return TicketEventKind.CLOSED
    if _grew(prev.reopen_count, now.reopen_count):
        return TicketEventKind.REOPENED
    if _grew(prev.reassignment_count, now.reassignment_count):
        return TicketEventKind.REASSIGNED
    if (now.assignment_group and not prev.assignment_group) or (now.assigned_to and not prev.assigned_to):
        return TicketEventKind.ASSIGNED
    if now.state != prev.state:
        return TicketEventKind.STATE_CHANGED
    return TicketEventKind.UPDATED


def _grew(before: int | None, after: int | None) -> bool:
    return before is not None and after is not None and after > before


class ServiceNowMapper:
    """Turns the rows of one event log, in file order, into ticket events.

    It remembers each ticket's previous row (a small tuple per ticket), so rows of one ticket need
    not be adjacent, but they must arrive in the order the source wrote them.

    Parameters
    ----------
    header : sequence of str
        The log's column names; ``number`` and ``sys_updated_at`` are required, any other
        missing column maps to an empty value.
    clock : DayFirstClock
        Parses the zone-less timestamps.
    service_field : str
        The column whose value becomes ``service`` (the log has no service column); a name
        that is not a column raises ``ValueError``.
    """

    def __init__(self, header: Sequence[str], clock: DayFirstClock, service_field: str = "category") -> None:
        names = [h.strip() for h in header]
        missing = [c for c in REQUIRED_COLUMNS if c not in names]
        if missing:
            raise ValueError(f"not a ServiceNow incident event log: no column(s) {missing}")
        if service_field not in names:
            raise ValueError(f"service_field {service_field!r} is not a column of this log")
        self.width = len(names)
        pad = self.width  # a missing optional column reads the empty cell appended to every row
        text, flag, count = _CleanedText(), _Booleans(), _Counts()
        instant = _Instants(clock)
        # (event field, log column, converter); converters are memoising dicts, so the hot path is
        # one C-level gather and one C-level map per row
        plan: list[tuple[str, str, dict[str, Any]]] = [
            *((field, col, text) for field, col in TEXT_COLUMNS.items()),
            *((field, col, flag) for field, col in BOOL_COLUMNS.items()),
            *((field, col, count) for field, col in INT_COLUMNS.items()),
            *((field, col, instant) for field, col in TIME_COLUMNS.items()),
            ("ticket_id", "number", text),
            ("event_time", "sys_updated_at", instant),
            ("service", service_field, text),
            ("_mod", "sys_mod_count", count),
        ]
        self._plan = plan
        self._fields = tuple(field for field, _, _ in plan)
        self._columns = [names.index(col) if col in names else pad for _, col, _ in plan]
        self._converters = tuple(conv for _, _, conv in plan)
        self._cells = itemgetter(*self._columns)
        self._last: dict[str, TicketSnapshot] = {}

    def map_row(self, fields: list[str]) -> TicketEvent:
        """Map one row (the csv fields); raises :class:`RowError` if it cannot be mapped."""
        if len(fields) != self.width:
            raise RowError(f"bad_row: expected {self.width} fields, got {len(fields)}")
        fields.append("")
        try:
            converted = map(_lookup, self._converters, self._cells(fields))
            values: dict[str, Any] = dict(zip(self._fields, converted, strict=True))
        except RowError:
            raise self._diagnose(fields) from None
        number = values["ticket_id"]
        if not number:
            raise RowError("missing_field: number")
        if values["event_time"] is None:
            raise RowError("missing_field: sys_updated_at")
        mod = values.pop("_mod") or 0
        prev = self._last.get(number)
        version = mod if prev is None else max(mod, prev.version + 1)
        snapshot = TicketSnapshot(
            version,
            values["state"],
            values["reassignment_count"],
            values["reopen_count"],
            values["assignment_group"],
            values["assigned_to"],
        )
        try:
            event = TicketEvent(
                event_id=f"{SOURCE}:{number}:{version}",
                source=SOURCE,
                kind=classify(prev, snapshot),
                version=version,
                **values,
            )
        except (TypeError, ValueError) as e:
            raise RowError(f"validation: {e}") from e
        self._last[number] = snapshot
        return event

    def _diagnose(self, fields: list[str]) -> RowError:
        """The first cell that does not convert, named by its column (the slow path)."""
        for (_, column, convert), i in zip(self._plan, self._columns, strict=True):
            try:
                convert[fields[i]]
            except RowError as e:
                code, _, message = str(e).partition(": ")
                return RowError(f"{code}: {column}: {message}")
        return RowError("bad_row: unconvertible value")


_MAX_CACHE = 200_000
_lookup: Callable[[dict[str, Any], str], Any] = dict.__getitem__  # honours the caches' __missing__


class _CleanedText(dict[str, str]):
    """:func:`clean_text`, memoised: ITSM columns hold few distinct values, so most lookups hit."""

    def __missing__(self, key: str) -> str:
        if len(self) > _MAX_CACHE:
            self.clear()
        value = self[key] = clean_text(key)
        return value


class _Booleans(dict[str, bool | None]):
    def __init__(self) -> None:
        super().__init__({"true": True, "false": False, MISSING: None, "": None})

    def __missing__(self, key: str) -> bool | None:
        raise RowError(f"bad_bool: {key!r}")


class _Counts(dict[str, int | None]):
    def __missing__(self, key: str) -> int | None:
        if key == MISSING or not key:
            return None
        try:
            value = int(key)
        except ValueError:
            raise RowError(f"bad_number: {key!r}") from None
        if value < 0:
            raise RowError(f"bad_number: negative {value}")
        if len(self) < _MAX_CACHE:
            self[key] = value
        return value


class _Instants(dict[str, datetime | None]):
    def __init__(self, clock: DayFirstClock) -> None:
        super().__init__({MISSING: None, "": None})
        self.clock = clock

    def __missing__(self, key: str) -> datetime | None:
        try:
            value = self.clock(key)
        except ValueError as e:
            raise RowError(f"bad_timestamp: {e}") from None
        if len(self) < _MAX_CACHE:
            self[key] = value
        return value


def read_servicenow(path: str | Path, *, tz: str = "UTC", service_field: str = "category") -> AdapterOutput:
    """Read a ServiceNow incident event log (plain or gzip) into ticket events, in file order.

    Parameters
    ----------
    path : str or Path
        The CSV export.
    tz : str
        IANA zone the log's zone-less timestamps are written in.
    service_field : str
        The column whose value becomes ``service``; the log has no service column.

    Yields
    ------
    TicketEvent or Rejected
        One per data row; a ``Rejected`` carries the reason and the row's original text.

    Examples
    --------
    >>> sample = Path(__file__).parents[2] / "tests" / "data" / "servicenow_incident_event_log.csv.gz"
    >>> events = list(read_servicenow(sample))
    >>> events[0].ticket_id, events[0].kind.value, events[0].version, events[0].service
    ('INC0000045', 'created', 0, 'Category 55')
    """
    name = Path(path).name
    with open_text(path) as f:
        records = csv_records(f)
        header = next(records, None)
        if header is None:
            return
        mapper = ServiceNowMapper(header.fields, DayFirstClock(tz), service_field)
        for record in records:
            if record.error:
                yield Rejected(f"{name}:{record.line}", f"bad_csv: {record.error}", record.raw.encode())
                continue
            if not record.fields:
                continue  # an empty line is no record
            try:
                yield mapper.map_row(record.fields)
            except RowError as e:
                yield Rejected(f"{name}:{record.line}", str(e), record.raw.encode())
