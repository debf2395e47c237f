"""Sustained trend anomalies as problem records: episodes, stable ids, human feedback.

A part of :class:`~detectors.TrendMonitor`, kept apart so the monitor module holds only the
bucketing and scoring path. Semantics a problem manager relies on:

* an *episode* is a run of consecutive anomalous intervals of one service × metric in one
  direction; it raises one ``kind="trend"`` record when it reaches ``min_intervals`` (the rule of
  :class:`~detectors.SustainedAnomalyTracker`), and every further anomalous interval of the run
  updates that record (``version + 1``); a normal interval or a change of direction ends it, and
  the next episode gets a new ``problem_id``;
* reject: the record stops updating and the same service × metric × direction is not raised
  again for ``reject_quiet_intervals`` intervals (its anomaly rows are still written);
* resolve / merge: the record stops updating; a later episode raises a new record;
* confirm / open / reopen: the status changes, the record keeps updating while the run lasts.
"""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime
from typing import Any

import msgspec

from opsintel.problems import (
    Evidence,
    Feedback,
    FeedbackAction,
    FeedbackNote,
    ProblemKind,
    ProblemRecord,
    ProblemStatus,
)

from ._seasonal import AnomalyVerdict

#: how a metric reads in a title or a rule
METRIC_WORDS = {
    "tickets_opened": "tickets opened", "tickets_resolved": "tickets resolved",
    "time_to_resolve_h": "mean time to resolve (h)", "sla_breaches": "SLA breaches",
    "reassignments": "reassignments", "reopens": "reopens", "alerts": "monitoring alerts",
}  # fmt: skip
_STATUS = {
    FeedbackAction.OPEN: "open", FeedbackAction.CONFIRM: "confirmed", FeedbackAction.REJECT: "rejected",
    FeedbackAction.RESOLVE: "resolved", FeedbackAction.REOPEN: "open", FeedbackAction.MERGE: "merged",
}  # fmt: skip
_KIND: ProblemKind = "trend"


class Episode(msgspec.Struct, array_like=True):
    """The current anomalous run of one series (``problem_id`` empty until raised or once detached)."""

    direction: str
    start: int  #: interval index of the run's first anomalous interval
    last_step: int  #: series step (points fed) of its latest anomalous interval
    length: int = 0
    problem_id: str = ""
    detached: bool = False  #: rejected / resolved / merged / muted: this run raises nothing more


class TrendProblem(msgspec.Struct, array_like=True):
    """What a trend record is rebuilt from (interval indexes; the latest verdict's numbers)."""

    problem_id: str
    service: str
    metric: str
    direction: str
    source: str
    status: str
    version: int
    first: int
    last: int
    raised: int
    updated: int
    intervals: int
    observed: float
    expected: float
    lower: float
    upper: float
    score: float
    peak_score: float
    live: bool = True
    merged_into: str = ""
    feedback: FeedbackNote | None = None


class EpisodeState(msgspec.Struct, array_like=True):
    episodes: list[tuple[str, str, Episode]]
    problems: list[TrendProblem]
    muted: list[tuple[str, str, str, int]]
    now: int
    suppressed: int


def trend_problem_id(service: str, metric: str, direction: str, start: datetime) -> str:
    """Stable id of the episode of ``service`` × ``metric`` × ``direction`` that began at ``start``.

    >>> t = datetime(2016, 3, 1, 9, tzinfo=UTC)
    >>> trend_problem_id("payroll", "tickets_opened", "drop", t) == trend_problem_id("payroll", "tickets_opened",
    ...                                                                              "drop", t)
    True
    >>> trend_problem_id("payroll", "tickets_opened", "drop", t)[:4]
    'PRB-'
    """
    key = f"trend|{service}|{metric}|{direction}|{start.isoformat()}"
    return f"PRB-{hashlib.blake2b(key.encode(), digest_size=8).hexdigest()}"


class TrendEpisodes:
    """Episodes, trend problem records and feedback of one :class:`~detectors.TrendMonitor`."""

    def __init__(self, *, min_intervals: int, reject_quiet_intervals: int, retain_intervals: int,
                 interval_s: float, detector_name: str) -> None:
        if min_intervals < 1:
            raise ValueError("sustain_intervals must be >= 1")
        self.min_intervals = min_intervals
        self.reject_quiet = reject_quiet_intervals
        self.retain = retain_intervals
        self.interval_s = interval_s
        self.detector_name = detector_name
        self.episodes: dict[tuple[str, str], Episode] = {}
        self.problems: dict[str, TrendProblem] = {}
        self.muted: dict[tuple[str, str, str], int] = {}  #: -> first interval index raising again
        self.now = -1  #: the newest closed interval index
        self.suppressed = 0  #: episodes that reached the minimum while muted by a reject
        #: records changed since the last pop; a record pruned before that pop keeps its last version here
        self._dirty: dict[str, ProblemRecord | None] = {}

    # ------------------------------------------------------------------ learning
    def observe(self, service: str, metric: str, step: int, k: int, v: AnomalyVerdict, source: str) -> None:
        """An anomalous verdict of ``service`` × ``metric`` at series step ``step`` (interval ``k``)."""
        key = (service, metric)
        ep = self.episodes.get(key)
        if ep is not None and (ep.last_step != step - 1 or ep.direction != v.direction):
            self._end(key, ep)
            ep = None
        if ep is None:
            ep = self.episodes[key] = Episode(v.direction, k, step)
        ep.last_step = step
        ep.length += 1
        if ep.detached:
            return
        if ep.problem_id:
            p = self.problems[ep.problem_id]
            p.version += 1
        elif ep.length == self.min_intervals:
            if self.muted.get((service, metric, v.direction), -1) > k:
                ep.detached = True
                self.suppressed += 1
                return
            start = self._dt(ep.start)
            pid = trend_problem_id(service, metric, v.direction, start)
            p = self.problems[pid] = TrendProblem(
                problem_id=pid, service=service, metric=metric, direction=v.direction, source=source,
                status="candidate", version=1, first=ep.start, last=k, raised=k, updated=k, intervals=0,
                observed=0.0, expected=0.0, lower=0.0, upper=0.0, score=0.0, peak_score=0.0)  # fmt: skip
            ep.problem_id = pid
        else:
            return
        p.last = p.updated = k
        p.intervals = ep.length
        p.observed, p.expected, p.score = v.observed, v.expected, v.score
        p.lower, p.upper = v.band
        p.peak_score = max(p.peak_score, v.score)
        self._dirty[p.problem_id] = None

    def end_if_broken(self, service: str, metric: str, steps: int) -> None:
        """End the run of a series whose latest of ``steps`` points was not anomalous."""
        key = (service, metric)
        ep = self.episodes.get(key)
        if ep is not None and ep.last_step < steps - 1:
            self._end(key, ep)

    def forget_service(self, service: str) -> None:
        """Drop the runs of an evicted service (its records stay until they age out)."""
        for key in [key for key in self.episodes if key[0] == service]:
            self._end(key, self.episodes[key])

    def prune(self) -> None:
        """Forget finished records older than ``retain_intervals`` and expired mutes (bounded memory)."""
        horizon = self.now - self.retain
        for pid in [pid for pid, p in self.problems.items() if not p.live and p.last < horizon]:
            if pid in self._dirty:  # changed since the last pop: its last version still goes out
                self._dirty[pid] = self._record(self.problems[pid])
            del self.problems[pid]
        for key in [key for key, until in self.muted.items() if until <= self.now]:
            del self.muted[key]

    def _end(self, key: tuple[str, str], ep: Episode) -> None:
        if ep.problem_id and ep.problem_id in self.problems:
            self.problems[ep.problem_id].live = False
        del self.episodes[key]

    # ------------------------------------------------------------------ feedback
    def apply_feedback(self, fb: Feedback) -> bool:
        """Apply a human decision to a trend record; ``False`` when the id is not one of ours."""
        p = self.problems.get(fb.problem_id)
        if p is None:
            return False
        if fb.action is not FeedbackAction.SPLIT:  # a trend record links no incidents to split out
            p.status = _STATUS[fb.action]
        if fb.action is FeedbackAction.MERGE:
            p.merged_into = fb.into
        elif fb.action is FeedbackAction.REOPEN:
            p.merged_into = ""
        if fb.action in (FeedbackAction.REJECT, FeedbackAction.RESOLVE, FeedbackAction.MERGE):
            ep = self.episodes.get((p.service, p.metric))
            if ep is not None and ep.problem_id == p.problem_id:
                ep.problem_id, ep.detached = "", True
            p.live = False
            if fb.action is FeedbackAction.REJECT:
                self.muted[(p.service, p.metric, p.direction)] = max(self.now, p.last) + 1 + self.reject_quiet
        p.version += 1
        p.feedback = FeedbackNote(action=fb.action, by=fb.by, at=fb.at, note=fb.note)
        self._dirty[p.problem_id] = None
        return True

    # ------------------------------------------------------------------ outputs
    def pop_updates(self) -> list[ProblemRecord]:
        """Records raised or changed since the last call, the latest version of each."""
        out = [self._record(self.problems[pid]) if record is None else record
               for pid, record in self._dirty.items() if record is not None or pid in self.problems]
        self._dirty.clear()
        return out

    def _dt(self, k: int) -> datetime:
        return datetime.fromtimestamp(k * self.interval_s, UTC)

    def _record(self, p: TrendProblem) -> ProblemRecord:
        words = METRIC_WORDS.get(p.metric, p.metric)
        minutes = round(self.interval_s / 60)
        side = "above" if p.direction == "spike" else "below"
        rule = (f"{words} {side} the normal band for {p.intervals} consecutive {minutes}-minute intervals "
                f"(raised at {self.min_intervals})")
        details: dict[str, Any] = {
            "metric": p.metric, "direction": p.direction, "intervals": p.intervals, "observed": p.observed,
            "expected": p.expected, "lower": p.lower, "upper": p.upper, "score": p.score,
            "peak_score": p.peak_score, "interval_minutes": minutes, "detector": self.detector_name,
        }  # fmt: skip
        return ProblemRecord(
            problem_id=p.problem_id, kind=_KIND, version=p.version, status=ProblemStatus(p.status),
            title=f"Sustained {p.direction} in {words}: {p.service}", first_seen=self._dt(p.first),
            last_seen=self._dt(p.last + 1), raised_at=self._dt(p.raised + 1), updated_at=self._dt(p.updated + 1),
            source=p.source, service=p.service, why=Evidence(rule=rule), merged_into=p.merged_into,
            feedback=p.feedback, details=details,
        )  # fmt: skip

    # ------------------------------------------------------------------ state
    def state(self) -> EpisodeState:
        return EpisodeState(episodes=[(s, m, ep) for (s, m), ep in self.episodes.items()],
                            problems=list(self.problems.values()),
                            muted=[(s, m, d, until) for (s, m, d), until in self.muted.items()],
                            now=self.now, suppressed=self.suppressed)  # fmt: skip

    def restore(self, st: EpisodeState) -> None:
        self.episodes = {(s, m): ep for s, m, ep in st.episodes}
        self.problems = {p.problem_id: p for p in st.problems}
        self.muted = {(s, m, d): until for s, m, d, until in st.muted}
        self.now, self.suppressed = st.now, st.suppressed
