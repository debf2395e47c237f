"""One metric series of one service inside :class:`~detectors.TrendMonitor`, and its anomaly rows."""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any, Protocol

import msgspec

from ._record_break import RecordBreakDetector
from ._seasonal import AnomalyVerdict

#: the metrics of every service, in the order they are scored (``tickets_opened`` before ``alerts``:
#: the bypass rule reads the alert verdict at the intervals where tickets dropped)
METRICS = ("tickets_opened", "tickets_resolved", "time_to_resolve_h", "sla_breaches", "reassignments",
           "reopens", "alerts")  # fmt: skip
OPENED, RESOLVED, TTR, SLA, REASSIGNED, REOPENED, ALERTS = range(7)
#: per-interval accumulator of a service: one count per metric (``TTR`` holds the sum of hours),
#: plus the number of resolved tickets with a known opening time (``TTR_N``)
TTR_N = 7
SLOTS = 8


class AnomalyRow(msgspec.Struct, frozen=True, gc=False):  # scalars only: never in a cycle
    """One row of the ClickHouse ``anomalies`` table (fields are exactly ``ANOMALY_COLUMNS``).

    ``event_id`` is a hash of service, metric, interval, detector and kind, so a replay writes
    the same id and the ``ReplacingMergeTree`` folds it (the kind is part of it because a
    ``bypass`` row shares its metric and interval with the ``drop`` row it comes from).
    """

    event_id: str
    service: str
    metric: str
    interval_start: datetime
    observed: float
    expected: float
    lower: float
    upper: float
    score: float
    direction: str
    kind: str  #: ``spike`` | ``drop`` | ``bypass``
    detector: str


def anomaly_row(service: str, metric: str, start: datetime, v: AnomalyVerdict, kind: str,
                detector: str) -> AnomalyRow:
    """The row of verdict ``v`` (deterministic ``event_id``)."""
    key = f"{service}|{metric}|{start.isoformat()}|{detector}|{kind}"
    eid = hashlib.blake2b(key.encode(), digest_size=16).hexdigest()
    lo, hi = v.band
    return AnomalyRow(eid, service, metric, start, v.observed, v.expected, lo, hi, v.score, v.direction, kind,
                      detector)  # fmt: skip


class TrendDetector(Protocol):
    """What the monitor needs of a per-series detector (both seasonal detectors fit)."""

    def learn_one(self, x: float, t: float | None = None) -> None: ...

    def learn_many(self, x: Any, t: Any = None) -> None: ...

    def verdict_one(self, x: float, t: float | None = None) -> AnomalyVerdict | None: ...

    def snapshot(self) -> dict[str, Any]: ...

    def restore(self, state: dict[str, Any]) -> Any: ...


DetectorFactory = Callable[[], TrendDetector]
#: ``(the detector's verdict, the verdict that puts the point in a run or None)``
Scored = tuple[AnomalyVerdict | None, AnomalyVerdict | None]


class Series:
    """The detector of one service × metric, and where its latest point left a run.

    It also knows whether its latest point was part of an anomalous *run*: ``run`` is the
    run's direction (``""`` if none) and ``band`` the normal band of the run's first point, as
    margins below and above the value expected there. A run starts at a point the detector
    flags and goes on while each next point is flagged in the same direction or stays beyond
    that band moved to the point's own expected value (a drop that stays a drop). The moved
    band is needed because the default detector flags the *onset* of a shift only (a level
    reached once is no longer a record, and its baseline's tail widens at once).
    """

    __slots__ = ("band", "born", "detector", "run", "steps")

    def __init__(self, detector: TrendDetector, born: int, steps: int = 0, run: str = "",
                 band: tuple[float, float] = (0.0, 0.0)) -> None:
        self.detector = detector
        self.born = born  #: interval index of the metric's first event: the series starts there
        self.steps = steps  #: points fed to the detector so far
        self.run = run
        self.band = band  #: (margin below, margin above) ``expected`` at the run's first point

    def score(self, xs: list[float], ts: list[float], need: Sequence[int] = ()) -> dict[int, Scored]:
        """Score then learn the points ``xs`` (floats, at POSIX seconds ``ts``), in order.

        Returns, by position, ``(verdict, run verdict)`` for every point that is anomalous or
        in a run, and for the positions in ``need``: the detector's verdict is taken before the
        point is learnt, exactly as ``verdict_one`` then ``learn_one`` per point would. For
        :class:`RecordBreakDetector` the chunk is first scored with ``score_learn_floats`` (4-6x
        faster than a verdict per point; 2x for a single point) and replayed from a copy of the
        state only when something in it is anomalous; other detectors take a verdict per point.
        """
        det = self.detector
        self.steps += len(xs)
        marks: set[int] | range
        if type(det) is RecordBreakDetector:
            state = det.snapshot()
            a = det.alert_exceedance
            threshold = a / (1.0 + a)
            scores = det.score_learn_floats(xs, ts)
            top = max(scores)
            marks = set(need)
            # the common case, nothing anomalous, builds no set (written so that a NaN top,
            # which says nothing about the others, looks at each score)
            if not (top < threshold or top <= 0.0):
                marks.update(i for i, s in enumerate(scores) if s >= threshold and s > 0.0)
            if not marks and not self.run:
                return {}
            det.restore(state)
        else:
            marks = range(len(xs))
        out: dict[int, Scored] = {}
        wanted = set(need)
        run, (below, above), j = self.run, self.band, 0
        for i in range(len(xs)):
            if not run and i not in marks:
                continue
            x, t = xs[i], ts[i]
            if i > j:
                det.learn_many(xs[j:i], ts[j:i])
            v = det.verdict_one(x, t)
            p = None
            if v is not None and v.is_anomaly:
                if v.direction != run:
                    run = v.direction
                    below, above = max(0.0, v.expected - v.band[0]), max(0.0, v.band[1] - v.expected)
                p = v
            elif run and v is not None:
                lo, hi = v.expected - below, v.expected + above
                if (x < lo) if run == "drop" else (x > hi):
                    p = AnomalyVerdict(x, v.expected, (lo, hi), v.score, True, run)  # type: ignore[arg-type]
                else:
                    run = ""
            else:
                run = ""
            det.learn_one(x, t)
            j = i + 1
            if p is not None or i in wanted:
                out[i] = (v, p)
        if j < len(xs):
            det.learn_many(xs[j:], ts[j:])
        self.run, self.band = run, (below, above)
        return out
