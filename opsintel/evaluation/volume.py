"""Per-service hourly ticket volumes from canonical events, and the hours a detector flags.

There are no labels for ticket volumes, so this evaluation is for a human to read: it builds
one hourly series of *created* tickets per service (hours without tickets count 0, from the
log's first hour to its last), streams each series through the trend detector exactly as the
worker does (score each hour, then learn it), and lists the flagged hours with the detector's
explanation (observed, expected, normal band, spike or drop).

Examples
--------
>>> from datetime import datetime, timezone
>>> hour = lambda h: datetime(2016, 3, 1, h, 5, tzinfo=timezone.utc)
>>> series = hourly_volumes([("payroll", hour(0)), ("payroll", hour(0)), ("payroll", hour(2))])
>>> series["payroll"][1].tolist()
[2.0, 0.0, 1.0]
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import numpy as np
import numpy.typing as npt

_HOUR = 3600


@dataclass(frozen=True)
class VolumeAnomaly:
    """One flagged hour of one service's created-ticket volume."""

    service: str
    hour: datetime
    observed: float
    expected: float
    band: tuple[float, float]
    score: float
    direction: str


def created_tickets(events: Iterable[Any]) -> Iterable[tuple[str, datetime]]:
    """``(service, opened time)`` of every ``created`` ticket event (other events are skipped).

    The time is the ticket's ``opened_at`` (when the incident was raised) if the source has it,
    else the event's own time.
    """
    for e in events:
        if getattr(e, "kind", None) == "created":
            yield e.service or "(no service)", e.opened_at or e.event_time


def hourly_volumes(created: Iterable[tuple[str, datetime]]
                   ) -> dict[str, tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]]:
    """Per service: (hour starts as POSIX seconds, tickets created in that hour), on one grid."""
    counts: dict[str, Counter[int]] = {}
    for service, when in created:
        counts.setdefault(service, Counter())[int(when.timestamp()) // _HOUR] += 1
    if not counts:
        return {}
    first = min(min(c) for c in counts.values())
    last = max(max(c) for c in counts.values())
    hours = np.arange(first, last + 1, dtype=np.int64)
    out = {}
    for service in sorted(counts):
        c = counts[service]
        out[service] = ((hours * _HOUR).astype(np.float64),
                        np.array([c.get(int(h), 0) for h in hours], dtype=np.float64))
    return out


def flag_volumes(series: Mapping[str, tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]],
                 make_detector: Callable[[], Any], min_tickets: int = 0) -> list[VolumeAnomaly]:
    """Stream every series through a fresh detector; the hours its verdict calls anomalous.

    Services with fewer than ``min_tickets`` created tickets in total are skipped.
    """
    found = []
    for service, (t, x) in series.items():
        if x.sum() < min_tickets:
            continue
        det = make_detector()
        for ts, v in zip(t.tolist(), x.tolist(), strict=True):
            verdict = det.verdict_one(v, ts)
            if verdict is not None and verdict.is_anomaly:
                found.append(VolumeAnomaly(service, datetime.fromtimestamp(ts, UTC), v, verdict.expected,
                                           verdict.band, verdict.score, verdict.direction))
            det.learn_one(v, ts)
    return sorted(found, key=lambda a: (a.hour, a.service))


def format_anomalies(found: Iterable[VolumeAnomaly]) -> str:
    """One line per flagged hour, for a person to read."""
    lines = [f"{'hour (UTC)':16s}  {'service':20s} {'dir':5s} {'observed':>8s} {'expected':>8s}  "
             f"{'normal band':>15s}  score"]
    for a in found:
        lines.append(f"{a.hour:%Y-%m-%d %H:%M}  {a.service[:20]:20s} {a.direction:5s} {a.observed:8.0f} "
                     f"{a.expected:8.1f}  [{a.band[0]:6.1f}, {a.band[1]:6.1f}]  {a.score:.3f}")
    return "\n".join(lines)
