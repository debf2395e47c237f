"""Detectors: pure, online detection logic that imports neither Kafka nor Faust.

Every detector is river-shaped (``learn_one`` / ``learn_many``, state you can snapshot and
restore), so the Faust agents, the offline replays (``opsintel eval …``) and the tests run the
same code on the same events.

* :class:`RecurringIncidentDetector` groups similar incidents in a sliding window and raises /
  updates :class:`~opsintel.problems.ProblemRecord` s (``kind="recurring"``), with evidence
  (shared attributes, suspect change, monitoring lead, suggested knowledge, ticket signals), and
  applies human :class:`~opsintel.problems.Feedback`.
* :class:`SeasonalAnomalyDetector` scores one series (service × metric) against a robust
  hour-of-day / weekday baseline (score in [0, 1], :class:`AnomalyVerdict` explanations);
  :class:`BypassRule` reads a ticket drop against monitoring alerts, and
  :class:`SustainedAnomalyTracker` turns sustained anomalies into :class:`ProblemCandidate` s.
  :class:`RecordBreakDetector` (the default trend detector) scores how far a value breaks the
  series' records, in value, in residual against that baseline and for its block of the day
  (best NAB score here). Both run their per-point loops compiled (numba; the pure-Python loops
  stay as the reference); :func:`compile_trend_kernels` compiles them ahead of their first use.
  The baselines they are benchmarked against (``opsintel eval nab``) share their API.
* :class:`TrendMonitor` is the stream stage around them: event-time interval buckets per service
  and metric (ticket volume, resolution time, SLA breaches, bounces, reopens, alerts), a detector
  per series, :class:`AnomalyRow` s (spike, drop, bypass) and ``kind="trend"`` problem records.
"""

from ._baselines import (
    HalfSpaceTreesDetector,
    IsolationForestWindowsDetector,
    NullDetector,
    WindowedGaussianDetector,
)
from ._raise_rule import RaiseRule, ServiceBaseline
from ._record_break import RecordBreakDetector, compile_trend_kernels
from ._recurring import RecurringIncidentDetector
from ._seasonal import AnomalyVerdict, SeasonalAnomalyDetector, posix_seconds
from ._signals import BypassRule, BypassSignal, ProblemCandidate, SustainedAnomalyTracker
from ._text import normalise_text, text_vector
from ._trend_monitor import SPARSE_COUNTS, TrendMonitor
from ._trend_series import AnomalyRow

__all__ = [
    "SPARSE_COUNTS",
    "AnomalyRow",
    "AnomalyVerdict",
    "BypassRule",
    "BypassSignal",
    "HalfSpaceTreesDetector",
    "IsolationForestWindowsDetector",
    "NullDetector",
    "ProblemCandidate",
    "RaiseRule",
    "RecordBreakDetector",
    "RecurringIncidentDetector",
    "SeasonalAnomalyDetector",
    "ServiceBaseline",
    "SustainedAnomalyTracker",
    "TrendMonitor",
    "WindowedGaussianDetector",
    "compile_trend_kernels",
    "normalise_text",
    "posix_seconds",
    "text_vector",
]
