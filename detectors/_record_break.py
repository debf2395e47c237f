"""Record-break anomaly scoring: how far a value goes beyond everything the series has done."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

from detectors._seasonal import AnomalyVerdict, SeasonalAnomalyDetector, _as_lists

#: a range this small (relative to the values' magnitude) is treated as a flat series
_FLAT = 1e-6


class RecordBreakDetector:
    """Scores a value by how far it breaks the series' records, in value and in seasonal residual.

    Two pairs of records (lowest / highest seen) are kept: of the **values**, and of the
    **residuals** ``value - expected`` against a :class:`SeasonalAnomalyDetector` baseline
    (level + hour-of-day + weekday). A value's *exceedance* is how far it lies beyond the
    records, as a fraction of the recorded range::

        e = max((x - hi) / (hi - lo), (lo - x) / (hi - lo),          # values
                (r - hi_r) / (hi_r - lo_r), (lo_r - r) / (hi_r - lo_r))  # residuals

    and the score is ``e / (1 + e)`` for ``e > 0``, else 0. So a new all-time high (or low) is
    anomalous, and so is a value inside the usual range that is a record for its hour and
    weekday (the night that looks like a day, the missing Monday peak). Records are learnt from
    every point, anomalies included: a level that has been reached once is no longer a record.
    This is the "spatial anomaly" rule of Numenta's NAB detector (new min/max beyond a
    tolerance) generalised to seasonal residuals; its one free number, the exceedance worth an
    alert, is the threshold NAB optimises.

    Scores are 0 during the cold start (``warmup`` points for the value records; the residual
    records start once the baseline has learnt ``warmup`` points and score ``warmup // 2``
    points later). Memory is fixed: the baseline's state plus four floats and a counter.

    Parameters
    ----------
    warmup
        Points learnt before anything is scored (also the baseline's warmup).
    alert_exceedance
        Exceedance that :meth:`verdict_one` calls an anomaly (``0.02``: 2 % of the range
        beyond the records; the standard-profile threshold NAB's sweep picks is 0.021).
    baseline
        Keyword parameters of the :class:`SeasonalAnomalyDetector` baseline.

    Examples
    --------
    >>> import numpy as np
    >>> hours = np.arange(24 * 21) * 3600.0            # three weeks, hourly
    >>> volume = 50 + 30 * np.sin(2 * np.pi * hours / 86_400)
    >>> volume += np.random.default_rng(0).normal(0, 2, hours.size)
    >>> det = RecordBreakDetector()
    >>> det.learn_many(volume, hours)
    >>> t = hours[-1] + 3600.0
    >>> normal = 50 + 30 * np.sin(2 * np.pi * t / 86_400)
    >>> det.score_one(normal, t) == 0.0, det.score_one(normal + 40, t) > 0.2
    (True, True)
    >>> v = det.verdict_one(normal - 25, t)              # inside the range, but not at this hour
    >>> v.direction, v.is_anomaly, bool(v.band[0] > normal - 25)
    ('drop', True, True)
    """

    __slots__ = ("_baseline", "_hi", "_hi_r", "_lo", "_lo_r", "_n", "_n_r", "alert_exceedance", "warmup")

    def __init__(self, *, warmup: int = 100, alert_exceedance: float = 0.02,
                 baseline: dict[str, Any] | None = None) -> None:
        self.warmup = warmup
        self.alert_exceedance = alert_exceedance
        self._baseline = SeasonalAnomalyDetector(**{"warmup": warmup, **(baseline or {})})
        self._n = self._n_r = 0
        self._lo = self._hi = self._lo_r = self._hi_r = 0.0

    # -- the river-shaped API ---------------------------------------------------------------
    def learn_one(self, x: float, t: float | None = None) -> None:
        """Learn one value (``t``: POSIX seconds, optional)."""
        self._run([float(x)], None if t is None else [float(t)], False, True)

    def score_one(self, x: float, t: float | None = None) -> float:
        """Score in [0, 1] of one value, without learning it."""
        return self._run([float(x)], None if t is None else [float(t)], True, False)[0]

    def learn_many(self, x: npt.ArrayLike, t: npt.ArrayLike | None = None) -> None:
        """Learn values in order; equal to calling :meth:`learn_one` on each."""
        self._run(*_as_lists(x, t), False, True)

    def score_many(self, x: npt.ArrayLike, t: npt.ArrayLike | None = None) -> npt.NDArray[np.float64]:
        """Score values against the current state, learning none of them."""
        return np.asarray(self._run(*_as_lists(x, t), True, False), dtype=np.float64)

    def score_learn_many(self, x: npt.ArrayLike, t: npt.ArrayLike | None = None) -> npt.NDArray[np.float64]:
        """The streaming path in one call: score each value, then learn it (equal to the loop)."""
        return np.asarray(self._run(*_as_lists(x, t), True, True), dtype=np.float64)

    def verdict_one(self, x: float, t: float | None = None) -> AnomalyVerdict | None:
        """Explain one value (not learnt): expected value, the band of non-record values, direction.

        ``band`` is the interval of values whose exceedance stays below ``alert_exceedance``
        (the value records widened by that share of their range, intersected with the
        residual records around ``expected``); ``None`` during the cold start.
        """
        base = self._baseline.verdict_one(x, t)
        if base is None or self._n < self.warmup:
            return None
        a = self.alert_exceedance
        lo, hi = _widened(self._lo, self._hi, a)
        if self._n_r >= self.warmup // 2:
            lo_r, hi_r = _widened(self._lo_r, self._hi_r, a)
            lo, hi = max(lo, base.expected + lo_r), min(hi, base.expected + hi_r)
        x = float(x)
        score = self.score_one(x, t)
        above = x > hi or (lo <= x <= hi and x >= base.expected)
        return AnomalyVerdict(x, base.expected, (lo, hi), score, score >= a / (1.0 + a) and score > 0.0,
                              "spike" if above else "drop")

    # -- state ------------------------------------------------------------------------------
    def snapshot(self) -> dict[str, Any]:
        """The learnt state as plain JSON-able values (restore with :meth:`restore`)."""
        return {"n": self._n, "n_r": self._n_r, "lo": self._lo, "hi": self._hi, "lo_r": self._lo_r,
                "hi_r": self._hi_r, "baseline": self._baseline.snapshot()}

    def restore(self, state: dict[str, Any]) -> RecordBreakDetector:
        """Load a state produced by :meth:`snapshot` (hyperparameters are not part of it)."""
        self._n, self._n_r = int(state["n"]), int(state["n_r"])
        self._lo, self._hi = float(state["lo"]), float(state["hi"])
        self._lo_r, self._hi_r = float(state["lo_r"]), float(state["hi_r"])
        self._baseline.restore(state["baseline"])
        return self

    # -- internals --------------------------------------------------------------------------
    def _run(self, xs: Sequence[float], ts: Sequence[float] | None, score: bool, learn: bool) -> list[float]:
        base_n = self._baseline._n
        rs = self._baseline._run(xs, ts, False, learn, residuals=True)
        out: list[float] = []
        n, n_r, lo, hi, lo_r, hi_r = self._n, self._n_r, self._lo, self._hi, self._lo_r, self._hi_r
        warmup, warm_r = self.warmup, self.warmup // 2
        for i, x in enumerate(xs):
            if score:
                e = 0.0
                if n >= warmup:
                    span = hi - lo
                    floor = 1e-12 + _FLAT * (hi if hi >= -lo else -lo)
                    span = span if span > floor else floor
                    e = (x - hi) / span if x > hi else ((lo - x) / span if x < lo else 0.0)
                    if n_r >= warm_r:
                        r = rs[i]
                        span = hi_r - lo_r
                        span = span if span > floor else floor
                        d = (r - hi_r) / span if r > hi_r else ((lo_r - r) / span if r < lo_r else 0.0)
                        e = d if d > e else e
                out.append(e / (1.0 + e) if e > 0.0 else 0.0)
            if not learn:
                continue
            if n == 0:
                lo = hi = x
            elif x < lo:
                lo = x
            elif x > hi:
                hi = x
            n += 1
            # residuals only mean something once the baseline is warm (it learnt ``warmup`` points)
            if base_n + i >= warmup:
                r = rs[i]
                if r < lo_r:
                    lo_r = r
                elif r > hi_r:
                    hi_r = r
                n_r += 1
        self._n, self._n_r, self._lo, self._hi, self._lo_r, self._hi_r = n, n_r, lo, hi, lo_r, hi_r
        return out


def _widened(lo: float, hi: float, share: float) -> tuple[float, float]:
    pad = share * (hi - lo)
    return lo - pad, hi + pad
