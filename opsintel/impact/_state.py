"""``IncidentState``: the lifecycle of one incident, folded from its events.

The fold is a pure function of the *set* of events seen: events are kept by ``version`` (one
small :class:`Step` each), so applying an event twice changes nothing and events may arrive in
any order. Everything derived (open / resolved intervals, first response, reopens) is computed
from the steps in version order, never accumulated, so nothing is counted twice.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

from opsintel.events import TicketEvent, TicketEventKind

#: states in which the desk has not yet touched the ticket (ServiceNow ``New``, empty)
NEW_STATES = frozenset({"", "New", "Open", "Draft"})
#: states in which the incident counts as restored (ServiceNow and BPI spellings)
RESOLVED_STATES = frozenset({"Resolved", "Closed", "Canceled", "Cancelled"})
#: event kinds that prove someone acted on the ticket
_RESPONSE_KINDS = frozenset({TicketEventKind.ASSIGNED, TicketEventKind.REASSIGNED,
                             TicketEventKind.RESOLVED, TicketEventKind.CLOSED})


@dataclass(frozen=True, slots=True)
class Step:
    """What the fold keeps of one event: its order, time, kind and state."""

    version: int
    event_id: str
    event_time: datetime
    kind: str
    state: str
    reopened_at: datetime | None

    @property
    def restored(self) -> bool:
        """Does the incident count as restored after this event?

        The kind decides where it is explicit (BPI rows repeat the final ``state`` on every event);
        otherwise the state does.
        """
        if self.kind in (TicketEventKind.CREATED, TicketEventKind.REOPENED):
            return False
        if self.kind in (TicketEventKind.RESOLVED, TicketEventKind.CLOSED):
            return True
        return self.state in RESOLVED_STATES

    @property
    def responded(self) -> bool:
        """Does this event show a response (assignment, work started, or a resolution)?"""
        return self.kind in _RESPONSE_KINDS or (
            self.kind != TicketEventKind.CREATED and self.state not in NEW_STATES
        )


@dataclass(frozen=True, slots=True)
class IncidentState:
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
        return cls(event.source, event.ticket_id, (_step(event),), event)

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
        if (event.source, event.ticket_id) != (self.source, self.ticket_id):
            raise ValueError(f"event of {event.ticket_id!r} applied to the state of {self.ticket_id!r}")
        step = _step(event)
        if step.version > self.steps[-1].version:  # the usual case: the next event of its lifecycle
            steps: list[Step] | tuple[Step, ...] = (*self.steps, step)
        else:
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
        for s in self.steps:
            if s.responded:
                return max(s.event_time, self.opened_at)
        return None

    @property
    def reopens(self) -> int:
        """Reopens: the source's counter, or the reopen transitions seen, whichever is larger."""
        seen = sum(1 for a, b in zip(self.steps, self.steps[1:], strict=False) if a.restored and not b.restored)
        return max(self.latest.reopen_count or 0, seen)

    def intervals(self) -> list[tuple[datetime, datetime]]:
        """The periods the incident was open: ``[(start, end)]``; an open one ends at :attr:`as_of`.

        A restoration ends an interval at its event's time, except the final one, which ends at the
        source's ``resolved_at`` when that is consistent (the ServiceNow log's event times lag the
        recorded resolution). A reopen starts one at ``reopened_at`` when given, else its event time.
        """
        out: list[tuple[datetime, datetime]] = []
        start: datetime | None = self.opened_at
        for s in self.steps:
            if start is not None and s.restored:
                out.append((start, max(start, s.event_time)))
                start = None
            elif start is None and not s.restored:
                begin = s.reopened_at if s.reopened_at and s.reopened_at >= out[-1][1] else s.event_time
                start = max(begin, out[-1][1])
        if start is not None:
            out.append((start, max(start, self.as_of)))
        elif out and self.latest.resolved_at and self.latest.resolved_at >= out[-1][0]:
            out[-1] = (out[-1][0], self.latest.resolved_at)
        return out

    @property
    def resolved_at(self) -> datetime | None:
        """End of the last open period, ``None`` while the incident is open."""
        return None if self.is_open else self.intervals()[-1][1]


def _step(ev: TicketEvent) -> Step:
    return Step(ev.version, ev.event_id, ev.event_time, str(ev.kind), ev.state, ev.reopened_at)
