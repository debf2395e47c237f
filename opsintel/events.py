"""Canonical events: the one shape every source is turned into before it enters Kafka.

Three record types travel on three topics: :class:`TicketEvent` (the ticket lifecycle),
:class:`MonitoringEvent` (alerts firing / resolved) and :class:`ChangeEvent` (changes / RFCs).
They are `msgspec` structs rather than `faust.Record`s on purpose: the pure core
(``detectors/``, ``sinks/``) must not import Faust, and msgspec validates types while it decodes,
several times faster than building a Record from a dict. The wire format is JSON with a
``type`` tag, so a JSON-lines file of mixed events decodes with :func:`decode_any`.

Rules every adapter follows:

* timestamps are timezone-aware UTC (naive or out-of-range timestamps are rejected);
* a value the source does not have stays empty (``""`` / ``None``): nothing is invented;
* ``event_id`` is deterministic (the same source row always gives the same id), so a replay
  after a crash writes the same rows again and the idempotent tables fold them;
* ``version`` orders the events of one ticket (latest state wins in ``incidents``).

>>> from datetime import datetime, timezone
>>> ev = TicketEvent(event_id="sn:INC1:0", source="servicenow", ticket_id="INC1", kind="created",
...                  event_time=datetime(2016, 2, 29, 1, 23, tzinfo=timezone.utc), version=0)
>>> decode_ticket(encode(ev)) == ev
True
>>> decode_ticket(b'{"type": "ticket", "event_id": "x"}')
Traceback (most recent call last):
...
msgspec.ValidationError: Object missing required field `ticket_id`
"""

from __future__ import annotations

import enum
import functools
import typing
from datetime import UTC, datetime
from typing import Any

import msgspec

SCHEMA_VERSION = 1

#: Earliest and latest instants accepted anywhere (ClickHouse ``DateTime64`` covers 1900-2299;
#: ITSM data outside 1970-2100 is a broken clock or a placeholder such as ``0001-01-01``).
MIN_TIME = datetime(1970, 1, 1, tzinfo=UTC)
MAX_TIME = datetime(2100, 1, 1, tzinfo=UTC)


class TicketEventKind(enum.StrEnum):
    """What happened to the ticket in this event."""

    CREATED = "created"
    ASSIGNED = "assigned"
    REASSIGNED = "reassigned"
    STATE_CHANGED = "state_changed"
    RESOLVED = "resolved"
    REOPENED = "reopened"
    CLOSED = "closed"
    UPDATED = "updated"


class AlertStatus(enum.StrEnum):
    FIRING = "firing"
    RESOLVED = "resolved"


def _check_time(name: str, value: datetime | None) -> None:
    if value is None:
        return
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(f"`{name}` must be timezone-aware (UTC), got naive {value.isoformat()}")
    if not (MIN_TIME <= value < MAX_TIME):
        raise ValueError(f"`{name}` out of range 1970..2100: {value.isoformat()}")


class _Event(msgspec.Struct, kw_only=True, tag_field="type", omit_defaults=True, gc=False):
    # gc=False: events hold only strings, numbers, datetimes and string maps, so they can never be
    # part of a reference cycle; untracked, the worker's tens of thousands of pending events cost
    # the garbage collector nothing (its full collections were ~15 % of a replay)
    schema_version: int = SCHEMA_VERSION
    event_id: str
    source: str
    event_time: datetime

    def __post_init__(self) -> None:
        if not self.event_id:
            raise ValueError("`event_id` must not be empty")
        if self.schema_version != SCHEMA_VERSION:
            raise ValueError(f"unsupported schema_version {self.schema_version} (expected {SCHEMA_VERSION})")
        for field in _time_fields(type(self)):
            value = getattr(self, field)
            if value is None:
                continue
            if value.tzinfo is not UTC:
                _check_time(field, value)
                if value.utcoffset():
                    # normalise to UTC so every consumer compares like with like
                    setattr(self, field, value.astimezone(UTC))
            elif not (MIN_TIME <= value < MAX_TIME):
                # a UTC value (what msgspec decodes a trailing "Z" to, nearly every event): aware and
                # normalised already; compared with the UTC bounds without offset lookups, this
                # check is ~2 µs an event less (about a third of decoding one)
                _check_time(field, value)


@functools.cache
def _time_fields(cls: type[msgspec.Struct]) -> tuple[str, ...]:
    """The datetime fields of an event class (checked on every event: computed once per class)."""
    hints = typing.get_type_hints(cls)
    return tuple(f for f in cls.__struct_fields__ if datetime in (typing.get_args(hints[f]) or (hints[f],)))


class TicketEvent(_Event, tag="ticket"):
    """One lifecycle event of an ITSM ticket (incident), as the source system recorded it."""

    ticket_id: str
    kind: TicketEventKind
    version: int
    state: str = ""
    active: bool | None = None
    opened_at: datetime | None = None
    resolved_at: datetime | None = None
    closed_at: datetime | None = None
    reopened_at: datetime | None = None
    service: str = ""
    ci: str = ""
    ci_type: str = ""
    category: str = ""
    subcategory: str = ""
    symptom: str = ""
    description: str = ""
    priority: str = ""
    impact: str = ""
    urgency: str = ""
    assignment_group: str = ""
    assigned_to: str = ""
    channel: str = ""
    location: str = ""
    caller: str = ""
    knowledge_used: bool | None = None
    knowledge_article: str = ""
    related_change: str = ""
    #: the incident this ticket was linked to (e.g. a service-desk interaction logged against an incident)
    related_incident: str = ""
    caused_by_ci: str = ""
    reassignment_count: int | None = None
    reopen_count: int | None = None
    sla_made: bool | None = None
    closure_code: str = ""
    handle_time_hours: float | None = None

    def __post_init__(self) -> None:
        super().__post_init__()
        if not self.ticket_id:
            raise ValueError("`ticket_id` must not be empty")
        # ranges of the ClickHouse columns (UInt64, UInt32): a value outside them is bad input, and
        # rejecting it here names the field instead of failing the whole insert later
        if not 0 <= self.version < 2**64:
            raise ValueError("`version` must be in 0..2**64-1")
        for name in ("reassignment_count", "reopen_count"):
            value = getattr(self, name)
            if value is not None and not 0 <= value < 2**32:
                raise ValueError(f"`{name}` must be in 0..2**32-1")
        if self.handle_time_hours is not None and not (0.0 <= self.handle_time_hours < 1e7):
            raise ValueError("`handle_time_hours` must be a finite, non-negative number")

    @property
    def partition_key(self) -> str:
        """Kafka key: the service (so one service's tickets stay ordered on one partition)."""
        return self.service or self.ci or self.ticket_id


class MonitoringEvent(_Event, tag="monitoring"):
    """An alert firing or resolving, e.g. one element of an Alertmanager webhook's ``alerts``."""

    status: AlertStatus
    fingerprint: str
    name: str
    starts_at: datetime
    ends_at: datetime | None = None
    service: str = ""
    ci: str = ""
    severity: str = ""
    summary: str = ""
    generator_url: str = ""
    labels: dict[str, str] = msgspec.field(default_factory=dict)
    annotations: dict[str, str] = msgspec.field(default_factory=dict)

    def __post_init__(self) -> None:
        super().__post_init__()
        if not self.fingerprint:
            raise ValueError("`fingerprint` must not be empty")

    @property
    def partition_key(self) -> str:
        return self.service or self.ci or self.fingerprint


class ChangeEvent(_Event, tag="change"):
    """A change (RFC) on a configuration item."""

    change_id: str
    ci: str = ""
    ci_type: str = ""
    service: str = ""
    change_type: str = ""
    risk: str = ""
    emergency: bool | None = None
    cab_required: bool | None = None
    planned_start: datetime | None = None
    planned_end: datetime | None = None
    actual_start: datetime | None = None
    actual_end: datetime | None = None
    downtime_start: datetime | None = None
    downtime_end: datetime | None = None
    opened_at: datetime | None = None
    closed_at: datetime | None = None
    origin: str = ""

    def __post_init__(self) -> None:
        super().__post_init__()
        if not self.change_id:
            raise ValueError("`change_id` must not be empty")

    @property
    def partition_key(self) -> str:
        return self.service or self.ci or self.change_id


Event = TicketEvent | MonitoringEvent | ChangeEvent

_encoder = msgspec.json.Encoder()
_ticket_decoder = msgspec.json.Decoder(TicketEvent)
_monitoring_decoder = msgspec.json.Decoder(MonitoringEvent)
_change_decoder = msgspec.json.Decoder(ChangeEvent)
_any_decoder: msgspec.json.Decoder[Event] = msgspec.json.Decoder(Event)


def encode(event: Event) -> bytes:
    """Encode an event as compact JSON with its ``type`` tag."""
    return _encoder.encode(event)


def decode_ticket(data: bytes | str) -> TicketEvent:
    """Decode and validate one ticket event; raises ``msgspec.DecodeError`` / ``ValidationError``."""
    return _ticket_decoder.decode(data)


def decode_monitoring(data: bytes | str) -> MonitoringEvent:
    return _monitoring_decoder.decode(data)


def decode_change(data: bytes | str) -> ChangeEvent:
    return _change_decoder.decode(data)


def decode_any(data: bytes | str) -> Event:
    """Decode an event of any of the three types, chosen by its ``type`` tag."""
    return _any_decoder.decode(data)


def to_builtins(event: Event) -> dict[str, Any]:
    """The event as plain Python values (datetimes stay datetimes), for sinks and tests."""
    out: dict[str, Any] = {f: getattr(event, f) for f in event.__struct_fields__}
    return out
