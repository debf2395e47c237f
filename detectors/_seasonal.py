"""Seasonal, outlier-robust streaming anomaly scoring for one series (one service × metric)."""

from __future__ import annotations

import math
from array import array
from collections.abc import Callable, MutableSequence, Sequence
from dataclasses import dataclass
from itertools import repeat
from typing import Any, Literal

import numpy as np
import numpy.typing as npt

from ._trend_kernels import seasonal_kernel

_DAY = 86_400.0
#: the tail quantile never goes below 3 scales (a clean series keeps plain z-scores) ...
_TAIL_MIN = 3.0
#: ... and moves by exp(±0.5·p) per point: an exceedance lifts it ~1.65×, then it decays slowly
_TAIL_RATE = 0.5
#: the scale never falls below this share of the *unclipped* mean absolute residual: with many
#: exact zeros (quiet hours of a ticket count) the clipped scale alone can collapse to nothing
_SCALE_FLOOR_SHARE = 0.25
#: 1970-01-01 was a Thursday; shifting by 3 days makes Monday = 0
_EPOCH_WEEKDAY_SHIFT = 3.0
#: ``_run`` works on list copies of the profiles for calls longer than this (copying both ways
#: costs ~0.8 µs, what ~7 points save)
_LIST_MIN_POINTS = 8
#: knots of the daily profile -> time of day (seconds) -> (knot, next knot, share of the next,
#: share of the knot), the same numbers ``_run`` would compute from the time of day: looked up
#: instead (24 entries for hourly points, 288 for 5-minute ones; emptied when full)
_KNOTS_AT: dict[int, dict[float, tuple[int, int, float, float]]] = {}
_KNOTS_AT_MAX = 4096
#: calls of at least this many points run the compiled loop (``_trend_kernels``), shorter ones the
#: Python loop: a kernel call costs ~5.5 µs however short (passing ~50 arguments, copying the
#: profiles), a record-break call in Python 4.2 µs for one point, 5.6 for two, 6.9 for three
_KERNEL_MIN_POINTS = 3


@dataclass(frozen=True)
class AnomalyVerdict:
    """Why a point was (or was not) scored anomalous; what a problem manager reads.

    ``band`` is the interval of values the detector considered normal at that moment
    (``expected ± z_alert · scale``); ``direction`` says whether the value was above it
    (``"spike"``) or below it (``"drop"``).
    """

    observed: float
    expected: float
    band: tuple[float, float]
    score: float
    is_anomaly: bool
    direction: Literal["spike", "drop"]


class SeasonalAnomalyDetector:
    """Robust seasonal baseline with an online hour-of-day and day-of-week profile.

    **Baseline.** ``expected = level + daily(time of day) + weekly(weekday)``: ``daily`` is a
    circular profile of ``daily_knots`` knots linearly interpolated in between, ``weekly`` one
    offset per weekday (both need timestamps; without them only the level is used). Each learnt
    point moves the components by its residual *clipped* to ``clip · scale`` (a Huber step), so
    a spike cannot drag the baseline; ``scale`` is a clipped running mean absolute residual. A
    deviation that stays on the same side for ``patience`` consecutive points is accepted as a
    level shift (the baseline jumps to it), so a new normal stops being flagged.

    **Deviation.** ``z = |residual| / (scale · tail)`` where ``tail`` is a running upper
    ``1 - tail_p`` quantile of ``|residual| / scale`` (at least 3): a bursty metric whose large
    deviations are routine is judged against its own tail, so one threshold fits all series.
    :meth:`verdict_one` reports it as ``z² / (z² + z_alert²)`` (0.5 at ``z_alert``).

    **Score.** :meth:`score_one` is the *alerting* score: the deviation score minus a decaying
    maximum (factor ``decay`` per point) of the deviation scores of the points already learnt,
    so an episode scores high at its onset and not again while it persists (one alert per
    episode; persistence is reported by :class:`SustainedAnomalyTracker`). It is 0 during the
    first ``warmup`` points (cold start). Memory is fixed: ``daily_knots + 7`` floats of
    profile and eleven scalars.

    Parameters
    ----------
    level_rate, season_rate, scale_rate
        Learning rates (per learnt point) of the level, the seasonal profiles, and the scale.
        The first points are averaged exactly (rate ``1/n``) until ``1/n`` falls below the rate,
        so the cold start needs no priors.
    clip
        Residuals beyond ``clip`` scales update the baseline as if they were ``clip`` scales.
    patience
        Consecutive same-side points beyond ``clip`` scales after which the level shifts.
    z_alert
        Deviation (in tail-normalised scales) that :meth:`verdict_one` calls an anomaly.
    warmup
        Points learnt before the detector scores anything.
    tail_p
        Share of points expected beyond the running tail quantile.
    decay
        Per-point decay of the episode memory that turns deviations into onset scores.
    daily_knots
        Resolution of the daily profile (24 = hourly knots).

    Examples
    --------
    >>> import numpy as np
    >>> hours = np.arange(24 * 21) * 3600.0            # three weeks, hourly
    >>> noise = np.random.default_rng(0).normal(0, 2, hours.size)
    >>> volume = 50 + 30 * np.sin(2 * np.pi * hours / 86_400) + noise
    >>> det = SeasonalAnomalyDetector()
    >>> det.learn_many(volume, hours)
    >>> t = hours[-1] + 3600.0
    >>> normal = 50 + 30 * np.sin(2 * np.pi * t / 86_400)
    >>> det.score_one(normal, t) < 0.05, det.score_one(normal + 40, t) > 0.5
    (True, True)
    >>> v = det.verdict_one(normal - 40, t)
    >>> v.direction, v.is_anomaly, bool(abs(v.expected - normal) < 5)
    ('drop', True, True)
    """

    __slots__ = (
        "_abs_r", "_daily", "_level", "_n", "_recent", "_run_len", "_run_sign", "_run_sum", "_scale", "_t_first",
        "_t_prev", "_tail",
        "_weekly", "clip", "decay", "level_rate", "patience", "scale_rate", "season_rate", "tail_p",
        "warmup", "z_alert",
    )

    def __init__(self, *, level_rate: float = 0.05, season_rate: float = 0.1, scale_rate: float = 0.02,
                 clip: float = 3.0, patience: int = 12, z_alert: float = 3.0, warmup: int = 100,
                 tail_p: float = 0.005, decay: float = 0.98, daily_knots: int = 24) -> None:
        self.level_rate = level_rate
        self.season_rate = season_rate
        self.scale_rate = scale_rate
        self.clip = clip
        self.patience = patience
        self.z_alert = z_alert
        self.warmup = warmup
        self.tail_p = tail_p
        self.decay = decay
        self._n = 0
        self._abs_r = 0.0
        self._level = self._scale = self._run_sum = self._recent = self._t_first = self._t_prev = 0.0
        self._run_len = self._run_sign = 0
        self._tail = _TAIL_MIN
        self._daily = array("d", bytes(8 * daily_knots))
        self._weekly = array("d", bytes(8 * 7))

    # -- the river-shaped API ---------------------------------------------------------------
    def learn_one(self, x: float, t: float | None = None) -> None:
        """Learn one value (``t``: POSIX seconds, optional)."""
        self._run([float(x)], None if t is None else [float(t)], False, True)

    def score_one(self, x: float, t: float | None = None) -> float:
        """Alerting score in [0, 1] of one value, without learning it."""
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

    def verdict_one(self, x: float, t: float | None = None) -> AnomalyVerdict | None:
        """Explain one value (not learnt) against the baseline; ``None`` during the cold start."""
        if self._n < self.warmup:
            return None
        x = float(x)
        expected = self._level + self._season(t)
        floor = max(1e-9 + 1e-6 * abs(self._level), _SCALE_FLOOR_SHARE * self._abs_r)
        unit = max(self._scale, floor) * max(self._tail, _TAIL_MIN)
        z2 = ((x - expected) / unit) ** 2
        score = z2 / (z2 + self.z_alert**2)
        half = self.z_alert * unit
        return AnomalyVerdict(x, expected, (expected - half, expected + half), score,
                              score >= 0.5, "spike" if x >= expected else "drop")

    # -- state ------------------------------------------------------------------------------
    def snapshot(self) -> dict[str, Any]:
        """The learnt state as plain JSON-able values (restore with :meth:`restore`)."""
        return {"n": self._n, "level": self._level, "scale": self._scale, "tail": self._tail,
                "recent": self._recent, "run_len": self._run_len, "run_sign": self._run_sign,
                "run_sum": self._run_sum, "t_first": self._t_first, "abs_r": self._abs_r,
                "t_prev": self._t_prev, "daily": list(self._daily), "weekly": list(self._weekly)}

    def restore(self, state: dict[str, Any]) -> SeasonalAnomalyDetector:
        """Load a state produced by :meth:`snapshot` (hyperparameters are not part of it)."""
        self._n, self._level, self._scale = int(state["n"]), float(state["level"]), float(state["scale"])
        self._tail, self._recent = float(state["tail"]), float(state["recent"])
        self._run_len, self._run_sign = int(state["run_len"]), int(state["run_sign"])
        self._run_sum = float(state["run_sum"])
        self._abs_r = float(state.get("abs_r", 0.0))
        self._t_first, self._t_prev = float(state["t_first"]), float(state["t_prev"])
        self._daily, self._weekly = array("d", state["daily"]), array("d", state["weekly"])
        return self

    # -- internals --------------------------------------------------------------------------
    def _season(self, t: float | None) -> float:
        if t is None:
            return 0.0
        k = len(self._daily)
        h = (float(t) % _DAY) / (_DAY / k)
        i0 = int(h)
        f = h - i0
        d = int(float(t) // _DAY + _EPOCH_WEEKDAY_SHIFT) % 7
        return self._daily[i0] * (1.0 - f) + self._daily[(i0 + 1) % k] * f + self._weekly[d]

    def _run_many(self, xs: npt.NDArray[np.float64], ts: npt.NDArray[np.float64] | None, score: bool,
                  learn: bool) -> npt.NDArray[np.float64]:
        return _run_many(self._run_compiled, self._run, xs, ts, score, learn)

    def _kernel_params(self) -> tuple[float, ...]:
        """The hyperparameters as the kernels take them (computed as :meth:`_run` computes them)."""
        return (float(self.level_rate), float(self.season_rate), float(self.scale_rate), float(self.clip),
                float(self.patience), float(self.warmup), float(self.z_alert**2), float(self.decay),
                math.exp(_TAIL_RATE * (1.0 - self.tail_p)), math.exp(-_TAIL_RATE * self.tail_p),
                _DAY / len(self._daily), _TAIL_MIN, _SCALE_FLOOR_SHARE, _EPOCH_WEEKDAY_SHIFT)

    def _kernel_state(self) -> tuple[float | int, ...]:
        """The scalar state in the kernels' order (:func:`~detectors._trend_kernels._baseline_loop`)."""
        return (self._level, self._scale, self._n, self._abs_r, self._run_len, self._run_sign, self._run_sum,
                self._recent, self._t_first, self._t_prev, self._tail)

    def _set_kernel_state(self, state: tuple[Any, ...]) -> None:
        (self._level, self._scale, self._n, self._abs_r, self._run_len, self._run_sign, self._run_sum,
         self._recent, self._t_first, self._t_prev, self._tail) = state

    def _run_compiled(self, xs: npt.NDArray[np.float64], ts: npt.NDArray[np.float64] | None, score: bool,
                      learn: bool) -> npt.NDArray[np.float64] | None:
        """:meth:`_run` compiled: the scores (empty unless ``score``), the state updated; or ``None``
        with nothing changed where the kernel declines the call (the Python loop then runs it)."""
        if not len(self._daily):
            return None  # (the Python loop raises ZeroDivisionError)
        res = seasonal_kernel(xs, xs if ts is None else ts, ts is not None, score, learn, *self._kernel_state(),
                              self._daily, self._weekly, *self._kernel_params())
        if res[0] >= 0:
            return None
        self._set_kernel_state(res[2:])
        out: npt.NDArray[np.float64] = res[1]
        return out

    def _run(self, xs: Sequence[float], ts: Sequence[float] | None, score: bool, learn: bool,
             residuals: bool = False) -> list[float]:
        # The reference loop: the compiled kernels (``_trend_kernels``) repeat it operation for
        # operation, and it runs the calls they do not (short ones, and those that raise here).
        # One tight loop over Python floats: the hot path of every worker (see bench/). Everything
        # it reads per point is a local; in a long call the profiles are Python lists (a list item
        # is ~2x cheaper to read and write than an array's: ~10 % of the loop); the knots of a time
        # of day are looked up and the weekday is computed once per day (~10 % more).
        # ``residuals``: emit each value's residual (value - expected, before learning it) instead
        # of its score, for detectors built on this baseline (RecordBreakDetector).
        out: list[float] = []
        level, scale, n, abs_r = self._level, self._scale, self._n, self._abs_r
        run_len, run_sign, run_sum = self._run_len, self._run_sign, self._run_sum
        as_lists = len(xs) > _LIST_MIN_POINTS
        daily: MutableSequence[float] = self._daily.tolist() if as_lists else self._daily
        weekly: MutableSequence[float] = self._weekly.tolist() if as_lists else self._weekly
        a_l, a_s, a_sc = self.level_rate, self.season_rate, self.scale_rate
        clip, patience, warmup, za2 = self.clip, self.patience, self.warmup, self.z_alert**2
        i0 = i1 = wd = 0
        recent, decay = self._recent, self.decay
        t_first, t_prev = self._t_first, self._t_prev
        day, wd_shift, floor_share = _DAY, _EPOCH_WEEKDAY_SHIFT, _SCALE_FLOOR_SHARE
        knot_width, last_knot = day / len(daily), len(daily) - 1
        tail, tail_min = self._tail, _TAIL_MIN
        up, down = math.exp(_TAIL_RATE * (1.0 - self.tail_p)), math.exp(-_TAIL_RATE * self.tail_p)
        has_t = ts is not None
        knots_at = _KNOTS_AT.setdefault(len(daily), {})
        knots_get = knots_at.get
        f = g = t = 0.0
        last_day = math.nan
        try:
            # (the public methods check that xs and ts have the same length: strict costs ~0.1 µs a call)
            for x, t in zip(xs, ts if ts is not None else repeat(0.0, len(xs)), strict=False):
                if has_t:
                    tod = t % day
                    knots = knots_get(tod)
                    if knots is None:
                        h = tod / knot_width
                        i0 = int(h)
                        f = h - i0
                        knots = (i0, i0 + 1 if i0 < last_knot else 0, f, 1.0 - f)
                        if len(knots_at) >= _KNOTS_AT_MAX:
                            knots_at.clear()
                        knots_at[tod] = knots
                    i0, i1, f, g = knots
                    t_day = t // day
                    if t_day != last_day:  # (NaN at first)
                        wd = int(t_day + wd_shift) % 7
                        last_day = t_day
                    expected = level + daily[i0] * g + daily[i1] * f + weekly[wd]
                else:
                    expected = level
                r = x - expected
                floor = 1e-9 + 1e-6 * (level if level >= 0.0 else -level)
                fa = floor_share * abs_r
                if floor < fa:
                    floor = fa
                sc = scale if scale > floor else floor
                if residuals:
                    out.append(r)
                elif score:
                    if n < warmup:
                        out.append(0.0)
                    else:
                        z = (r if r >= 0.0 else -r) / (sc * (tail if tail > tail_min else tail_min))
                        z2 = z * z
                        raw = z2 / (z2 + za2)
                        out.append(raw - recent if raw > recent else 0.0)
                if not learn:
                    continue
                n += 1
                if n == 1:
                    level = x
                    if has_t:
                        t_first = t_prev = t
                    continue
                lim = clip * sc
                if r > lim or r < -lim:
                    sign = 1 if r > 0.0 else -1
                    if sign == run_sign:
                        run_len += 1
                        run_sum += r
                    else:
                        run_sign, run_len, run_sum = sign, 1, r
                    rc = lim if r > 0.0 else -lim
                    if run_len >= patience and n > warmup:
                        # the deviation persisted: it is the new normal, not an outlier
                        level += run_sum / run_len
                        rc = 0.0
                        run_sign, run_len, run_sum = 0, 0, 0.0
                else:
                    run_sign, run_len, run_sum = 0, 0, 0.0
                    rc = r
                inv_n = 1.0 / n
                if n <= 3:  # no scale yet: learn from the raw residual
                    rc = r
                level += (a_l if a_l > inv_n else inv_n) * rc
                if has_t:
                    # seasonal rates are per cycle, not per point, so they do not depend on the
                    # sampling interval: a point covering dt seconds moves its knot by
                    # rate·dt/knot_width (its weekday by rate·dt/day); the first cycles are averaged
                    dt = t - t_prev  # n > 1 here
                    dt = knot_width if dt > knot_width else (0.0 if dt < 0.0 else dt)
                    t_prev = t
                    cycles = (t - t_first) / day
                    c1 = 1.0 + cycles
                    a = (a_s if a_s * c1 > 1.0 else 1.0 / c1) * dt / knot_width
                    daily[i0] += a * g * rc
                    daily[i1] += a * f * rc
                    c1 = 1.0 + cycles / 7.0
                    a = (a_s if a_s * c1 > 1.0 else 1.0 / c1) * dt / day
                    weekly[wd] += a * rc
                ar = r if r >= 0.0 else -r
                z = ar / (sc * (tail if tail > tail_min else tail_min))
                z2 = z * z
                raw = z2 / (z2 + za2)
                recent = recent * decay
                if raw > recent:
                    recent = raw
                if n > 3:
                    # running (1 - tail_p) quantile of |r|/scale, by stochastic approximation in log space
                    tail *= up if ar > tail * sc else down
                rate = a_sc if a_sc > inv_n else inv_n
                scale += rate * ((ar if ar < lim or n <= 3 else lim) - scale)
                abs_r += rate * (ar - abs_r)
        finally:
            if as_lists and learn:  # (also when a point raised: as if they had been updated in place)
                self._daily, self._weekly = array("d", daily), array("d", weekly)
        self._level, self._scale, self._n, self._tail, self._recent = level, scale, n, tail, recent
        self._abs_r = abs_r
        self._t_first, self._t_prev = t_first, t_prev
        self._run_len, self._run_sign, self._run_sum = run_len, run_sign, run_sum
        return out


def _run_many(compiled: Callable[..., npt.NDArray[np.float64] | None], reference: Callable[..., list[float]],
              xs: npt.NDArray[np.float64], ts: npt.NDArray[np.float64] | None, score: bool,
              learn: bool) -> npt.NDArray[np.float64]:
    """A detector's ``_run`` on arrays: the ``compiled`` kernel unless the call is short or the
    kernel declines it (returns ``None``), else the ``reference`` Python loop on lists."""
    if len(xs) >= _KERNEL_MIN_POINTS:
        out = compiled(xs, ts, score, learn)
        if out is not None:
            return out
    return np.asarray(reference(xs.tolist(), None if ts is None else ts.tolist(), score, learn), dtype=np.float64)


def _as_arrays(x: npt.ArrayLike, t: npt.ArrayLike | None) -> tuple[npt.NDArray[np.float64],
                                                                   npt.NDArray[np.float64] | None]:
    """Values and timestamps as writable, contiguous float64 arrays (one kernel signature for all)."""
    xs = _writable(np.asarray(x, dtype=np.float64).ravel())
    if t is None:
        return xs, None
    ts = _writable(np.asarray(t, dtype=np.float64).ravel())
    if len(ts) != len(xs):
        raise ValueError(f"{len(xs)} values but {len(ts)} timestamps")
    return xs, ts


def _writable(a: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    # a read-only array is another type to numba (another compilation): copy it instead
    return a if a.flags.writeable and a.flags.c_contiguous else a.copy()


def posix_seconds(timestamps: npt.ArrayLike) -> npt.NDArray[np.float64]:
    """``datetime64`` values as POSIX seconds (the ``t`` the detectors take).

    >>> posix_seconds(np.array(["1970-01-02T00:00"], dtype="datetime64[m]"))
    array([86400.])
    """
    return np.asarray(timestamps).astype("datetime64[s]").astype(np.int64).astype(np.float64)
