"""Signals derived from anomaly verdicts: desk bypass and sustained anomalies (problem candidates)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from detectors._seasonal import AnomalyVerdict


@dataclass(frozen=True)
class BypassSignal:
    """Ticket volume dropped while monitoring alerts for the same service did not."""

    service: str
    kind: Literal["demand_shift_bypass"]
    tickets: AnomalyVerdict
    alerts: AnomalyVerdict | None


class BypassRule:
    """"Users bypass the desk": a ticket-volume *drop* with no *drop* in monitoring alerts.

    Fewer tickets can mean the problem went away; if monitoring still fires as much (or
    more) for the same service, the problem did not go away and users stopped reporting it
    (asked colleagues, gave up). Pure: it takes the latest verdicts of the two series.

    Parameters
    ----------
    require_alert_verdict
        If true, no signal is raised while the alert series has no verdict (cold start);
        if false, a ticket drop with unknown alerts is not enough either way: this only
        decides whether a missing alert verdict counts as "alerts did not drop".

    Examples
    --------
    >>> drop = AnomalyVerdict(12.0, 40.0, (30.0, 50.0), 0.9, True, "drop")
    >>> steady = AnomalyVerdict(8.0, 8.0, (5.0, 11.0), 0.0, False, "spike")
    >>> BypassRule().check("payroll", drop, steady).kind
    'demand_shift_bypass'
    >>> alerts_dropped = AnomalyVerdict(1.0, 8.0, (5.0, 11.0), 0.8, True, "drop")
    >>> BypassRule().check("payroll", drop, alerts_dropped) is None
    True
    """

    def __init__(self, require_alert_verdict: bool = True) -> None:
        self.require_alert_verdict = require_alert_verdict

    def check(self, service: str, tickets: AnomalyVerdict | None,
              alerts: AnomalyVerdict | None) -> BypassSignal | None:
        """A :class:`BypassSignal` if tickets dropped anomalously and alerts did not drop."""
        if tickets is None or not (tickets.is_anomaly and tickets.direction == "drop"):
            return None
        if alerts is None:
            if self.require_alert_verdict:
                return None
        elif alerts.is_anomaly and alerts.direction == "drop":
            return None  # demand really fell: the service is quieter, not bypassed
        return BypassSignal(service, "demand_shift_bypass", tickets, alerts)


@dataclass(frozen=True)
class ProblemCandidate:
    """A service whose metric stayed anomalous for ``intervals`` consecutive intervals."""

    key: str
    direction: Literal["spike", "drop"]
    intervals: int
    first: AnomalyVerdict
    last: AnomalyVerdict


class SustainedAnomalyTracker:
    """Turns N consecutive anomalous verdicts (same direction) per key into a problem candidate.

    One candidate per episode: it is emitted when the run reaches ``min_intervals`` and not
    again until the run is broken by a normal interval or a change of direction. State is one
    small tuple per key (bounded by the number of keys).

    Examples
    --------
    >>> bad = AnomalyVerdict(90.0, 40.0, (30.0, 50.0), 0.95, True, "spike")
    >>> ok = AnomalyVerdict(41.0, 40.0, (30.0, 50.0), 0.0, False, "spike")
    >>> tracker = SustainedAnomalyTracker(min_intervals=3)
    >>> [tracker.update("svc:mttr", v) is not None for v in (bad, bad, bad, bad, ok, bad)]
    [False, False, True, False, False, False]
    """

    def __init__(self, min_intervals: int = 3) -> None:
        if min_intervals < 1:
            raise ValueError("min_intervals must be >= 1")
        self.min_intervals = min_intervals
        self._runs: dict[str, tuple[str, int, AnomalyVerdict]] = {}

    def update(self, key: str, verdict: AnomalyVerdict | None) -> ProblemCandidate | None:
        """Record the latest verdict for ``key``; a candidate when the run reaches the minimum."""
        if verdict is None or not verdict.is_anomaly:
            self._runs.pop(key, None)
            return None
        direction, length, first = self._runs.get(key, (verdict.direction, 0, verdict))
        if direction != verdict.direction:
            direction, length, first = verdict.direction, 0, verdict
        length += 1
        self._runs[key] = (direction, length, first)
        if length == self.min_intervals:
            return ProblemCandidate(key, verdict.direction, length, first, verdict)
        return None
