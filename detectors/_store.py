"""Where the recurring-incident detector keeps its groups, and how they leave memory."""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterator
from datetime import timedelta, timezone
from typing import Any

import msgspec

from opsintel.problems import FeedbackNote, ProblemRecord

from . import _text
from ._evidence import ContextIndex
from ._group import Group
from ._raise_rule import BackgroundRates, ServiceBaseline
from ._similarity import blend, field_similarity


class GroupStore:
    """Active and retained groups plus the indexes that find them; every structure is bounded.

    * ``active``: groups with an incident inside the window, oldest activity first (dict order);
    * ``retained``: raised or decided groups past the window, kept ``memory`` seconds after their
      last incident, so a recurrence updates the same problem and a rejected group stays rejected;
    * ``by_key``: blocking key -> the newest ``max_candidates`` group ids indexed under it;
      ``exact``: context -> the newest group seeded with exactly that context;
    * ``tickets``: incident -> group, forgotten after the memory horizon (``ticket_times``), so a
      later lifecycle event of a known incident never counts as a new incident.
    """

    def __init__(self, max_candidates: int) -> None:
        self.max_candidates = max_candidates
        self.active: dict[str, Group] = {}
        self.retained: dict[str, Group] = {}
        self.by_key: dict[str, list[str]] = {}
        self.exact: dict[tuple[str, ...], str] = {}
        self.tickets: dict[str, str] = {}
        self.ticket_times: deque[tuple[float, str]] = deque()

    def get(self, gid: str) -> Group | None:
        return self.active.get(gid) or self.retained.get(gid)

    def resolve(self, g: Group) -> Group:
        """Follow merges to the surviving group (a group merged into a forgotten one is itself)."""
        for _ in range(32):
            if not g.merged_into:
                return g
            target = self.get(g.merged_into)
            if target is None:
                return g
            g = target
        return g

    def best_match(self, ctx: tuple[str, ...], keys: list[str], vec: dict[int, float], weights: tuple[float, ...],
                   text_weight: float, sig: str = "", floor: float = 0.0) -> tuple[Group | None, float]:  # fmt: skip
        """The most similar group sharing a blocking key with the incident, and its similarity.

        A group judged against the incident's own signature ``sig`` scores at least ``floor``: an
        incident with the same coded cause fields always can join it. Without this, a signature
        missing one field (ServiceNow symptom ``?``: category + subcategory weigh 3 of 5) scatters
        over several groups by site and team, while its background rate counts all of them, so
        none of the fragments ever looks unusual.
        """
        exact = None if vec else self.exact.get(ctx)
        if exact is not None and (g := self.get(exact)) is not None:
            return g, 1.0  # same context, no text: nothing can score higher
        best: Group | None = None
        best_sim = 0.0
        seen: set[str] = set()
        active, retained, by_key = self.active, self.retained, self.by_key
        for key in keys:
            for cand in by_key.get(key, ()):
                if cand in seen:
                    continue
                seen.add(cand)
                g = active.get(cand) or retained.get(cand)  # self.get, inlined: the hot loop
                if g is None:
                    continue
                fs, fw = field_similarity(ctx, g.rep, weights)
                sim = blend(fs, fw, _text.cosine(vec, g.centroid), text_weight) if vec and g.centroid else fs
                if sim < floor and sig and g.sig == sig:
                    sim = floor
                if sim > best_sim:
                    best, best_sim = g, sim
        return best, best_sim

    def index(self, g: Group) -> None:
        """Add a new group as the newest active one, findable by its keys and its exact context."""
        self.active[g.gid] = g
        self.exact[g.rep] = g.gid
        for key in g.keys:
            ids = self.by_key.setdefault(key, [])
            ids.append(g.gid)
            if len(ids) > self.max_candidates:
                del ids[0]

    def touch(self, g: Group) -> None:
        """Mark ``g`` as having the newest incident (keeps ``active`` ordered by activity)."""
        if g.gid in self.active:
            self.active[g.gid] = self.active.pop(g.gid)
        else:
            self.retained.pop(g.gid, None)
            self.active[g.gid] = g

    def remember(self, ticket_id: str, gid: str, now: float) -> None:
        self.tickets[ticket_id] = gid
        self.ticket_times.append((now, ticket_id))

    def expire(self, now: float, window: float, memory: float, on_leave: Callable[[Group], None],
               on_drop: Callable[[Group], None]) -> None:  # fmt: skip
        """Move groups idle for ``window`` out of the active set, forget those idle for ``memory``.

        ``on_leave`` sees a group (with its window times) as it leaves the window; ``on_drop`` sees
        a group just before it is forgotten.
        """
        cutoff = now - window
        while self.active:
            g = next(iter(self.active.values()))
            if g.last >= cutoff:
                break
            del self.active[g.gid]
            on_leave(g)
            g.times.clear()
            if g.status or g.merged_into:
                self.retained[g.gid] = g
            else:
                self._drop(g, on_drop)
        cutoff = now - memory
        while self.retained:
            g = next(iter(self.retained.values()))
            if g.last >= cutoff:
                break
            del self.retained[g.gid]
            self._drop(g, on_drop)
        times = self.ticket_times
        while times and times[0][0] < cutoff:
            _, tid = times.popleft()
            self.tickets.pop(tid, None)

    def _drop(self, g: Group, on_drop: Callable[[Group], None]) -> None:
        on_drop(g)
        for key in g.keys:
            ids = self.by_key.get(key)
            if ids and g.gid in ids:
                ids.remove(g.gid)
                if not ids:
                    del self.by_key[key]
        if self.exact.get(g.rep) == g.gid:
            del self.exact[g.rep]

    def restore(self, active: list[Group], retained: list[Group], by_key: dict[str, list[str]],
                tickets: dict[str, str], ticket_times: list[tuple[float, str]],
                exact: list[tuple[tuple[str, ...], str]] | None) -> None:  # fmt: skip
        """Load the state a snapshot captured.

        ``exact`` is restored as saved: rebuilding it from the groups cannot be exact (a dropped
        newest seed leaves no entry for its context, and seeds created at the same instant tie).
        Only a snapshot from before it was saved (``None``) rebuilds it: the newest seed wins.
        """
        self.active = {g.gid: g for g in active}
        self.retained = {g.gid: g for g in retained}
        if exact is not None:
            self.exact = dict(exact)
        else:
            for g in sorted((*active, *retained), key=lambda g: g.created):
                if g.keys:
                    self.exact[g.rep] = g.gid
        self.by_key, self.tickets, self.ticket_times = by_key, tickets, deque(ticket_times)


class DetectorState(msgspec.Struct):
    """Everything a :class:`~detectors.RecurringIncidentDetector` snapshot holds (msgpack)."""

    params: dict[str, Any]
    active: list[Group]
    retained: list[Group]
    baseline: ServiceBaseline
    rates: BackgroundRates
    changes: ContextIndex
    alerts: ContextIndex
    df: dict[int, int]
    by_key: dict[str, list[str]]
    tickets: dict[str, str]
    ticket_times: list[tuple[float, str]]
    now: float
    next_sweep: float
    next_live: float
    dirty: list[str]
    outbox: list[ProblemRecord] = msgspec.field(default_factory=list)
    #: ``GroupStore.exact`` as (context, group id) pairs (``None``: an older snapshot, rebuilt)
    exact: list[tuple[tuple[str, ...], str]] | None = None
    #: groups with an open episode, in the order they opened (``None``: an older snapshot)
    episodes: list[str] | None = None
    stale_events: int = 0
    links: list[tuple[str, str, float]] = msgspec.field(default_factory=list)
    #: UTC offset (microseconds) of each feedback note's ``at``, in :func:`feedback_notes` order:
    #: msgpack keeps the instant of an aware datetime but not its offset
    feedback_offsets: list[int | None] = msgspec.field(default_factory=list)


def feedback_notes(active: list[Group], retained: list[Group], outbox: list[ProblemRecord]) -> Iterator[FeedbackNote]:
    """The feedback notes a snapshot holds, in a fixed order (groups, then unsent records)."""
    for g in (*active, *retained):
        if g.feedback is not None:
            yield g.feedback
    for rec in outbox:
        if rec.feedback is not None:
            yield rec.feedback


def utc_offset(note: FeedbackNote) -> int | None:
    """``note.at``'s UTC offset in microseconds (``None``: no time, or a naive one)."""
    off = note.at.utcoffset() if note.at is not None else None
    return None if off is None else off // timedelta(microseconds=1)


def restore_offsets(notes: Iterator[FeedbackNote], offsets: list[int | None]) -> None:
    """Give each decoded note's ``at`` back the offset it had when the snapshot was taken."""
    for note, off in zip(notes, offsets, strict=False):
        if off and note.at is not None and note.at.tzinfo is not None:
            note.at = note.at.astimezone(timezone(timedelta(microseconds=off)))
