"""Record-break anomaly scoring: how far a value goes beyond everything the series has done."""

from __future__ import annotations

from array import array
from collections.abc import Sequence
from itertools import repeat
from typing import Any

import numpy as np
import numpy.typing as npt

from detectors._seasonal import _KERNEL_MIN_POINTS, AnomalyVerdict, SeasonalAnomalyDetector, _as_arrays, _run_many
from detectors._trend_kernels import record_break_kernel

#: a range this small (relative to the values' magnitude) is treated as a flat series
_FLAT = 1e-6
_DAY = 86_400.0
#: the kernel keeps the blocks seen as bits of an int64
_KERNEL_MAX_BLOCKS = 62


class RecordBreakDetector:
    """Scores a value by how far it breaks the series' records, in value, residual and time of day.

    Three kinds of records (lowest / highest seen) are kept: of the **values**; of the
    **residuals** ``value - expected`` against a :class:`SeasonalAnomalyDetector` baseline
    (level + hour-of-day + weekday); and of the values **per block of the day** (``blocks``
    equal blocks, 6 = four hours each; needs timestamps). A value's *exceedance* is how far it
    lies beyond the records, as a fraction of the recorded range, the block records' weighted
    by ``block_weight`` and measured in the all-time value range::

        e = max((x - hi) / (hi - lo), (lo - x) / (hi - lo),              # values
                (r - hi_r) / (hi_r - lo_r), (lo_r - r) / (hi_r - lo_r),  # residuals
                w * (x - hi_b) / (hi - lo), w * (lo_b - x) / (hi - lo))  # this block of the day

    and the score is ``e / (1 + e)`` for ``e > 0``, else 0. So a new all-time high (or low) is
    anomalous, and so is a value inside the usual range that is a record for its hour and
    weekday (the night that looks like a day, the missing Monday peak), or for its block of
    the day (a flat afternoon where every afternoon so far was high: the block records do not
    depend on how well the baseline follows a sharp daily shape). Records are learnt from
    every point, anomalies included: a level that has been reached once is no longer a record.
    This is the "spatial anomaly" rule of Numenta's NAB detector (new min/max beyond a
    tolerance) generalised to seasonal residuals and to the time of day; the exceedance worth
    an alert is the threshold NAB optimises.

    **Quiet period.** Once a point whose exceedance reaches ``alert_exceedance`` has been
    learnt, the points of the next ``quiet_s`` seconds score 0: one alert per burst (a ramp
    breaks the record at every step), as ARTime and Numenta's detector suppress after a
    detection. With the default hour, an hourly series is never silenced.

    Scores are 0 during the cold start (``warmup`` points for the value records; the residual
    records start once the baseline has learnt ``warmup`` points and score ``warmup // 2``
    points later, and start again, once, when a day has passed since the first timestamp: the
    first day's residuals measure a baseline that has not seen every hour yet; the block
    records score once ``block_days`` days have passed since the first timestamp, so that
    every block has been seen on several days). Memory is fixed: the baseline's state plus
    ``2 * blocks`` floats, six floats, three counters and a flag.

    Parameters
    ----------
    warmup
        Points learnt before anything is scored (also the baseline's warmup).
    alert_exceedance
        Exceedance that :meth:`verdict_one` calls an anomaly and that starts a quiet period
        (``0.02``: 2 % of the range beyond the records; the standard-profile threshold NAB's
        sweep picks is 0.019).
    baseline
        Keyword parameters of the :class:`SeasonalAnomalyDetector` baseline.
    blocks
        Blocks of the day with their own value records (0: none).
    block_weight
        Weight of a block record's exceedance (a block is a narrower context than the whole
        series, so its records break more often by chance).
    block_days
        Days after the first timestamp before the block records score.
    quiet_s
        Seconds after an alert during which nothing scores (0: no quiet period; needs
        timestamps).

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

    __slots__ = ("_baseline", "_bhi", "_blo", "_bseen", "_hi", "_hi_r", "_lo", "_lo_r", "_n", "_n_r", "_r_reset",
                 "_t0", "_t_alert", "alert_exceedance", "block_days", "block_weight", "quiet_s", "warmup")

    def __init__(self, *, warmup: int = 100, alert_exceedance: float = 0.02,
                 baseline: dict[str, Any] | None = None, blocks: int = 6, block_weight: float = 0.2,
                 block_days: float = 3.0, quiet_s: float = 3600.0) -> None:
        self.warmup = warmup
        self.alert_exceedance = alert_exceedance
        self.block_weight = block_weight
        self.block_days = block_days
        self.quiet_s = quiet_s
        self._baseline = SeasonalAnomalyDetector(**{"warmup": warmup, **(baseline or {})})
        self._n = self._n_r = 0
        self._lo = self._hi = self._lo_r = self._hi_r = 0.0
        self._t0: float | None = None  # first timestamp learnt
        self._blo = array("d", bytes(8 * blocks))
        self._bhi = array("d", bytes(8 * blocks))
        self._bseen = 0  # bit b set: block b has records
        self._r_reset = False  # the residual records restarted once a day had passed
        self._t_alert: float | None = None  # time of the last alert learnt (starts a quiet period)

    # -- the river-shaped API ---------------------------------------------------------------
    def learn_one(self, x: float, t: float | None = None) -> None:
        """Learn one value (``t``: POSIX seconds, optional)."""
        self._run([float(x)], None if t is None else [float(t)], False, True)

    def score_one(self, x: float, t: float | None = None) -> float:
        """Score in [0, 1] of one value, without learning it."""
        return self._run([float(x)], None if t is None else [float(t)], True, False)[0]

    def learn_many(self, x: npt.ArrayLike, t: npt.ArrayLike | None = None) -> None:
        """Learn values in order; equal to calling :meth:`learn_one` on each."""
        self._run_many(*_as_arrays(x, t), False, True)

    def score_many(self, x: npt.ArrayLike, t: npt.ArrayLike | None = None) -> npt.NDArray[np.float64]:
        """Score values against the current state, learning none of them."""
        return self._run_many(*_as_arrays(x, t), True, False)

    def score_learn_many(self, x: npt.ArrayLike, t: npt.ArrayLike | None = None) -> npt.NDArray[np.float64]:
        """The streaming path in one call: score each value, then learn it (equal to the loop)."""
        return self._run_many(*_as_arrays(x, t), True, True)

    def score_learn_floats(self, xs: list[float], ts: list[float] | None = None) -> list[float]:
        """:meth:`score_learn_many` for lists of Python ``float`` values, returning a list.

        Skips the numpy round trip, which costs as much as scoring the few points per series a
        stream scores at a time (:class:`~detectors.TrendMonitor`). The values must be floats.
        """
        if ts is not None and len(ts) != len(xs):
            raise ValueError(f"{len(xs)} values but {len(ts)} timestamps")
        if len(xs) >= _KERNEL_MIN_POINTS:
            out = self._run_compiled(np.array(xs, dtype=np.float64), None if ts is None else
                                     np.array(ts, dtype=np.float64), True, True)
            if out is not None:
                return out.tolist()
        return self._run(xs, ts, True, True)

    def verdict_one(self, x: float, t: float | None = None) -> AnomalyVerdict | None:
        """Explain one value (not learnt): expected value, the band of non-record values, direction.

        ``band`` is the interval of values whose exceedance stays below ``alert_exceedance``
        (the value records widened by that share of their range, intersected with the
        residual records around ``expected`` and with the records of the block of the day);
        ``None`` during the cold start. Inside a quiet period the score is 0, so nothing is
        an anomaly (the band still says where the records are).
        """
        base = self._baseline.verdict_one(x, t)
        if base is None or self._n < self.warmup:
            return None
        a = self.alert_exceedance
        lo, hi = _widened(self._lo, self._hi, a)
        if self._n_r >= self.warmup // 2:
            lo_r, hi_r = _widened(self._lo_r, self._hi_r, a)
            lo, hi = max(lo, base.expected + lo_r), min(hi, base.expected + hi_r)
        b = self._block(t)
        if b is not None and self.block_weight > 0.0:
            pad = a / self.block_weight * (self._hi - self._lo)
            lo, hi = max(lo, self._blo[b] - pad), min(hi, self._bhi[b] + pad)
        x = float(x)
        score = self.score_one(x, t)
        above = x > hi or (lo <= x <= hi and x >= base.expected)
        return AnomalyVerdict(x, base.expected, (lo, hi), score, score >= a / (1.0 + a) and score > 0.0,
                              "spike" if above else "drop")

    # -- state ------------------------------------------------------------------------------
    def snapshot(self) -> dict[str, Any]:
        """The learnt state as plain JSON-able values (restore with :meth:`restore`)."""
        return {"n": self._n, "n_r": self._n_r, "lo": self._lo, "hi": self._hi, "lo_r": self._lo_r,
                "hi_r": self._hi_r, "t0": self._t0, "block_lo": list(self._blo), "block_hi": list(self._bhi),
                "block_seen": self._bseen, "r_reset": self._r_reset, "t_alert": self._t_alert,
                "baseline": self._baseline.snapshot()}

    def restore(self, state: dict[str, Any]) -> RecordBreakDetector:
        """Load a state produced by :meth:`snapshot` (hyperparameters are not part of it).

        A state saved before the block records existed (or with another ``blocks``) restores
        with empty block records; its residual records are kept as they are.
        """
        self._n, self._n_r = int(state["n"]), int(state["n_r"])
        self._lo, self._hi = float(state["lo"]), float(state["hi"])
        self._lo_r, self._hi_r = float(state["lo_r"]), float(state["hi_r"])
        t0, t_alert = state.get("t0"), state.get("t_alert")
        self._t0 = None if t0 is None else float(t0)
        self._t_alert = None if t_alert is None else float(t_alert)
        self._r_reset = bool(state.get("r_reset", True))
        blocks = len(self._blo)
        if len(state.get("block_lo", ())) == blocks:
            self._blo, self._bhi = array("d", state["block_lo"]), array("d", state["block_hi"])
            self._bseen = int(state["block_seen"])
        else:
            self._blo, self._bhi, self._bseen = array("d", bytes(8 * blocks)), array("d", bytes(8 * blocks)), 0
        self._baseline.restore(state["baseline"])
        return self

    # -- internals --------------------------------------------------------------------------
    def _block(self, t: float | None) -> int | None:
        """The block of the day of ``t`` if its records score now, else ``None``."""
        k = len(self._blo)
        if t is None or not k or self._n < self.warmup or self._t0 is None:
            return None
        t = float(t)
        b = int((t % _DAY) / (_DAY / k))
        if t - self._t0 < self.block_days * _DAY or not (self._bseen >> b) & 1:
            return None
        return b

    def _run_many(self, xs: npt.NDArray[np.float64], ts: npt.NDArray[np.float64] | None, score: bool,
                  learn: bool) -> npt.NDArray[np.float64]:
        return _run_many(self._run_compiled, self._run, xs, ts, score, learn)

    def _run_compiled(self, xs: npt.NDArray[np.float64], ts: npt.NDArray[np.float64] | None, score: bool,
                      learn: bool) -> npt.NDArray[np.float64] | None:
        """:meth:`_run` compiled: the scores (empty unless ``score``), the state updated; or ``None``
        with nothing changed where the kernel declines the call (the Python loop then runs it)."""
        base, blo = self._baseline, self._blo
        if len(blo) > _KERNEL_MAX_BLOCKS or not len(base._daily):
            return None
        t0, t_alert = self._t0, self._t_alert
        bad, out, base_state, state = record_break_kernel(
            xs, xs if ts is None else ts, ts is not None, score, learn, *base._kernel_state(), base._daily,
            base._weekly, *base._kernel_params(),
            self._n, self._n_r, self._lo, self._hi, self._lo_r, self._hi_r, t0 is not None,
            0.0 if t0 is None else t0, t_alert is not None, 0.0 if t_alert is None else t_alert, self._bseen,
            self._r_reset, blo, self._bhi, float(self.warmup), float(self.warmup // 2), float(self.block_weight),
            self.block_days * _DAY, float(self.quiet_s), float(self.alert_exceedance), _FLAT)
        if bad >= 0:
            return None
        base._set_kernel_state(base_state[2:])
        (self._n, self._n_r, self._lo, self._hi, self._lo_r, self._hi_r, has_t0, t0, has_t_alert, t_alert,
         self._bseen, self._r_reset) = state
        self._t0 = t0 if has_t0 else None
        self._t_alert = t_alert if has_t_alert else None
        scores: npt.NDArray[np.float64] = out
        return scores

    def _run(self, xs: Sequence[float], ts: Sequence[float] | None, score: bool, learn: bool) -> list[float]:
        # The reference loop (see SeasonalAnomalyDetector._run): one tight loop over Python floats;
        # the spans of the records are recomputed only when a record moves.
        base_n = self._baseline._n  # the baseline's points learnt (counted on below)
        rs = self._baseline._run(xs, ts, False, learn, residuals=True)
        out: list[float] = []
        n, n_r, lo, hi, lo_r, hi_r = self._n, self._n_r, self._lo, self._hi, self._lo_r, self._hi_r
        warmup, warm_r = self.warmup, self.warmup // 2
        blo, bhi, bseen, t0, t_alert = self._blo, self._bhi, self._bseen, self._t0, self._t_alert
        r_reset = self._r_reset
        has_t = ts is not None
        k = len(blo) if has_t else 0
        day, width, w_b, settle = _DAY, _DAY / (k or 1), self.block_weight, self.block_days * _DAY
        quiet, alert = (self.quiet_s if has_t else 0.0), self.alert_exceedance
        calc = score or quiet > 0.0  # learning alone needs the exceedance only for the quiet period
        flat = _FLAT
        floor = 1e-12 + flat * (hi if hi >= -lo else -lo)
        span = hi - lo if hi - lo > floor else floor
        sr = hi_r - lo_r if hi_r - lo_r > floor else floor
        b = 0
        # without timestamps every point is at t = 0.0 (the quiet-period test still reads it);
        # the public methods check that xs and ts have the same length
        for x, r, t in zip(xs, rs, ts if ts is not None else repeat(0.0, len(xs)), strict=False):
            if k:
                b = int((t % day) / width)
            e = 0.0
            if calc and n >= warmup:
                e = (x - hi) / span if x > hi else ((lo - x) / span if x < lo else 0.0)
                if n_r >= warm_r:
                    d = (r - hi_r) / sr if r > hi_r else ((lo_r - r) / sr if r < lo_r else 0.0)
                    if d > e:
                        e = d
                if k and t0 is not None and t - t0 >= settle and (bseen >> b) & 1:
                    v = bhi[b]
                    if x > v:
                        d = w_b * (x - v) / span
                    else:
                        v = blo[b]
                        d = w_b * (v - x) / span if x < v else 0.0
                    if d > e:
                        e = d
            quiet_now = t_alert is not None and t - t_alert < quiet
            if score:
                out.append(e / (1.0 + e) if e > 0.0 and not quiet_now else 0.0)
            if not learn:
                continue
            if quiet and e >= alert and e > 0.0 and not quiet_now:
                t_alert = t
            if has_t and t0 is None:
                t0 = t
            if k:
                if not (bseen >> b) & 1:
                    blo[b] = bhi[b] = x
                    bseen |= 1 << b
                elif x < blo[b]:
                    blo[b] = x
                elif x > bhi[b]:
                    bhi[b] = x
            moved = True
            if n == 0:
                lo = hi = x
            elif x < lo:
                lo = x
            elif x > hi:
                hi = x
            else:
                moved = False
            n += 1
            # residuals only mean something once the baseline is warm (it learnt ``warmup`` points)
            if base_n >= warmup:
                if not r_reset and has_t and t0 is not None and t - t0 >= day:
                    # the first day's residuals measure a baseline that had not seen every hour
                    # yet: the residual records start again (and warm up again)
                    r_reset = True
                    lo_r = hi_r = r
                    n_r = 0
                    moved = True
                elif r < lo_r:
                    lo_r = r
                    moved = True
                elif r > hi_r:
                    hi_r = r
                    moved = True
                n_r += 1
            base_n += 1
            if moved:
                floor = 1e-12 + flat * (hi if hi >= -lo else -lo)
                span = hi - lo if hi - lo > floor else floor
                sr = hi_r - lo_r if hi_r - lo_r > floor else floor
        self._n, self._n_r, self._lo, self._hi, self._lo_r, self._hi_r = n, n_r, lo, hi, lo_r, hi_r
        self._bseen, self._t0, self._t_alert, self._r_reset = bseen, t0, t_alert, r_reset
        return out


def compile_trend_kernels() -> None:
    """Compile the detectors' loops now (or load them from numba's cache) instead of at their first use.

    The compiled loops (``detectors/_trend_kernels.py``) are compiled at the first call that
    needs them: ~3 s of CPU without a cache, ~0.3 s from it. A worker calls this before it
    consumes, so that its first batch does not wait for the compiler.
    """
    t = np.arange(_KERNEL_MIN_POINTS) * 3600.0
    RecordBreakDetector().learn_many(np.zeros(t.size), t)
    SeasonalAnomalyDetector().learn_many(np.zeros(t.size), t)


def _widened(lo: float, hi: float, share: float) -> tuple[float, float]:
    pad = share * (hi - lo)
    return lo - pad, hi + pad
