"""Episodes of a recurring-incident problem: when it is raised, what it links, when it goes quiet.

A mixin of :class:`~detectors.RecurringIncidentDetector` (the rule itself is
:mod:`detectors._raise_rule`). A problem keeps its id for good; it links incidents only while an
episode is open, from the raise (the burst's incidents still in the window are linked then;
after a short-burst raise only those of the short span) until its window count falls back to
the level it is judged against. Incidents that join between episodes are *pending*: linked if a
new episode opens within the window, else forgotten (they are the signature's ordinary traffic,
not part of the problem). An episode links at most ``max_episode_links`` incidents (the newest
pending ones at the raise, then the first to arrive); the rest of a surge is counted in the
window (``overflow``), not linked, and not kept.
"""

from __future__ import annotations

import bisect
import math

from opsintel.problems import ProblemRecord, ProblemStatus

from ._group import Group, Member
from ._raise_rule import BackgroundRates, RaiseRule, ServiceBaseline
from ._store import GroupStore


class EpisodeMixin:
    rule: RaiseRule
    _store: GroupStore
    _rates: BackgroundRates
    _baseline: ServiceBaseline
    _episodes: dict[str, None]
    _dirty: dict[str, None]
    _links: list[tuple[str, str, float]]
    _targets: dict[int, float]
    _record_links: bool
    _now: float
    _window: float
    _warmup: float
    _next_live: float
    _max_episode_links: int
    _burst_span: float
    _outbox: list[ProblemRecord]

    def _record(self, g: Group) -> ProblemRecord:
        raise NotImplementedError

    def _judge(self, g: Group, tid: str, m: Member) -> None:
        """Link a new member if an episode is open; else decide whether one opens now."""
        n = self._window_count(g)
        g.peak = max(g.peak, n)
        if g.in_episode:
            if g.episode_linked < self._max_episode_links:
                self._link(g, tid, m)
            else:  # a surge, not "a handful": counted in the window, not linked, not kept
                g.overflow += 1
                g.remove_member(tid, self._targets)
            self._dirty[g.gid] = None
            return
        g.pending.append(tid)
        if g.status in ("rejected", "resolved"):
            if self.rule.materially_changed(n, g.decision_count):
                g.status = ProblemStatus.CANDIDATE.value
                self._begin_episode(g)
        elif n >= self.rule.min_count and self._rates.watched(self._now, g.sig) >= self._warmup:
            expected = self._expected(g)
            if self.rule.is_unusual(n, expected):
                g.status = g.status or ProblemStatus.CANDIDATE.value
                self._begin_episode(g)
            elif since := self._burst_start(g, expected):
                g.status = g.status or ProblemStatus.CANDIDATE.value
                self._prune_pending(g, since)  # the window's ordinary traffic before the burst
                self._begin_episode(g)
        if not g.in_episode and (m0 := g.members.get(g.pending[0])) is not None and m0.t < self._now - self._window:
            self._prune_pending(g)

    def _burst_start(self, g: Group, expected: float) -> float:
        """Start of the short span if the group's last ``burst_span`` seconds hold a burst, else 0."""
        span = self._burst_span
        if span <= 0:
            return 0.0
        since = self._now - span
        k = len(g.times) - bisect.bisect_left(g.times, since)
        if k >= self.rule.min_count and self.rule.is_burst(k, expected, min(1.0, span / self._window)):
            return since
        return 0.0

    def _window_count(self, g: Group) -> int:
        """The group's incidents in the window; those that just left it feed its background rate."""
        for t in g.prune(self._now - self._window):
            self._rates.add(g.sig, t)
        return len(g.times)

    def _expected(self, g: Group, in_window: int = -1) -> float:
        """What the group's window usually holds: its signature's history, its service's usual
        group count standing in where that history is short."""
        g.expected = self._rates.expected(g.sig, self._now, self._baseline.get(g.rep[0]), in_window)
        if in_window < 0 and g.level:  # after an episode, its level is the bar (no flapping)
            g.expected = max(g.expected, g.level * math.exp((g.level_at - self._now) / self._rates.tau))
        return g.expected

    def _prune_pending(self, g: Group, cutoff: float = 0.0) -> None:
        """Forget unlinked members opened before ``cutoff`` (default: past the window): they will
        never be linked, keep no signals."""
        cutoff, k = cutoff or self._now - self._window, 0
        for k, tid in enumerate(g.pending):  # noqa: B007 (k is used after the loop)
            m = g.members.get(tid)
            if m is not None and m.t >= cutoff:
                break
            g.remove_member(tid, self._targets)
        else:
            k = len(g.pending)
        if k:
            del g.pending[:k]

    def _begin_episode(self, g: Group) -> None:
        if g.in_episode:
            return
        g.in_episode, g.episode_start = True, self._now
        g.episode += 1
        g.episode_linked = g.overflow = 0
        g.raised_at = g.raised_at or self._now
        self._episodes[g.gid] = None
        pending = [tid for tid in g.pending if tid in g.members]
        g.overflow = max(0, len(pending) - self._max_episode_links)
        for tid in pending[: g.overflow]:  # past the cap: the oldest go, the newest (the burst) are linked
            g.remove_member(tid, self._targets)
        for tid in pending[g.overflow :]:
            self._link(g, tid, g.members[tid])
        g.pending = []
        self._dirty[g.gid] = None

    def _end_episode(self, g: Group) -> None:
        if g.in_episode:
            g.level, g.level_at = g.expected, self._now
            g.in_episode = False
            g.episodes = [*g.episodes[-7:], (g.episode_start, self._now, g.linked)]
            self._dirty[g.gid] = None
        self._episodes.pop(g.gid, None)

    def _link(self, g: Group, ticket_id: str, m: Member) -> None:
        if not m.linked_at:  # (a member moved in already linked was counted in by ``add_member``)
            m.linked_at = max(self._now, m.t)
            g.count_in(m, self._targets)
        g.linked += 1
        g.episode_linked += 1
        if g.excluded and ticket_id in g.excluded:  # moved back by a human decision: linked again
            g.excluded.remove(ticket_id)
        if self._record_links:
            self._links.append((ticket_id, g.gid, m.linked_at))

    def _sweep_episodes(self) -> None:
        """End episodes back at their level; once a window, learn service baselines from live groups."""
        for gid in list(self._episodes):
            g = self._store.get(gid)
            if g is None:
                self._episodes.pop(gid)
            elif not self.rule.still_elevated(n := self._window_count(g), self._expected(g, n)):
                self._end_episode(g)
        if self._now >= self._next_live:  # once a window, so long-lived groups do not dominate
            for g in self._store.active.values():
                if not g.in_episode and g.created <= self._now - self._window:
                    self._baseline.observe(g.rep[0], self._window_count(g))
            self._next_live = self._now + self._window

    def _on_leave(self, g: Group) -> None:
        for t in g.times:
            self._rates.add(g.sig, t)

    def _on_drop(self, g: Group) -> None:
        if not g.status:
            self._baseline.observe(g.rep[0], g.peak)
        if self._dirty.pop(g.gid, 0) is None and (g.status or g.merged_into):
            self._outbox.append(self._record(g))  # its last change must still reach the consumers
        self._episodes.pop(g.gid, None)
