"""Online grouping of similar incidents into problem records (see :class:`RecurringIncidentDetector`)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import msgspec

from opsintel.events import ChangeEvent, Event, MonitoringEvent, TicketEvent
from opsintel.problems import ProblemRecord

from . import _text
from ._evidence import DEFAULT_RESOLUTION_TARGETS_HOURS, ContextIndex, alert_item, change_item
from ._feedback import FeedbackMixin
from ._group import Group, Member, update_member
from ._raise_rule import BackgroundRates, RaiseRule, ServiceBaseline
from ._records import RecordContext, build_record, problem_id
from ._similarity import FIELDS, blocking_keys, context_of, signature, weights_from
from ._store import DetectorState, GroupStore, feedback_notes, restore_offsets, utc_offset

#: a link event for offline evaluation: (incident id, problem id or "" when unlinked, linked at)
Link = tuple[str, str, float]


class RecurringIncidentDetector(FeedbackMixin):
    """Group similar incidents in a sliding window; raise / update a problem when a group is unusual.

    River-shaped: feed every event (ticket, change, alert) in time order to :meth:`learn_one`;
    collect the problem records that changed with :meth:`pop_updates`; apply human decisions
    with :meth:`apply_feedback`; :meth:`snapshot` / :meth:`from_snapshot` carry the state across
    restarts. An incident counts once: its first event places it in a group, later events of
    the same ``ticket_id`` only update its signals (resolution, reopen, knowledge article).

    A group is raised when it is unusual for its signature (see :mod:`detectors._raise_rule`);
    it then stays one problem (stable id, growing version) for good, but links incidents only
    during *episodes*: from the raise until its rate falls back towards its baseline. A later
    burst of the same group opens a new episode of the same record (ITIL: one problem per
    cause); the quiet stretches in between, the signature's ordinary traffic, are not linked.

    Parameters
    ----------
    window_hours
        Sliding window: a group expires when it got no incident for this long, and the raise
        rule counts incidents within it. Default one week (see ``BENCHMARKS.md``).
    similarity_threshold
        Minimum similarity (0..1) for an incident to join a group, else it seeds a new one.
    min_count, baseline_factor, reraise_factor, alpha, dispersion, max_expected
        The raise rule (:class:`~detectors._raise_rule.RaiseRule`).
    burst_hours, burst_alpha
        The short-burst test: a group is also raised when its last ``burst_hours`` hold a burst
        at chance ``burst_alpha`` (default ``alpha / 10``); 0 hours disables it.
    max_episode_links
        Incidents one episode links at most (a surge beyond is counted, not linked).
    baseline_windows
        Memory of a signature's background rate, in windows (the decay time constant).
    warmup_hours
        How long a signature must have been watched (from its first incident, or from the
        detector's start) before it can be raised (default: two windows).
    field_weights, text_weight
        Weights of the context fields (partial mapping over ``detectors._similarity.FIELDS``)
        and of the free-text cosine when both sides have text.
    max_candidates, max_members, max_linked_ids
        Groups kept per blocking key; incidents whose signals a group tracks; ids listed in a
        record (``incident_count`` stays exact).
    memory_windows
        Raised or decided groups are remembered this many windows after their last incident,
        so a recurrence updates the same problem and a rejected group stays rejected.
    change_lookback_hours, alert_lookback_hours, resolution_targets_hours
        Evidence: how far before the first incident a change / an alert counts; priority rank ->
        resolution target, for "SLA resolution met".
    record_links
        Keep ``(incident, problem, linked_at)`` events for :meth:`pop_links` (offline evaluation).

    Examples
    --------
    >>> from datetime import datetime, timedelta, timezone
    >>> t0 = datetime(2016, 3, 1, tzinfo=timezone.utc)
    >>> def incident(i, at, symptom="Symptom 72"):
    ...     return TicketEvent(event_id=f"e{i}", source="servicenow", ticket_id=f"INC{i}", kind="created",
    ...         version=0, event_time=at, service="Category 55", category="Category 55",
    ...         subcategory="Subcategory 170", symptom=symptom, location=f"Location {i}")
    >>> det = RecurringIncidentDetector()
    >>> det.learn_one(incident(0, t0 - timedelta(days=70)))  # seen once, ten weeks ago: a rare signature
    >>> det.learn_many(incident(i, t0 + timedelta(hours=i)) for i in range(1, 5))
    >>> [rec] = det.pop_updates()
    >>> rec.status, rec.incident_count, rec.version
    (<ProblemStatus.CANDIDATE: 'candidate'>, 4, 1)
    >>> rec.why.shared_attributes["symptom"]
    'Symptom 72'
    """

    def __init__(
        self,
        *,
        window_hours: float = 168.0,
        similarity_threshold: float = 0.7,
        min_count: int = 3,
        baseline_factor: float = 2.0,
        reraise_factor: float = 2.0,
        alpha: float = 0.001,
        dispersion: float = 6.0,
        max_expected: float = 10.0,
        burst_hours: float = 48.0,
        burst_alpha: float | None = None,
        max_episode_links: int = 25,
        baseline_windows: float = 4.0,
        warmup_hours: float | None = None,
        field_weights: Mapping[str, float] | None = None,
        text_weight: float = 4.0,
        max_candidates: int = 8,
        max_members: int = 1000,
        max_linked_ids: int = 500,
        memory_windows: float = 4.0,
        change_lookback_hours: float = 72.0,
        alert_lookback_hours: float = 24.0,
        resolution_targets_hours: Mapping[int, float] | None = None,
        record_links: bool = False,
    ) -> None:
        if window_hours <= 0 or not 0 < similarity_threshold <= 1:
            raise ValueError("window_hours must be > 0 and similarity_threshold in (0, 1]")
        if max_candidates < 1 or max_members < 1 or memory_windows < 1 or baseline_windows <= 0:
            raise ValueError("max_candidates, max_members, memory_windows must be >= 1, baseline_windows > 0")
        if max_episode_links < 1 or burst_hours < 0:
            raise ValueError("max_episode_links must be >= 1 and burst_hours >= 0")
        burst_alpha = alpha / 10 if burst_alpha is None else burst_alpha
        warmup_hours = 2 * window_hours if warmup_hours is None else warmup_hours
        self.params: dict[str, Any] = {
            "window_hours": window_hours, "similarity_threshold": similarity_threshold,
            "min_count": min_count, "baseline_factor": baseline_factor, "reraise_factor": reraise_factor,
            "alpha": alpha, "dispersion": dispersion, "max_expected": max_expected,
            "burst_hours": burst_hours, "burst_alpha": burst_alpha, "max_episode_links": max_episode_links,
            "baseline_windows": baseline_windows, "warmup_hours": warmup_hours,
            "field_weights": dict(field_weights or {}), "text_weight": text_weight,
            "max_candidates": max_candidates, "max_members": max_members, "max_linked_ids": max_linked_ids,
            "memory_windows": memory_windows, "change_lookback_hours": change_lookback_hours,
            "alert_lookback_hours": alert_lookback_hours,
            "resolution_targets_hours": {int(k): float(v) for k, v in
                                         (resolution_targets_hours or DEFAULT_RESOLUTION_TARGETS_HOURS).items()},
            "record_links": record_links,
        }  # fmt: skip
        self.rule = RaiseRule(min_count=min_count, baseline_factor=baseline_factor, reraise_factor=reraise_factor,
                              alpha=alpha, dispersion=dispersion, max_expected=max_expected,
                              burst_alpha=burst_alpha)  # fmt: skip
        self._weights = weights_from(field_weights)
        self._threshold = similarity_threshold
        self._text_weight = text_weight
        self._window = window_hours * 3600.0
        self._memory = self._window * memory_windows
        self._warmup = warmup_hours * 3600.0
        self._max_members = max_members
        self._max_episode_links = max_episode_links
        self._burst_span = burst_hours * 3600.0
        self._targets: dict[int, float] = self.params["resolution_targets_hours"]
        self._record_links = record_links
        lookback = max(change_lookback_hours, alert_lookback_hours) * 3600.0
        self._store = GroupStore(max_candidates)
        self._episodes: dict[str, None] = {}  # groups with an open episode
        self.stale_events = 0  #: first-seen events of incidents opened before the window (ignored)
        self._df: dict[int, int] = {}
        self._baseline = ServiceBaseline()
        self._rates = BackgroundRates(window=self._window, tau=self._window * baseline_windows)
        self._changes = ContextIndex(retention=self._window + lookback)
        self._alerts = ContextIndex(retention=self._window + lookback)
        self._dirty: dict[str, None] = {}
        self._outbox: list[ProblemRecord] = []  # records of changed problems forgotten before pop_updates
        self._links: list[Link] = []
        self._now = 0.0
        self._next_sweep = 0.0
        self._next_live = 0.0

    # ------------------------------------------------------------------ learning
    def learn_one(self, event: Event) -> None:
        """Learn from one event (ticket, change or alert); events should arrive in time order.

        Only tickets move the detector's clock. Changes and alerts are context, indexed at their
        own times: one far ahead of the tickets (today's alert beside a replayed ticket history,
        or an alert that reaches a partition before its first ticket) would otherwise expire
        every incident in the window and mark all later tickets stale.
        """
        if type(event) is TicketEvent or isinstance(event, TicketEvent):
            t = event.event_time.timestamp()
            if t > self._now:
                if self._rates.start < 0:
                    self._rates.begin(t)
                    self._next_live = t + self._window
                self._now = t
                if t >= self._next_sweep:
                    self._sweep()
            self._learn_ticket(event)
        elif isinstance(event, ChangeEvent):
            self._changes.add(change_item(event))
        elif isinstance(event, MonitoringEvent) and event.status == "firing":
            self._alerts.add(alert_item(event))

    def learn_many(self, events: Iterable[Event]) -> None:
        """Learn from events in order; same result as calling :meth:`learn_one` on each."""
        for event in events:
            self.learn_one(event)

    def _learn_ticket(self, ev: TicketEvent) -> None:
        store = self._store
        gid = store.tickets.get(ev.ticket_id)
        if gid is not None:  # a later event of a known incident: update its signals only
            g = store.get(gid)
            if g is not None:
                m = g.members.get(ev.ticket_id)
                # only linked members count in the problem's signals (a pending one just keeps its own)
                if m is not None and update_member(g if m.linked_at else None, m, ev, self._targets) and m.linked_at:
                    self._dirty[g.gid] = None
            return
        opened = (ev.opened_at or ev.event_time).timestamp()
        if opened < self._now - self._window:
            # an incident first seen long after it was opened (or whose group was forgotten):
            # it cannot be in the window, and counting it now would count it twice
            self.stale_events += 1
            return
        ctx = context_of(ev)
        vec: dict[int, float] = {}
        rare: list[int] = []
        words: list[str] = []
        if ev.description:
            words = _text.tokens(ev.description)
            vec = _text.text_vector(ev.description)
            rare = _text.rare_keys(vec, self._df)
            self._df = _text.count_df(self._df, vec)
        keys = blocking_keys(ctx, rare)
        sig = signature(ctx)
        best, best_sim = store.best_match(ctx, keys, vec, self._weights, self._text_weight, sig, self._threshold)
        if best is None or best_sim < self._threshold:
            best = Group(gid=problem_id(ev.source, ev.ticket_id), source=ev.source, rep=ctx, keys=keys,
                         sig=sig or problem_id(ev.source, ev.ticket_id), created=self._now,
                         first=opened, last=opened, matches=[0] * len(FIELDS))  # fmt: skip
            store.index(best)
            # a coded signature is watched from its first incident; a text-only group (its own
            # signature) from the detector's start: "no similar text before" is evidence
            self._rates.seen(best.sig, opened if best.sig != best.gid else self._rates.start)
            best_sim = 1.0
        self._join(store.resolve(best), ev, ctx, opened, best_sim, vec, words)

    def _join(self, g: Group, ev: TicketEvent, ctx: tuple[str, ...], opened: float, sim: float,
              vec: dict[int, float], words: list[str]) -> None:  # fmt: skip
        tid = ev.ticket_id
        self._store.touch(g)
        m = Member(t=opened)
        update_member(None, m, ev, self._targets)
        g.add_member(tid, m, self._targets)
        self._store.remember(tid, g.gid, self._now)
        g.absorb(ctx, sim, vec, words, opened)
        if len(g.members) > self._max_members:
            # fold the oldest out; its id stays in the store so its later events are not new incidents
            g.remove_member(next(iter(g.members)), self._targets)
        self._judge(g, ev.ticket_id, m)

    # ------------------------------------------------------------------ state
    def _sweep(self) -> None:
        """Expire idle groups, end episodes back at baseline, learn service baselines from live groups."""
        self._store.expire(self._now, self._window, self._memory, self._on_leave, self._on_drop)
        self._sweep_episodes()
        self._changes.expire(self._now)
        self._alerts.expire(self._now)
        self._next_sweep = self._now + self._window / 48

    @property
    def active_groups(self) -> int:
        """Groups currently inside the window."""
        return len(self._store.active)

    @property
    def tracked_groups(self) -> int:
        """All groups in memory (active plus retained problems)."""
        return len(self._store.active) + len(self._store.retained)

    # ------------------------------------------------------------------ outputs
    def pop_updates(self) -> list[ProblemRecord]:
        """Problem records created or changed since the last call, one (new version) per problem."""
        out, self._outbox = self._outbox, []
        for gid in self._dirty:
            g = self._store.get(gid)
            if g is not None and (g.status or g.merged_into):
                out.append(self._record(g))
        self._dirty.clear()
        return out

    def _record(self, g: Group) -> ProblemRecord:
        g.version += 1
        return build_record(g, RecordContext(
            now=self._now, window=self._window, baseline=g.expected, rule_text=self.rule.describe(g.expected),
            changes=self._changes, alerts=self._alerts, max_ids=self.params["max_linked_ids"],
            change_lookback=self.params["change_lookback_hours"] * 3600.0,
            alert_lookback=self.params["alert_lookback_hours"] * 3600.0,
        ))  # fmt: skip

    def pop_links(self) -> list[Link]:
        """``(incident_id, problem_id, linked_at)`` events since the last call (``record_links=True``)."""
        links, self._links = self._links, []
        return links

    # ------------------------------------------------------------------ snapshot
    def snapshot(self) -> bytes:
        """The whole state as msgpack bytes (restore with :meth:`from_snapshot`)."""
        s = self._store
        active, retained = list(s.active.values()), list(s.retained.values())
        return msgspec.msgpack.encode(DetectorState(
            params=self.params, active=active, retained=retained,
            baseline=self._baseline, rates=self._rates, changes=self._changes, alerts=self._alerts, df=self._df,
            by_key=s.by_key, tickets=s.tickets, ticket_times=list(s.ticket_times), now=self._now,
            next_sweep=self._next_sweep, next_live=self._next_live, dirty=list(self._dirty), outbox=self._outbox,
            exact=list(s.exact.items()), episodes=list(self._episodes), stale_events=self.stale_events,
            links=self._links,
            feedback_offsets=[utc_offset(n) for n in feedback_notes(active, retained, self._outbox)],
        ))  # fmt: skip

    @classmethod
    def from_snapshot(cls, data: bytes) -> RecurringIncidentDetector:
        """A detector in exactly the state :meth:`snapshot` captured (validated while decoding)."""
        snap = msgspec.msgpack.decode(data, type=DetectorState)
        restore_offsets(feedback_notes(snap.active, snap.retained, snap.outbox), snap.feedback_offsets)
        det = cls(**snap.params)
        det._store.restore(snap.active, snap.retained, snap.by_key, snap.tickets, snap.ticket_times, snap.exact)
        # the order episodes are swept in is the order their ends feed the background rates
        episodes = snap.episodes
        if episodes is None:  # an older snapshot: the groups' order is the best guess
            episodes = [g.gid for g in (*snap.active, *snap.retained) if g.in_episode]
        det._episodes = dict.fromkeys(episodes)
        det.stale_events, det._links = snap.stale_events, snap.links
        det._baseline, det._rates, det._changes, det._alerts = snap.baseline, snap.rates, snap.changes, snap.alerts
        det._df, det._now, det._next_sweep, det._next_live = snap.df, snap.now, snap.next_sweep, snap.next_live
        det._dirty, det._outbox = dict.fromkeys(snap.dirty), snap.outbox
        return det
