"""State of one incident group: its members, running signal sums and decision state.

Everything here is a msgspec struct, so a detector's state snapshots to msgpack as it is and
restores with validation. Signals are kept as running sums updated by each member's delta, so a
later lifecycle event of an incident (resolved, reopened, knowledge article attached) costs O(1).
"""

from __future__ import annotations

import bisect

import msgspec

from opsintel.events import TicketEvent, TicketEventKind
from opsintel.problems import FeedbackNote

from . import _text
from ._evidence import N_SIGNALS, priority_rank

Contribution = tuple[float, ...]


class Member(msgspec.Struct, array_like=True):
    """One incident of a group (the latest known state of its signals)."""

    t: float  #: opened, epoch seconds
    linked_at: float = 0.0  #: when it was linked to the raised problem (0 = not yet)
    reassign: int = 0
    reopened: bool = False
    sla: int = -1  #: -1 unknown, 0 missed, 1 met
    res_h: float = -1.0  #: hours opened -> resolved, -1 = not resolved
    prio: int = 0
    km: str = ""
    kn: int = -1  #: knowledge used flag: -1 unknown, 0 / 1
    change: str = ""


def contribution(m: Member, targets: dict[int, float]) -> Contribution:
    """What one member adds to the group's sums (layout: ``_evidence.SIG_*``)."""
    resolved = m.res_h >= 0
    target = targets.get(m.prio) if resolved else None
    return (
        1.0,
        float(m.reassign),
        float(m.reopened),
        float(m.sla >= 0),
        float(m.sla == 1),
        float(resolved),
        m.res_h if resolved else 0.0,
        float(target is not None),
        float(target is not None and m.res_h <= target),
        float(m.kn >= 0),
        float(m.kn == 1),
    )


class Group(msgspec.Struct, kw_only=True):
    """A group of similar incidents; ``gid`` is also the id of the problem it may become."""

    gid: str
    source: str
    rep: tuple[str, ...]  #: the seed incident's context: what joiners are compared with
    keys: list[str]  #: blocking keys the group is indexed under
    created: float
    first: float
    last: float
    times: list[float] = msgspec.field(default_factory=list)  #: opened times, sorted, pruned to window
    peak: int = 0
    count: int = 0  #: incidents ever linked
    members: dict[str, Member] = msgspec.field(default_factory=dict)
    matches: list[int] = msgspec.field(default_factory=list)  #: per field: members agreeing with rep
    sim_sum: float = 0.0
    sums: list[float] = msgspec.field(default_factory=lambda: [0.0] * N_SIGNALS)
    km: dict[str, int] = msgspec.field(default_factory=dict)
    named_changes: dict[str, int] = msgspec.field(default_factory=dict)
    centroid: dict[int, float] = msgspec.field(default_factory=dict)
    terms: dict[str, int] = msgspec.field(default_factory=dict)
    status: str = ""  #: "" = not raised; else a ProblemStatus value
    version: int = 0
    raised_at: float = 0.0
    decision_count: int = 0  #: window count when rejected / resolved (for "changed materially")
    merged_into: str = ""
    excluded: list[str] = msgspec.field(default_factory=list)  #: linked incidents a human moved out (split, merge)
    feedback: FeedbackNote | None = None
    sig: str = ""  #: key of the background rate this group is judged against
    linked: int = 0  #: incidents ever linked to the problem (its ``incident_count``)
    pending: list[str] = msgspec.field(default_factory=list)  #: unlinked members, oldest first
    in_episode: bool = False
    episode: int = 0  #: episodes so far (raises, re-raises)
    episode_start: float = 0.0
    expected: float = 0.0  #: expected window count when last judged
    level: float = 0.0  #: the window count an ended episode had become usual at (decays)
    level_at: float = 0.0
    episodes: list[tuple[float, float, int]] = msgspec.field(default_factory=list)  #: closed (start, end, linked)
    episode_linked: int = 0  #: incidents linked in the open (else the last) episode
    overflow: int = 0  #: incidents of the open (else the last) episode past its link cap: counted, not linked

    def count_in_window(self, now: float, window: float) -> int:
        """Incidents opened within ``(now - window, now]``; prunes older times."""
        self.prune(now - window)
        return len(self.times)

    def prune(self, cutoff: float) -> list[float]:
        """Drop (and return) the times before ``cutoff``."""
        cut = bisect.bisect_left(self.times, cutoff)
        if not cut:
            return []
        old = self.times[:cut]
        del self.times[:cut]
        return old

    def absorb(self, ctx: tuple[str, ...], sim: float, vec: dict[int, float], words: list[str], t: float) -> None:
        """Count a new incident (context ``ctx``, similarity ``sim``, text, opened at ``t``) in."""
        self.count += 1
        self.sim_sum += sim
        for i, (a, b) in enumerate(zip(ctx, self.rep, strict=True)):
            if a and a == b:
                self.matches[i] += 1
        if vec:
            _text.add_to_centroid(self.centroid, vec, 64)
            _text.add_terms(self.terms, words, 32)
        self.add_time(t)

    def add_time(self, t: float) -> None:
        if not self.times or self.times[-1] <= t:
            self.times.append(t)
        else:
            bisect.insort(self.times, t)
        self.first = min(self.first, t)
        self.last = max(self.last, t)

    def apply(self, old: Contribution | None, new: Contribution | None) -> None:
        """Replace a member's old contribution to the running sums by its new one."""
        if old is not None and new is not None:
            self.sums = [s - o + n for s, o, n in zip(self.sums, old, new, strict=True)]
        elif old is not None:
            self.sums = [s - o for s, o in zip(self.sums, old, strict=True)]
        elif new is not None:
            self.sums = [s + n for s, n in zip(self.sums, new, strict=True)]

    def add_member(self, ticket_id: str, m: Member, targets: dict[int, float]) -> None:
        """Track ``m``; its signals count towards the group's only once it is linked (``linked_at``)."""
        self.members[ticket_id] = m
        if m.linked_at:
            self.count_in(m, targets)

    def count_in(self, m: Member, targets: dict[int, float]) -> None:
        """Add a linked member's signals, knowledge article and named change to the group's."""
        self.apply(None, contribution(m, targets))
        _bump(self.km, m.km, 1)
        _bump(self.named_changes, m.change, 1)

    def remove_member(self, ticket_id: str, targets: dict[int, float]) -> Member | None:
        m = self.members.pop(ticket_id, None)
        if m is not None and m.linked_at:
            self.apply(contribution(m, targets), None)
            _bump(self.km, m.km, -1)
            _bump(self.named_changes, m.change, -1)
        return m


def _bump(counter: dict[str, int], key: str, by: int) -> None:
    if key:
        n = counter.get(key, 0) + by
        if n > 0:
            counter[key] = n
        else:
            counter.pop(key, None)


def update_member(g: Group | None, m: Member, ev: TicketEvent, targets: dict[int, float]) -> bool:
    """Fold a lifecycle event into a member's signals; returns whether anything changed.

    Most lifecycle events change nothing the group tracks, so the new values are compared first
    and the running sums are touched only on a change (this is the hot path of a replay). With
    ``g=None`` only the member is filled (a new member, before :meth:`Group.add_member`).
    """
    n = ev.reassignment_count
    reassign = n if n is not None and n > m.reassign else m.reassign
    reopened = (
        m.reopened or ev.kind is TicketEventKind.REOPENED or bool(ev.reopen_count) or (ev.reopened_at is not None)
    )
    sla = m.sla if ev.sla_made is None else int(ev.sla_made)
    res_h = m.res_h if ev.resolved_at is None else max(0.0, (ev.resolved_at.timestamp() - m.t) / 3600.0)
    prio = _PRIORITIES.get(ev.priority) if ev.priority else m.prio
    if prio is None:
        prio = _PRIORITIES[ev.priority] = priority_rank(ev.priority)
    kn = m.kn if ev.knowledge_used is None else int(ev.knowledge_used)
    km = ev.knowledge_article or m.km
    change = ev.related_change or m.change
    if (
        reassign == m.reassign and reopened == m.reopened and sla == m.sla and res_h == m.res_h
        and prio == m.prio and kn == m.kn and km == m.km and change == m.change
    ):  # fmt: skip
        return False
    if g is None:
        m.reassign, m.reopened, m.sla, m.res_h, m.prio, m.kn, m.km, m.change = (
            reassign, reopened, sla, res_h, prio, kn, km, change)  # fmt: skip
        return True
    old = contribution(m, targets)
    if km != m.km:
        _bump(g.km, m.km, -1)
        _bump(g.km, km, 1)
    if change != m.change:
        _bump(g.named_changes, m.change, -1)
        _bump(g.named_changes, change, 1)
    m.reassign, m.reopened, m.sla, m.res_h, m.prio, m.kn, m.km, m.change = (
        reassign,
        reopened,
        sla,
        res_h,
        prio,
        kn,
        km,
        change,
    )
    g.apply(old, contribution(m, targets))
    return True


#: priority string -> rank, memoised (a source has a handful of priority values)
_PRIORITIES: dict[str, int] = {}
