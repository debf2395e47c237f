"""``IncidentState``: the lifecycle of one incident, folded from its events.

The fold is a pure function of the *set* of events seen: events are kept by ``version`` (one
small :class:`Step` each), so applying an event twice changes nothing and events may arrive in
any order. Everything derived (open / resolved intervals, first response, reopens) is computed
from the steps in version order, never accumulated, so nothing is counted twice.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime

import msgspec

from opsintel.events import TicketEvent, TicketEventKind

#: states in which the desk has not yet touched the ticket (ServiceNow ``New``, empty)
NEW_STATES = frozenset({"", "New", "Open", "Draft"})
#: states in which the incident counts as restored (ServiceNow and BPI spellings)
RESOLVED_STATES = frozenset({"Resolved", "Closed", "Canceled", "Cancelled"})
#: event kinds that prove someone acted on the ticket
_RESPONSE_KINDS = frozenset({TicketEventKind.ASSIGNED, TicketEventKind.REASSIGNED,
                             TicketEventKind.RESOLVED, TicketEventKind.CLOSED})


#: what a (kind, state) pair means, by pair: every event asks, and a source uses a few dozen pairs
_MEANINGS: dict[tuple[str, str], tuple[str, bool, bool]] = {}
_MAX_MEANINGS = 4_096


def _meaning(kind_or_enum: str, state: str) -> tuple[str, bool, bool]:
    """``(kind, restored, responded)`` of a :class:`Step` (see its fields), kept in ``_MEANINGS``."""
    kind = str(kind_or_enum)
    if kind in (TicketEventKind.CREATED, TicketEventKind.REOPENED):
        restored = False
    elif kind in (TicketEventKind.RESOLVED, TicketEventKind.CLOSED):
        restored = True
    else:
        restored = state in RESOLVED_STATES
    responded = kind in _RESPONSE_KINDS or (kind != TicketEventKind.CREATED and state not in NEW_STATES)
    if len(_MEANINGS) >= _MAX_MEANINGS:  # a source with unbounded state names: start over
        _MEANINGS.clear()
    meaning = _MEANINGS[(kind_or_enum, state)] = (kind, restored, responded)
    return meaning


class Step(msgspec.Struct, frozen=True, gc=False):
    """What the fold keeps of one event: its order, time, kind and state, and what they mean.

    ``restored`` and ``responded`` are derived from ``kind`` and ``state`` when the step is made
    (:meth:`of`; once per pair, kept in ``_MEANINGS``): every row reads them for every step.
    """

    version: int
    event_id: str
    event_time: datetime
    kind: str
    state: str
    reopened_at: datetime | None
    #: does the incident count as restored after this event? The kind decides where it is explicit
    #: (BPI rows repeat the final ``state`` on every event); otherwise the state does.
    restored: bool
    #: does this event show a response (assignment, work started, or a resolution)?
    responded: bool

    @classmethod
    def of(cls, ev: TicketEvent) -> Step:
        meaning = _MEANINGS.get((ev.kind, ev.state))
        if meaning is None:
            meaning = _meaning(ev.kind, ev.state)
        kind, restored, responded = meaning
        return cls(ev.version, ev.event_id, ev.event_time, kind, ev.state, ev.reopened_at, restored, responded)


class Lifecycle(msgspec.Struct, frozen=True, gc=False):  # datetimes and a list of their pairs
    """Everything :class:`IncidentState` derives from its steps, computed in one pass
    (:meth:`IncidentState.lifecycle`; the properties of the same names read it)."""

    opened_at: datetime
    as_of: datetime
    first_response_at: datetime | None
    intervals: list[tuple[datetime, datetime]]
    reopens: int
    is_open: bool
    resolved_at: datetime | None


class IncidentState(msgspec.Struct, frozen=True, gc=False):  # steps and an event: never in a cycle
    """One incident's events so far (as :class:`Step` s) and its newest event's attributes.

    Examples
    --------
    >>> from datetime import timedelta, timezone
    >>> t0 = datetime(2016, 3, 1, 9, tzinfo=timezone.utc)
    >>> def ev(v, kind, state, h):
    ...     return TicketEvent(event_id=f"e{v}", source="sn", ticket_id="INC1", kind=kind, version=v,
    ...                        state=state, event_time=t0 + timedelta(hours=h), opened_at=t0)
    >>> s = IncidentState.fold([ev(0, "created", "New", 0), ev(2, "resolved", "Resolved", 5),
    ...                         ev(1, "assigned", "Active", 1)])
    >>> s.first_response_at.hour, s.is_open, [(a.hour, b.hour) for a, b in s.intervals()]
    (10, False, [(9, 14)])
    >>> s.apply(ev(2, "resolved", "Resolved", 5)) is s   # the same event again: no change
    True
    >>> s = s.apply(ev(3, "reopened", "Active", 7)).apply(ev(4, "resolved", "Resolved", 8))
    >>> s.reopens, [(a.hour, b.hour) for a, b in s.intervals()]
    (1, [(9, 14), (16, 17)])
    """

    source: str
    ticket_id: str
    steps: tuple[Step, ...]
    latest: TicketEvent

    # --- building ---------------------------------------------------------------------------------
    @classmethod
    def start(cls, event: TicketEvent) -> IncidentState:
        return cls(event.source, event.ticket_id, (Step.of(event),), event)

    @classmethod
    def fold(cls, events: Iterable[TicketEvent]) -> IncidentState:
        """The state of one ticket after all ``events`` (any order, duplicates allowed)."""
        it = iter(events)
        state = cls.start(next(it))
        for ev in it:
            state = state.apply(ev)
        return state

    def apply(self, event: TicketEvent) -> IncidentState:
        """The state with ``event`` added; ``self`` unchanged if that version is already known.

        Two different events claiming one version are resolved by ``event_id`` (the larger wins),
        so the result does not depend on arrival order.
        """
        if event.ticket_id != self.ticket_id or event.source != self.source:
            raise ValueError(f"event of {event.ticket_id!r} applied to the state of {self.ticket_id!r}")
        step = Step.of(event)
        if step.version > self.steps[-1].version:
            # the usual case: the next event of its lifecycle, so also the newest (the last step's
            # version is the newest event's)
            return IncidentState(self.source, self.ticket_id, (*self.steps, step), event)
        steps = list(self.steps)
        for i, s in enumerate(steps):
            if s.version == step.version:
                if step.event_id <= s.event_id:
                    return self
                steps[i] = step
                break
        else:
            steps.append(step)
            steps.sort(key=lambda s: s.version)
        newest = self.latest
        if (event.version, event.event_id) > (newest.version, newest.event_id):
            newest = event
        return IncidentState(self.source, self.ticket_id, tuple(steps), newest)

    # --- derived ----------------------------------------------------------------------------------
    @property
    def version(self) -> int:
        return self.steps[-1].version

    @property
    def opened_at(self) -> datetime:
        return self.latest.opened_at or min(s.event_time for s in self.steps)

    @property
    def as_of(self) -> datetime:
        """Event time of the newest event: open incidents are measured up to here (never the wall
        clock), so a replay computes the same numbers."""
        return max(s.event_time for s in self.steps)

    @property
    def is_open(self) -> bool:
        return not self.steps[-1].restored

    @property
    def first_response_at(self) -> datetime | None:
        return self.lifecycle().first_response_at

    @property
    def reopens(self) -> int:
        """Reopens: the source's counter, or the reopen transitions seen, whichever is larger."""
        return self.lifecycle().reopens

    def intervals(self) -> list[tuple[datetime, datetime]]:
        """The periods the incident was open: ``[(start, end)]``; an open one ends at :attr:`as_of`.

        A restoration ends an interval at its event's time, except the final one, which ends at the
        source's ``resolved_at`` when that is consistent (the ServiceNow log's event times lag the
        recorded resolution). A reopen starts one at ``reopened_at`` when given, else its event time.
        """
        return self.lifecycle().intervals

    @property
    def resolved_at(self) -> datetime | None:
        """End of the last open period, ``None`` while the incident is open."""
        return self.lifecycle().resolved_at

    def lifecycle(self) -> Lifecycle:
        """Opening, first response, open periods, reopens and resolution, in one pass over the
        steps (see the properties of the same names)."""
        steps, latest = self.steps, self.latest
        opened = self.opened_at
        as_of = steps[0].event_time  # max(event times), as :attr:`as_of`, found in the same pass
        first_response: datetime | None = None
        reopens = 0
        out: list[tuple[datetime, datetime]] = []
        start: datetime | None = opened
        was_restored = False
        for s in steps:
            if s.event_time > as_of:
                as_of = s.event_time
            restored = s.restored
            if first_response is None and s.responded:
                first_response = max(s.event_time, opened)
            if was_restored and not restored:
                reopens += 1
            was_restored = restored
            if start is not None and restored:
                out.append((start, max(start, s.event_time)))
                start = None
            elif start is None and not restored:
                begin = s.reopened_at if s.reopened_at and s.reopened_at >= out[-1][1] else s.event_time
                start = max(begin, out[-1][1])
        is_open = not steps[-1].restored
        if start is not None:
            out.append((start, max(start, as_of)))
        elif out and latest.resolved_at and latest.resolved_at >= out[-1][0]:
            out[-1] = (out[-1][0], latest.resolved_at)
        return Lifecycle(opened_at=opened, as_of=as_of, first_response_at=first_response, intervals=out,
                         reopens=max(latest.reopen_count or 0, reopens), is_open=is_open,
                         resolved_at=None if is_open else out[-1][1])
