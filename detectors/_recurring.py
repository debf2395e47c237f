"""Online grouping of similar incidents into problem records (see :class:`RecurringIncidentDetector`)."""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Mapping
from typing import Any

import msgspec

from opsintel.events import ChangeEvent, Event, MonitoringEvent, TicketEvent
from opsintel.problems import Feedback, FeedbackAction, FeedbackNote, ProblemRecord, ProblemStatus

from . import _text
from ._evidence import DEFAULT_RESOLUTION_TARGETS_HOURS, ContextIndex, alert_item, change_item
from ._group import Group, Member, update_member
from ._raise_rule import RaiseRule, ServiceBaseline
from ._records import RecordContext, build_record, problem_id
from ._similarity import FIELDS, blend, blocking_keys, context_of, field_similarity, weights_from

_RAISED = frozenset({"candidate", "open", "confirmed"})
#: a link event for offline evaluation: (incident id, problem id or "" when unlinked, linked at)
Link = tuple[str, str, float]


class _Snapshot(msgspec.Struct):
    params: dict[str, Any]
    active: list[Group]
    retained: list[Group]
    baseline: ServiceBaseline
    changes: ContextIndex
    alerts: ContextIndex
    df: dict[int, int]
    by_key: dict[str, list[str]]
    tickets: dict[str, str]
    ticket_times: list[tuple[float, str]]
    now: float
    next_sweep: float
    dirty: list[str]


class RecurringIncidentDetector:
    """Group similar incidents in a sliding window and raise / update problem records.

    River-shaped: feed every event (ticket, change, alert) in time order to :meth:`learn_one`;
    collect the problem records that changed with :meth:`pop_updates`; apply human decisions
    with :meth:`apply_feedback`; :meth:`snapshot` / :meth:`from_snapshot` carry the state across
    restarts. An incident counts once: its first event places it in a group, later events of
    the same ``ticket_id`` only update its signals (resolution, reopen, knowledge article).

    Parameters
    ----------
    window_hours
        Sliding window: a group expires when it got no incident for this long, and the raise
        rule counts incidents within it. Default one week (see ``BENCHMARKS.md``).
    similarity_threshold
        Minimum similarity (0..1) for an incident to join a group, else it seeds a new one.
    min_count, baseline_factor, reraise_factor
        The raise rule (:class:`~detectors._raise_rule.RaiseRule`).
    field_weights
        Weights of the context fields, partial mapping over ``detectors._similarity.FIELDS``.
    text_weight
        Weight of the free-text cosine when both sides have text.
    max_candidates
        Groups kept per blocking key (the newest), bounding the work per incident.
    max_members
        Incidents whose signals a group tracks (the oldest are folded out beyond it).
    max_linked_ids
        Incident ids listed in a record (``incident_count`` stays exact).
    memory_windows
        Raised or decided groups are remembered this many windows after their last incident,
        so a recurrence updates the same problem and a rejected group stays rejected.
    change_lookback_hours, alert_lookback_hours
        How far before the first incident a change / an alert on the same CI or service counts.
    resolution_targets_hours
        Priority rank -> resolution target, for "SLA resolution met".
    record_links
        Keep ``(incident, problem, linked_at)`` events for :meth:`pop_links` (offline evaluation).

    Examples
    --------
    >>> from datetime import datetime, timedelta, timezone
    >>> t0 = datetime(2016, 3, 1, tzinfo=timezone.utc)
    >>> det = RecurringIncidentDetector()
    >>> for i in range(4):
    ...     det.learn_one(TicketEvent(event_id=f"e{i}", source="servicenow", ticket_id=f"INC{i}",
    ...         kind="created", version=0, event_time=t0 + timedelta(hours=i),
    ...         service="Category 55", category="Category 55", subcategory="Subcategory 170",
    ...         symptom="Symptom 72", location=f"Location {i}"))
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
        if max_candidates < 1 or max_members < 1 or memory_windows < 1:
            raise ValueError("max_candidates and max_members must be >= 1, memory_windows >= 1")
        self.params: dict[str, Any] = {
            "window_hours": window_hours, "similarity_threshold": similarity_threshold,
            "min_count": min_count, "baseline_factor": baseline_factor, "reraise_factor": reraise_factor,
            "field_weights": dict(field_weights or {}), "text_weight": text_weight,
            "max_candidates": max_candidates, "max_members": max_members, "max_linked_ids": max_linked_ids,
            "memory_windows": memory_windows, "change_lookback_hours": change_lookback_hours,
            "alert_lookback_hours": alert_lookback_hours,
            "resolution_targets_hours": {int(k): float(v) for k, v in
                                         (resolution_targets_hours or DEFAULT_RESOLUTION_TARGETS_HOURS).items()},
            "record_links": record_links,
        }  # fmt: skip
        self.rule = RaiseRule(min_count=min_count, baseline_factor=baseline_factor, reraise_factor=reraise_factor)
        self._weights = weights_from(field_weights)
        self._threshold = similarity_threshold
        self._text_weight = text_weight
        self._window = window_hours * 3600.0
        self._memory = self._window * memory_windows
        self._max_candidates = max_candidates
        self._max_members = max_members
        self._targets: dict[int, float] = self.params["resolution_targets_hours"]
        self._record_links = record_links
        lookback = max(change_lookback_hours, alert_lookback_hours) * 3600.0
        self._active: dict[str, Group] = {}  # ordered by last incident (oldest first)
        self._retained: dict[str, Group] = {}  # raised / decided groups past the window
        self._tickets: dict[str, str] = {}  # incident -> group, forgotten after the memory horizon
        self._ticket_times: deque[tuple[float, str]] = deque()
        self.stale_events = 0  #: first-seen events of incidents opened before the window (ignored)
        self._by_key: dict[str, list[str]] = {}
        self._exact: dict[tuple[str, ...], str] = {}  # context -> newest group seeded with it
        self._df: dict[int, int] = {}
        self._baseline = ServiceBaseline()
        self._changes = ContextIndex(retention=self._window + lookback)
        self._alerts = ContextIndex(retention=self._window + lookback)
        self._dirty: dict[str, None] = {}
        self._links: list[Link] = []
        self._now = 0.0
        self._next_sweep = 0.0

    # ------------------------------------------------------------------ learning
    def learn_one(self, event: Event) -> None:
        """Learn from one event (ticket, change or alert); events should arrive in time order."""
        t = event.event_time.timestamp()
        if t > self._now:
            self._now = t
            if t >= self._next_sweep:
                self._sweep()
        if type(event) is TicketEvent or isinstance(event, TicketEvent):
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
        gid = self._tickets.get(ev.ticket_id)
        if gid is not None:  # a later event of a known incident: update its signals only
            g = self._active.get(gid) or self._retained.get(gid)
            if g is not None:
                m = g.members.get(ev.ticket_id)
                if m is not None and update_member(g, m, ev, self._targets) and g.status:
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
            self._count_df(vec)
        keys = blocking_keys(ctx, rare)
        best: Group | None = None
        best_sim = 0.0
        seen: set[str] = set()
        exact = None if vec else self._exact.get(ctx)
        if exact is not None and (best := self._get(exact)) is not None:
            best_sim = 1.0  # same context, no text: nothing can score higher
            keys = []
        for key in keys:
            for cand in self._by_key.get(key, ()):
                if cand in seen:
                    continue
                seen.add(cand)
                g = self._get(cand)
                if g is None:
                    continue
                fs, fw = field_similarity(ctx, g.rep, self._weights)
                ts = _text.cosine(vec, g.centroid) if vec and g.centroid else None
                sim = blend(fs, fw, ts, self._text_weight)
                if sim > best_sim:
                    best, best_sim = g, sim
        if best is None or best_sim < self._threshold:
            best = self._new_group(ev, ctx, keys, opened)
            best_sim = 1.0
        target = self._resolve(best)
        self._join(target, ev, ctx, opened, best_sim, vec, words)

    def _new_group(self, ev: TicketEvent, ctx: tuple[str, ...], keys: list[str], opened: float) -> Group:
        g = Group(gid=problem_id(ev.source, ev.ticket_id), source=ev.source, rep=ctx, keys=keys,
                  created=self._now, first=opened, last=opened, matches=[0] * len(FIELDS))  # fmt: skip
        self._active[g.gid] = g
        self._exact[ctx] = g.gid
        for key in keys:
            ids = self._by_key.setdefault(key, [])
            ids.append(g.gid)
            if len(ids) > self._max_candidates:
                del ids[0]
        return g

    def _join(self, g: Group, ev: TicketEvent, ctx: tuple[str, ...], opened: float, sim: float,
              vec: dict[int, float], words: list[str]) -> None:  # fmt: skip
        if g.gid in self._active:
            self._active[g.gid] = self._active.pop(g.gid)  # keep the dict ordered by activity
        else:
            self._retained.pop(g.gid, None)
            self._active[g.gid] = g
        m = Member(t=opened)
        g.add_member(ev.ticket_id, m, self._targets)
        update_member(g, m, ev, self._targets)
        self._tickets[ev.ticket_id] = g.gid
        self._ticket_times.append((self._now, ev.ticket_id))
        g.count += 1
        g.sim_sum += sim
        for i, (a, b) in enumerate(zip(ctx, g.rep, strict=True)):
            if a and a == b:
                g.matches[i] += 1
        if vec:
            _text.add_to_centroid(g.centroid, vec, 64)
            _text.add_terms(g.terms, words, 32)
        g.add_time(opened)
        if len(g.members) > self._max_members:
            # fold the oldest out; its id stays in ``_tickets`` so its later events are not new incidents
            g.remove_member(next(iter(g.members)), self._targets)
        in_window = g.count_in_window(self._now, self._window)
        g.peak = max(g.peak, in_window)
        if g.status in _RAISED:
            self._link(g, ev.ticket_id, m)
            self._dirty[g.gid] = None
        elif g.status in ("rejected", "resolved"):
            if self.rule.materially_changed(in_window, g.decision_count):
                self._raise(g)
        elif not g.status and in_window >= self.rule.threshold(self._baseline.get(g.rep[0])):
            self._raise(g)

    def _raise(self, g: Group) -> None:
        g.status = ProblemStatus.CANDIDATE.value
        g.raised_at = g.raised_at or self._now
        self._dirty[g.gid] = None
        for tid, m in g.members.items():
            self._link(g, tid, m)

    def _link(self, g: Group, ticket_id: str, m: Member) -> None:
        if not m.linked_at:
            m.linked_at = max(self._now, m.t)
        if self._record_links:
            self._links.append((ticket_id, g.gid, m.linked_at))

    def _count_df(self, vec: dict[int, float]) -> None:
        for h in vec:
            self._df[h] = self._df.get(h, 0) + 1
        if len(self._df) > 200_000:  # bounded: halve the counts, forget the rare ones
            self._df = {h: n // 2 for h, n in self._df.items() if n > 1}

    # ------------------------------------------------------------------ state
    def _get(self, gid: str) -> Group | None:
        return self._active.get(gid) or self._retained.get(gid)

    def _resolve(self, g: Group) -> Group:
        """Follow merges to the surviving group (a group merged into an expired one is itself)."""
        for _ in range(32):
            if not g.merged_into:
                return g
            target = self._get(g.merged_into)
            if target is None:
                return g
            g = target
        return g

    def _sweep(self) -> None:
        """Expire groups with no incident within the window (raised ones are retained longer)."""
        cutoff = self._now - self._window
        while self._active:
            g = next(iter(self._active.values()))
            if g.last >= cutoff:
                break
            del self._active[g.gid]
            g.times.clear()
            if g.status or g.merged_into:
                self._retained[g.gid] = g
            else:
                self._drop(g)
        cutoff = self._now - self._memory
        while self._retained:
            g = next(iter(self._retained.values()))
            if g.last >= cutoff:
                break
            del self._retained[g.gid]
            self._drop(g)
        times = self._ticket_times
        while times and times[0][0] < cutoff:
            _, tid = times.popleft()
            self._tickets.pop(tid, None)
        self._changes.expire(self._now)
        self._alerts.expire(self._now)
        self._next_sweep = self._now + self._window / 48

    def _drop(self, g: Group) -> None:
        if not g.status:
            self._baseline.observe(g.rep[0], g.peak)
        for key in g.keys:
            ids = self._by_key.get(key)
            if ids and g.gid in ids:
                ids.remove(g.gid)
                if not ids:
                    del self._by_key[key]
        if self._exact.get(g.rep) == g.gid:
            del self._exact[g.rep]
        self._dirty.pop(g.gid, None)

    @property
    def active_groups(self) -> int:
        """Groups currently inside the window."""
        return len(self._active)

    @property
    def tracked_groups(self) -> int:
        """All groups in memory (active plus retained problems)."""
        return len(self._active) + len(self._retained)

    # ------------------------------------------------------------------ outputs
    def pop_updates(self) -> list[ProblemRecord]:
        """Problem records created or changed since the last call, one (new version) per problem."""
        out = []
        for gid in self._dirty:
            g = self._get(gid)
            if g is None or not (g.status or g.merged_into):
                continue
            g.version += 1
            out.append(build_record(g, self._record_context(g)))
        self._dirty.clear()
        return out

    def pop_links(self) -> list[Link]:
        """``(incident_id, problem_id, linked_at)`` events since the last call (``record_links=True``)."""
        links, self._links = self._links, []
        return links

    def _record_context(self, g: Group) -> RecordContext:
        baseline = self._baseline.get(g.rep[0])
        return RecordContext(
            now=self._now, window=self._window, baseline=baseline, rule_text=self.rule.describe(baseline),
            changes=self._changes, alerts=self._alerts, max_ids=self.params["max_linked_ids"],
            change_lookback=self.params["change_lookback_hours"] * 3600.0,
            alert_lookback=self.params["alert_lookback_hours"] * 3600.0,
        )  # fmt: skip

    # ------------------------------------------------------------------ feedback
    def apply_feedback(self, fb: Feedback) -> bool:
        """Apply a human decision; returns ``False`` when the problem is unknown (expired)."""
        g = self._get(fb.problem_id)
        if g is None or (g.merged_into and fb.action is not FeedbackAction.REOPEN):
            return False
        if fb.action is FeedbackAction.MERGE:
            target = self._get(fb.into)
            if target is None:
                return False
            self._merge(g, self._resolve(target))
        elif fb.action is FeedbackAction.SPLIT:
            self._split(g, fb)
        else:
            status = {
                FeedbackAction.OPEN: "open", FeedbackAction.CONFIRM: "confirmed",
                FeedbackAction.REJECT: "rejected", FeedbackAction.RESOLVE: "resolved",
                FeedbackAction.REOPEN: "open",
            }[fb.action]  # fmt: skip
            if status in ("rejected", "resolved"):
                g.decision_count = max(g.count_in_window(self._now, self._window), len(g.times), 1)
            g.status = status
            g.merged_into = "" if fb.action is FeedbackAction.REOPEN else g.merged_into
            g.raised_at = g.raised_at or self._now
        g.feedback = FeedbackNote(action=fb.action, by=fb.by, at=fb.at, note=fb.note)
        self._dirty[g.gid] = None
        return True

    def _merge(self, src: Group, dst: Group) -> None:
        if src is dst:
            return
        for tid in list(src.members):
            m = src.remove_member(tid, self._targets)
            assert m is not None
            dst.add_member(tid, m, self._targets)
            self._tickets[tid] = dst.gid
            dst.add_time(m.t)
            if dst.status in _RAISED:
                self._link(dst, tid, m)
        for i, (a, b) in enumerate(zip(src.rep, dst.rep, strict=True)):
            if a and a == b:
                dst.matches[i] += src.matches[i]
        dst.count += src.count
        dst.sim_sum += src.sim_sum
        if not dst.status or dst.status in ("rejected", "resolved"):
            dst.status = "open"
            dst.raised_at = dst.raised_at or self._now
        src.status, src.merged_into = "merged", dst.gid
        self._dirty[dst.gid] = None

    def _split(self, g: Group, fb: Feedback) -> None:
        moved = [tid for tid in fb.incident_ids if tid in g.members]
        target = self._get(fb.into) if fb.into else None
        if target is None and moved:
            first = g.members[moved[0]]
            target = Group(gid=problem_id(g.source, moved[0]), source=g.source, rep=g.rep, keys=[],
                           created=self._now, first=first.t, last=first.t, matches=[0] * len(FIELDS),
                           status="open", raised_at=self._now)  # fmt: skip
            self._active[target.gid] = target  # not indexed: it has no signature of its own
        for tid in moved:
            m = g.remove_member(tid, self._targets)
            assert m is not None and target is not None
            g.excluded.append(tid)
            g.count -= 1
            target.add_member(tid, m, self._targets)
            target.add_time(m.t)
            target.count += 1
            target.sim_sum += 1.0
            self._tickets[tid] = target.gid
            self._link(target, tid, m)
        g.times = sorted(m.t for m in g.members.values() if m.t > self._now - self._window)
        if target is not None:
            self._dirty[target.gid] = None

    # ------------------------------------------------------------------ snapshot
    def snapshot(self) -> bytes:
        """The whole state as msgpack bytes (restore with :meth:`from_snapshot`)."""
        return msgspec.msgpack.encode(_Snapshot(
            params=self.params, active=list(self._active.values()), retained=list(self._retained.values()),
            baseline=self._baseline, changes=self._changes, alerts=self._alerts, df=self._df,
            by_key=self._by_key, tickets=self._tickets, ticket_times=list(self._ticket_times),
            now=self._now, next_sweep=self._next_sweep, dirty=list(self._dirty),
        ))  # fmt: skip

    @classmethod
    def from_snapshot(cls, data: bytes) -> RecurringIncidentDetector:
        """A detector in exactly the state :meth:`snapshot` captured (validated while decoding)."""
        snap = msgspec.msgpack.decode(data, type=_Snapshot)
        params = dict(snap.params)
        det = cls(**params)
        det._active = {g.gid: g for g in snap.active}
        det._retained = {g.gid: g for g in snap.retained}
        for g in sorted((*snap.active, *snap.retained), key=lambda g: g.created):  # the newest seed wins
            if g.keys:
                det._exact[g.rep] = g.gid
        det._by_key, det._tickets, det._ticket_times = snap.by_key, snap.tickets, deque(snap.ticket_times)
        det._baseline, det._changes, det._alerts, det._df = snap.baseline, snap.changes, snap.alerts, snap.df
        det._now, det._next_sweep = snap.now, snap.next_sweep
        det._dirty = dict.fromkeys(snap.dirty)
        return det
