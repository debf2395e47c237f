"""The stream-fed trend-anomaly stage: event-time buckets per service, a detector per series."""

from __future__ import annotations

import math
from bisect import bisect_left
from collections import OrderedDict
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

import msgspec

from opsintel.events import ChangeEvent, MonitoringEvent, TicketEvent
from opsintel.problems import Feedback, ProblemRecord

from ._record_break import RecordBreakDetector
from ._seasonal import AnomalyVerdict
from ._signals import BypassRule
from ._trend_problems import EpisodeState, TrendEpisodes
from ._trend_series import (
    ALERTS,
    METRICS,
    OPENED,
    REASSIGNED,
    REOPENED,
    RESOLVED,
    SLA,
    SLOTS,
    TTR,
    TTR_N,
    AnomalyRow,
    DetectorFactory,
    Series,
    TrendDetector,
    anomaly_row,
)

_NO_SERVICE = "(no service)"


class _Service:
    __slots__ = ("accs", "closed", "series", "source")

    def __init__(self, source: str) -> None:
        self.source = source
        self.series: list[Series | None] = [None] * len(METRICS)
        #: the intervals closed since the service was last scored, and its accumulator in each
        #: (``None``: no event): its series' points are read from them when they are scored
        self.closed: list[int] = []
        self.accs: list[list[float] | None] = []


def _points(closed: list[int], accs: list[list[float] | None], times: list[float], m: int,
            born: int) -> tuple[list[int], list[float], list[float]]:
    """Metric ``m``'s points in the ``closed`` intervals (ascending), of a series born at ``born``.

    Every interval from ``born`` on is a point (0 when the service had no event), except for the
    mean time to resolve: only where a resolved ticket had a known opening time. Returns the
    intervals, the values and their times (``times``: the intervals' start, POSIX seconds).
    ``born`` only ever moves to (or a series is only created at) an interval still open, so
    reading it when the points are scored is reading it when each interval closed.
    """
    if m == TTR:
        ks: list[int] = []
        xs: list[float] = []
        ts: list[float] = []
        for k, acc, t in zip(closed, accs, times, strict=True):
            if acc is not None and acc[TTR_N] and k >= born:
                ks.append(k)
                xs.append(acc[TTR] / acc[TTR_N])
                ts.append(t)
        return ks, xs, ts
    if born > closed[0]:
        first = bisect_left(closed, born)
        closed, accs, times = closed[first:], accs[first:], times[first:]
    return closed, [0.0 if acc is None else acc[m] for acc in accs], times


class _SeriesState(msgspec.Struct, array_like=True):
    metric: int
    born: int
    steps: int
    run: str
    band: tuple[float, float]
    detector: dict[str, Any]


class _Snapshot(msgspec.Struct, array_like=True):
    params: dict[str, Any]
    services: list[tuple[str, str, list[_SeriesState]]]
    buckets: list[tuple[int, list[tuple[str, list[float]]]]]
    fingerprints: list[tuple[int, list[str]]]
    next_open: int | None
    max_t: float
    counters: dict[str, int]
    episodes: EpisodeState


#: the default detector's parameters for per-interval counts (see ``detector_params``)
SPARSE_COUNTS: dict[str, Any] = {"blocks": 0}


class TrendMonitor:
    """Per service and metric, event-time interval counts scored by a seasonal detector.

    Events (:class:`~opsintel.events.TicketEvent`, :class:`~opsintel.events.MonitoringEvent`;
    changes are accepted and ignored) go to the **bucket** of their event time, per service:

    =====================  ==================================================================
    ``tickets_opened``     ``created`` events, at ``opened_at`` (else the event time)
    ``tickets_resolved``   ``resolved`` events
    ``time_to_resolve_h``  mean hours ``opened_at`` → resolve event of those (no point if none)
    ``sla_breaches``       ``resolved`` events with ``sla_made is False``
    ``reassignments``      ``reassigned`` events
    ``reopens``            ``reopened`` events
    ``alerts``             firing alerts, at ``starts_at``, once per fingerprint and start
    =====================  ==================================================================

    **Watermark.** Sources deliver out of event-time order (the ServiceNow log comes grouped by
    ticket: a ticket's resolve is weeks ahead of the next ticket's creation), so only
    ``created`` tickets and alert starts move time: the watermark is the newest of those minus
    ``allowed_lateness`` intervals, and every interval that ends at or before it is **closed**.
    Events ahead of the watermark wait in their future bucket (up to ``horizon_days`` ahead of
    the first open interval; beyond that they are dropped and counted in ``dropped_beyond``).
    Events for an interval already closed are **dropped** and counted in ``dropped_late`` (no
    correction is issued: a closed interval's anomaly has been published).

    **Closing.** A closed interval gives every series of every known service one point: counts
    are 0 when nothing happened (a drop to zero is the signal), the mean is skipped when empty.
    A series starts at the interval of its metric's first event (a service that never fired an
    alert has no ``alerts`` series) and is then scored every interval, silent or not. Each
    point is judged *before* it is learnt (the detector's ``verdict_one``, then ``learn_one``),
    so the cold start (the detector's ``warmup`` points) flags nothing. An anomalous point
    becomes an :class:`AnomalyRow` (``kind`` ``spike`` / ``drop``); an anomalous drop of
    ``tickets_opened`` while the service's ``alerts`` did not drop (:class:`BypassRule`) adds a
    ``bypass`` row. A *run* starts at a flagged point and goes on while the next points are
    flagged in the same direction or stay beyond the first point's normal band, moved along
    with the expected value (the default detector flags only the onset of a shift; see
    ``_trend_series.Series``); a run of ``sustain_intervals`` points raises a ``kind="trend"``
    :class:`~opsintel.problems.ProblemRecord`, each further point of the run updates it (see
    ``_trend_problems``).

    Scoring is batched: closed points are scored at the end of :meth:`learn_one` /
    :meth:`learn_many` (or every ``flush_intervals`` closed intervals), which gives the same
    rows and records as scoring each interval as it closes.

    **Memory.** Per series the detector state (~0.5 KB for the default) and the open buckets
    within the horizon. At most ``max_services`` services are kept; a new one evicts the
    service whose last event is oldest (LRU), with its series and runs (``evicted_services``).

    Parameters
    ----------
    interval_minutes
        Bucket width (60: hourly, what the seasonal baselines' hour-of-day profile expects).
    allowed_lateness
        Intervals the watermark trails the newest ticket creation / alert start (2: an
        adapter's batch or a slow ITSM export can deliver a little out of order).
    horizon_days
        How far ahead of the watermark events are kept (45: most ServiceNow resolves arrive
        within it; the rest are weeks-long tails that would otherwise hold buckets open).
    sustain_intervals
        Consecutive anomalous intervals that raise a trend problem (3: one stray hour is noise,
        three in a row is a state; the SustainedAnomalyTracker default).
    reject_quiet_intervals
        After a reject, intervals during which the same service × metric × direction raises
        nothing (168: a week of hours).
    retain_intervals
        Finished trend records are forgotten (feedback then returns ``False``) this many
        intervals after their last anomalous interval (720: 30 days of hours).
    max_services
        Services kept (LRU); 5,000 × 7 series × ~0.6 KB stays under ~25 MB.
    flush_intervals
        Closed intervals buffered before they are scored inside one :meth:`learn_many`.
    detector_factory
        Makes a per-series detector (``verdict_one``, ``learn_one``, ``learn_many``,
        ``snapshot``, ``restore``); default :class:`RecordBreakDetector` (``detector_params``).
    detector_params
        Parameters of the default detector; default :data:`SPARSE_COUNTS` (no block-of-day
        records: tuned on NAB's dense metric series, they fire on hourly ticket counts whenever
        one or two tickets land in a four-hour block that has only seen 0-1 - on the ServiceNow
        log ``opsintel eval volume`` flags 279 hours with them, 133 without).
    detector_name
        The ``detector`` column of the rows.

    Examples
    --------
    >>> from datetime import datetime, timedelta, timezone
    >>> t0 = datetime(2016, 3, 1, tzinfo=timezone.utc)
    >>> def opened(i, hours):
    ...     return TicketEvent(event_id=f"e{i}", source="demo", ticket_id=f"INC{i}", kind="created",
    ...                        event_time=t0 + timedelta(hours=hours), version=0, service="payroll")
    >>> mon = TrendMonitor(detector_params={"warmup": 48})
    >>> mon.learn_many(opened(i, i / 4) for i in range(4 * 24 * 7))   # a steady week, 4 an hour
    >>> mon.learn_many(opened(10_000 + i, 24 * 7 + i / 40) for i in range(40 * 6))  # then 40 an hour
    >>> [(r.metric, r.kind, r.observed, f"{r.interval_start:%d %H:%M}") for r in mon.pop_anomalies()]
    [('tickets_opened', 'spike', 40.0, '08 00:00')]
    >>> [(p.kind, p.version, p.details["intervals"], p.title) for p in mon.pop_updates()]
    [('trend', 1, 3, 'Sustained spike in tickets opened: payroll')]
    >>> restored = TrendMonitor.from_snapshot(mon.snapshot())
    >>> restored.snapshot() == mon.snapshot()
    True
    """

    def __init__(self, *, interval_minutes: float = 60.0, allowed_lateness: int = 2, horizon_days: float = 45.0,
                 sustain_intervals: int = 3, reject_quiet_intervals: int = 168, retain_intervals: int = 720,
                 max_services: int = 5000, flush_intervals: int = 512,
                 detector_factory: DetectorFactory | None = None, detector_params: dict[str, Any] | None = None,
                 detector_name: str = "record_break") -> None:
        if interval_minutes <= 0 or allowed_lateness < 0 or horizon_days <= 0 or max_services < 1:
            raise ValueError("interval_minutes, horizon_days, max_services must be > 0; allowed_lateness >= 0")
        self.params: dict[str, Any] = {
            "interval_minutes": interval_minutes, "allowed_lateness": allowed_lateness,
            "horizon_days": horizon_days, "sustain_intervals": sustain_intervals,
            "reject_quiet_intervals": reject_quiet_intervals, "retain_intervals": retain_intervals,
            "max_services": max_services, "flush_intervals": flush_intervals,
            "detector_params": dict(SPARSE_COUNTS if detector_params is None else detector_params),
            "detector_name": detector_name,
        }  # fmt: skip
        self._interval = interval_minutes * 60.0
        self._lateness = allowed_lateness * self._interval
        self._horizon = max(1, math.ceil(horizon_days * 86_400.0 / self._interval))
        self._max_services = max_services
        self._flush_every = max(1, flush_intervals)
        params = self.params["detector_params"]
        self._factory: DetectorFactory = detector_factory or (lambda: RecordBreakDetector(**params))
        self._detector_name = detector_name
        self._bypass = BypassRule(require_alert_verdict=True)
        self._services: OrderedDict[str, _Service] = OrderedDict()
        self._buckets: dict[int, dict[str, list[float]]] = {}
        self._fingerprints: dict[int, set[str]] = {}
        self._next: int | None = None  #: the first open interval (None until time first moves)
        self._max_t = -math.inf
        self._closed = 0  #: intervals closed but not yet scored
        self.counters = {"events": 0, "dropped_late": 0, "dropped_beyond": 0, "evicted_services": 0,
                         "intervals_closed": 0}  # fmt: skip
        self._episodes = TrendEpisodes(min_intervals=sustain_intervals, reject_quiet_intervals=reject_quiet_intervals,
                                       retain_intervals=retain_intervals, interval_s=self._interval,
                                       detector_name=detector_name)  # fmt: skip
        self._rows: list[AnomalyRow] = []

    # ------------------------------------------------------------------ learning
    def learn_one(self, event: TicketEvent | MonitoringEvent | ChangeEvent, service: str | None = None) -> None:
        """Bucket one event; closes (and scores) the intervals the watermark passed.

        ``service`` is the series the event counts for (default: the event's own ``service``).
        The stream passes the service its ticket was *opened* against (its Kafka key), so a
        recategorised ticket keeps counting where its partition's monitor owns the series.
        """
        try:
            self._ingest(event, event.service if service is None else service)
        finally:
            self._score()

    def learn_many(self, events: Iterable[TicketEvent | MonitoringEvent | ChangeEvent],
                   services: Iterable[str] | None = None) -> None:
        """Learn events in order; the same rows and records as :meth:`learn_one` on each.

        ``services``, if given, runs beside ``events``: the series each one counts for.
        """
        pairs = ((e, e.service) for e in events) if services is None else zip(events, services, strict=True)
        try:
            for event, service in pairs:
                self._ingest(event, service)
                if self._closed >= self._flush_every:
                    self._score()
        finally:
            self._score()

    def _ingest(self, ev: Any, service: str) -> None:
        cls = type(ev)
        moves_time = False
        if cls is TicketEvent:
            kind = ev.kind
            if kind == "created":
                t = (ev.opened_at or ev.event_time).timestamp()
                slot, moves_time = OPENED, True
            elif kind == "resolved":
                t, slot = ev.event_time.timestamp(), RESOLVED
            elif kind == "reassigned":
                t, slot = ev.event_time.timestamp(), REASSIGNED
            elif kind == "reopened":
                t, slot = ev.event_time.timestamp(), REOPENED
            else:
                return
        elif cls is MonitoringEvent:
            if ev.status != "firing":
                return
            t, slot, moves_time = ev.starts_at.timestamp(), ALERTS, True
        else:
            return
        self.counters["events"] += 1
        k = int(t // self._interval)
        first = self._next if self._next is not None else min(self._buckets, default=k)
        if self._next is not None and k < first:
            self.counters["dropped_late"] += 1
            return
        if k >= first + self._horizon or (self._next is None and k <= first - self._horizon):
            self.counters["dropped_beyond"] += 1
            return
        if slot == ALERTS:
            fps = self._fingerprints.setdefault(k, set())
            fp = f"{ev.fingerprint}|{t}"
            if fp in fps:
                return  # Alertmanager re-sends a firing alert on every group interval
            fps.add(fp)
        service = service or _NO_SERVICE
        svc = self._services.get(service)
        if svc is None:
            svc = self._add_service(service, ev.source)
        else:
            self._services.move_to_end(service)
        bucket = self._buckets.get(k)
        if bucket is None:
            bucket = self._buckets[k] = {}
        acc = bucket.get(service)
        if acc is None:
            acc = bucket[service] = [0.0] * SLOTS
        acc[slot] += 1.0
        self._born(svc, slot, k)
        if slot == RESOLVED:
            if ev.opened_at is not None:
                acc[TTR] += (t - ev.opened_at.timestamp()) / 3600.0
                acc[TTR_N] += 1.0
                self._born(svc, TTR, k)
            if ev.sla_made is False:
                acc[SLA] += 1.0
                self._born(svc, SLA, k)
        if moves_time and t > self._max_t:
            self._max_t = t
            self._advance()

    def _born(self, svc: _Service, metric: int, k: int) -> None:
        s = svc.series[metric]
        if s is None:
            svc.series[metric] = Series(self._factory(), k)
        elif k < s.born:
            s.born = k  # an earlier interval that is still open

    def _add_service(self, service: str, source: str) -> _Service:
        if len(self._services) >= self._max_services:
            old, _ = self._services.popitem(last=False)
            self._episodes.forget_service(old)
            self.counters["evicted_services"] += 1
        svc = self._services[service] = _Service(source)
        return svc

    def _advance(self) -> None:
        closes_below = int((self._max_t - self._lateness) // self._interval)  # intervals k + 1 <= wm
        if self._next is None:
            self._next = min(self._buckets, default=closes_below)
        k = self._next
        while k < closes_below:
            self._close(k)
            k += 1
        self._next = k

    def _close(self, k: int) -> None:
        bucket = self._buckets.pop(k, None) or {}
        self._fingerprints.pop(k, None)
        for service, svc in self._services.items():
            svc.closed.append(k)
            svc.accs.append(bucket.get(service))
        self._closed += 1
        self.counters["intervals_closed"] += 1

    def _score(self) -> None:
        if not self._closed:
            return
        self._closed = 0
        episodes, interval, name = self._episodes, self._interval, self._detector_name
        rows: list[AnomalyRow] = []
        for service, svc in self._services.items():
            closed, accs = svc.closed, svc.accs
            if not closed:
                continue
            svc.closed, svc.accs = [], []
            times = [k * interval for k in closed]
            drops: dict[int, AnomalyVerdict] = {}  # interval -> anomalous tickets_opened drop
            alerts_at: dict[int, AnomalyVerdict | None] = {}  # interval -> alert verdict there
            for m, s in enumerate(svc.series):
                if s is None:
                    continue
                ks, xs, ts = _points(closed, accs, times, m, s.born)
                if not xs:
                    continue
                step0 = s.steps
                need = [i for i, k in enumerate(ks) if k in drops] if m == ALERTS else []
                scored = s.score(xs, ts, need)
                for i in sorted(scored):
                    (v, run), k = scored[i], ks[i]
                    if m == ALERTS:
                        alerts_at[k] = v
                    if v is not None and v.is_anomaly:
                        start = datetime.fromtimestamp(k * interval, UTC)
                        rows.append(anomaly_row(service, METRICS[m], start, v, v.direction, name))
                        if m == OPENED and v.direction == "drop":
                            drops[k] = v
                    if run is not None:
                        episodes.observe(service, METRICS[m], step0 + i, k, run, svc.source)
                episodes.end_if_broken(service, METRICS[m], s.steps)
            for k, tickets in drops.items():
                # no alerts series, or not born yet: no verdict, and the rule then stays silent
                if self._bypass.check(service, tickets, alerts_at.get(k)) is not None:
                    rows.append(anomaly_row(service, "tickets_opened", datetime.fromtimestamp(k * interval, UTC),
                                            tickets, "bypass", name))  # fmt: skip
        rows.sort(key=lambda r: (r.interval_start, r.service, r.metric, r.kind))
        self._rows.extend(rows)
        if self._next is not None:
            episodes.now = self._next - 1
        episodes.prune()

    # ------------------------------------------------------------------ outputs
    def pop_anomalies(self) -> list[AnomalyRow]:
        """Anomaly rows of the intervals closed since the last call (ordered by interval, service)."""
        rows, self._rows = self._rows, []
        return rows

    def pop_updates(self) -> list[ProblemRecord]:
        """Trend problem records raised or changed since the last call, the latest version of each."""
        return self._episodes.pop_updates()

    def apply_feedback(self, fb: Feedback) -> bool:
        """Apply a human decision to a trend problem; ``False`` if it is not one of this monitor's."""
        return self._episodes.apply_feedback(fb)

    @property
    def series_count(self) -> int:
        """Series (service × metric) currently scored."""
        return sum(s is not None for svc in self._services.values() for s in svc.series)

    @property
    def watermark(self) -> datetime | None:
        """Start of the first open interval (everything before it is closed), ``None`` before any."""
        return None if self._next is None else datetime.fromtimestamp(self._next * self._interval, UTC)

    # ------------------------------------------------------------------ state
    def snapshot(self) -> bytes:
        """The whole state as msgpack bytes (restore with :meth:`from_snapshot`).

        The outboxes are not part of it: call :meth:`pop_anomalies` and :meth:`pop_updates`
        before checkpointing.
        """
        services = [(name, svc.source, [_SeriesState(m, s.born, s.steps, s.run, s.band, s.detector.snapshot())
                                        for m, s in enumerate(svc.series) if s is not None])
                    for name, svc in self._services.items()]  # fmt: skip
        return msgspec.msgpack.encode(_Snapshot(
            params=self.params, services=services,
            buckets=[(k, list(b.items())) for k, b in sorted(self._buckets.items())],
            fingerprints=[(k, sorted(f)) for k, f in sorted(self._fingerprints.items())],
            next_open=self._next, max_t=self._max_t, counters=self.counters, episodes=self._episodes.state(),
        ))  # fmt: skip

    @classmethod
    def from_snapshot(cls, data: bytes, detector_factory: DetectorFactory | None = None) -> TrendMonitor:
        """A monitor in exactly the state :meth:`snapshot` captured.

        Pass the same ``detector_factory`` as the original (the default needs none: its
        parameters are part of the snapshot).
        """
        snap = msgspec.msgpack.decode(data, type=_Snapshot)
        mon = cls(**snap.params, detector_factory=detector_factory)
        for name, source, series in snap.services:
            svc = mon._services[name] = _Service(source)
            for st in series:
                det: TrendDetector = mon._factory()
                det.restore(st.detector)
                svc.series[st.metric] = Series(det, st.born, st.steps, st.run, st.band)
        mon._buckets = {k: dict(b) for k, b in snap.buckets}
        mon._fingerprints = {k: set(f) for k, f in snap.fingerprints}
        mon._next, mon._max_t, mon.counters = snap.next_open, snap.max_t, snap.counters
        mon._episodes.restore(snap.episodes)
        return mon
