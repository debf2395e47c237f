"""Human decisions on recurring-incident problems: open, confirm, reject, resolve, reopen, merge, split.

A mixin of :class:`~detectors.RecurringIncidentDetector`, kept apart so the detector module holds
only the learning path. Semantics a problem manager relies on:

* reject / resolve: the group stays quiet until it changes materially (its window count reaches
  ``reraise_factor`` times the count at the decision); its open episode ends;
* reopen: back to ``open`` (also undoes a merge);
* merge: the source's incidents move to the target, which becomes at least ``open``; later
  incidents like the source land on the target;
* split: the listed incidents move to a new ``open`` problem (or to ``into``) and their later
  events stay there.
"""

from __future__ import annotations

from opsintel.problems import Feedback, FeedbackAction, FeedbackNote

from ._episodes import EpisodeMixin
from ._group import Group, Member
from ._records import problem_id
from ._similarity import FIELDS

RAISED = frozenset({"candidate", "open", "confirmed"})
_STATUS = {
    FeedbackAction.OPEN: "open", FeedbackAction.CONFIRM: "confirmed", FeedbackAction.REJECT: "rejected",
    FeedbackAction.RESOLVE: "resolved", FeedbackAction.REOPEN: "open",
}  # fmt: skip


class FeedbackMixin(EpisodeMixin):
    _window: float

    def apply_feedback(self, fb: Feedback) -> bool:
        """Apply a human decision; returns ``False`` when the problem is unknown (expired)."""
        g = self._store.get(fb.problem_id)
        if g is None or (g.merged_into and fb.action is not FeedbackAction.REOPEN):
            return False
        if fb.action is FeedbackAction.MERGE:
            target = self._store.get(fb.into)
            if target is None:
                return False
            self._merge(g, self._store.resolve(target))
        elif fb.action is FeedbackAction.SPLIT:
            self._split(g, fb)
        else:
            status = _STATUS[fb.action]
            if status in ("rejected", "resolved"):
                g.decision_count = max(g.count_in_window(self._now, self._window), len(g.times), 1)
                self._end_episode(g)
            g.status = status
            g.merged_into = "" if fb.action is FeedbackAction.REOPEN else g.merged_into
            g.raised_at = g.raised_at or self._now
        g.feedback = FeedbackNote(action=fb.action, by=fb.by, at=fb.at, note=fb.note)
        self._dirty[g.gid] = None
        return True

    def _merge(self, src: Group, dst: Group) -> None:
        if src is dst:
            return
        moved: list[tuple[str, Member]] = []
        for tid in list(src.members):
            m = src.remove_member(tid, self._targets)
            assert m is not None
            if m.linked_at:  # its link to ``src`` ends (the record says so: ``unlinked_incident_ids``)
                src.excluded.append(tid)
            dst.add_member(tid, m, self._targets)
            self._store.tickets[tid] = dst.gid
            dst.add_time(m.t)
            moved.append((tid, m))
        for i, (a, b) in enumerate(zip(src.rep, dst.rep, strict=True)):
            if a and a == b:
                dst.matches[i] += src.matches[i]
        dst.count += src.count
        dst.sim_sum += src.sim_sum
        if not dst.status or dst.status in ("rejected", "resolved"):
            dst.status = "open"
            dst.raised_at = dst.raised_at or self._now
        if src.in_episode or not dst.episode:
            self._begin_episode(dst)  # links dst's pending incidents; no-op when already open
        for tid, m in moved:  # the manager said these belong together: link them all
            self._link(dst, tid, m)
        self._end_episode(src)
        src.status, src.merged_into, src.pending, src.linked = "merged", dst.gid, [], 0
        self._dirty[dst.gid] = None

    def _split(self, g: Group, fb: Feedback) -> None:
        moved = [tid for tid in fb.incident_ids if tid in g.members]
        target = self._store.get(fb.into) if fb.into else None
        if target is None and moved:
            first = g.members[moved[0]]
            target = Group(gid=problem_id(g.source, moved[0]), source=g.source, rep=g.rep, keys=[], sig=g.sig,
                           created=self._now, first=first.t, last=first.t, matches=[0] * len(FIELDS),
                           status="open", raised_at=self._now, episode=1)  # fmt: skip
            self._store.active[target.gid] = target  # not indexed: it has no signature of its own
        for tid in moved:
            m = g.remove_member(tid, self._targets)
            assert m is not None and target is not None
            if tid in g.pending:
                g.pending.remove(tid)
            elif m.linked_at:
                g.linked -= 1
                g.excluded.append(tid)
            g.count -= 1
            target.add_member(tid, m, self._targets)
            target.add_time(m.t)
            target.count += 1
            target.sim_sum += 1.0
            self._store.tickets[tid] = target.gid
            self._link(target, tid, m)
        g.times = sorted(m.t for m in g.members.values() if m.t > self._now - self._window)
        if target is not None:
            self._dirty[target.gid] = None
