"""Compiled per-point loops of :class:`SeasonalAnomalyDetector` and :class:`RecordBreakDetector` (numba).

Each kernel is the detector's pure-Python ``_run`` loop, operation for operation and in the same
order, on float64 arrays and state passed as scalars: IEEE arithmetic gives the same bits
(no ``fastmath``, so no reassociation and no fused multiply-adds; ``%`` and ``//`` on floats
follow Python's rules in numba). The Python loops stay as the reference the tests compare the
kernels with (``tests/test_trend_kernels.py``) and as the fallback:

* a kernel commits nothing until its last point is done: it works on copies of the profiles and
  block records, writes them back into the caller's arrays in place only at the end, and returns
  the new scalar state (the caller stores it);
* where the Python loop would raise (a NaN or infinite timestamp, a time of day that rounds to a
  knot past the last one, a division by exactly zero) or where an int64 could overflow (a weekday
  of a timestamp beyond ~10^23 s), the kernel stops and returns that point's index as ``bad``;
  the caller then runs the Python loop on the whole call, which raises (or not) exactly as
  before, leaving the same partial state.

Compiled code is cached on disk (``NUMBA_CACHE_DIR`` if set and writable, else ``__pycache__``
next to this file, else the user's cache directory); where no cache directory is writable the
kernels are compiled in memory at their first call instead (a warning says so).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from typing import Any

import numpy as np
from numba import njit

_log = logging.getLogger(__name__)

_DAY = 86_400.0
#: False once numba found no writable cache directory (plain ``njit(cache=True)`` would raise at import)
_cache = True
#: int(t // day + 3) must fit an int64 (Python's int never overflows): beyond, the Python loop runs
_WEEKDAY_MAX = 4.0e18


def _compile(func: Callable[..., Any]) -> Any:
    # error_model="numpy": no implicit ZeroDivisionError checks; every division that Python could
    # raise on is tested explicitly (a flagged point makes the caller run the Python loop)
    global _cache
    if _cache:
        try:
            return njit(cache=True, error_model="numpy")(func)
        except RuntimeError as e:  # numba: "cannot cache function ...: no locator available" (no writable dir)
            _cache = False
            _log.warning("numba cannot cache the trend kernels (%s; set NUMBA_CACHE_DIR to a writable directory):"
                         " they are compiled in memory at their first call, in every process", e)
    return njit(error_model="numpy")(func)


@_compile
def _copy(a):
    # (the profiles are ``array.array`` buffers: numba indexes them but has no ``.copy()`` for them)
    c = np.empty(len(a))
    for i in range(len(a)):
        c[i] = a[i]
    return c


@_compile
def _write_back(dst, src):
    for i in range(src.shape[0]):
        dst[i] = src[i]


@_compile
def _baseline_loop(xs, ts, has_t, score, learn, residuals,
                   level, scale, n, abs_r, run_len, run_sign, run_sum, recent, t_first, t_prev, tail,
                   daily, weekly, a_l, a_s, a_sc, clip, patience, warmup, za2, decay, up, down,
                   knot_width, tail_min, floor_share, wd_shift):
    """``SeasonalAnomalyDetector._run`` on ``daily`` / ``weekly`` (updated in place).

    Returns ``(bad, out, level, scale, n, abs_r, run_len, run_sign, run_sum, recent, t_first,
    t_prev, tail)``; ``bad`` is -1, or the index of the first point the Python loop would raise on
    (the rest is then meaningless).
    """
    m = xs.shape[0]
    out = np.empty(m if (score or residuals) else 0)
    day = _DAY
    k = daily.shape[0]
    last_knot = k - 1
    i0 = i1 = wd = 0
    f = g = t = 0.0
    last_day = math.nan
    bad = -1
    for j in range(m):
        x = xs[j]
        if has_t:
            t = ts[j]
            tod = t % day
            h = tod / knot_width
            if not h < k:  # NaN (t not finite) or rounded up to k: the Python loop raises
                bad = j
                break
            i0 = int(h)
            f = h - i0
            i1 = i0 + 1 if i0 < last_knot else 0
            g = 1.0 - f
            t_day = t // day
            if t_day != last_day:  # (NaN at first)
                wd_f = t_day + wd_shift
                if not (wd_f < _WEEKDAY_MAX and wd_f > -_WEEKDAY_MAX):
                    bad = j
                    break
                wd = int(wd_f) % 7
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
            out[j] = r
        elif score:
            if n < warmup:
                out[j] = 0.0
            else:
                den = sc * (tail if tail > tail_min else tail_min)
                if den == 0.0:
                    bad = j
                    break
                z = (r if r >= 0.0 else -r) / den
                z2 = z * z
                if z2 + za2 == 0.0:
                    bad = j
                    break
                raw = z2 / (z2 + za2)
                out[j] = raw - recent if raw > recent else 0.0
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
                level += run_sum / run_len
                rc = 0.0
                run_sign, run_len, run_sum = 0, 0, 0.0
        else:
            run_sign, run_len, run_sum = 0, 0, 0.0
            rc = r
        inv_n = 1.0 / n
        if n <= 3:
            rc = r
        level += (a_l if a_l > inv_n else inv_n) * rc
        if has_t:
            dt = t - t_prev
            dt = knot_width if dt > knot_width else (0.0 if dt < 0.0 else dt)
            t_prev = t
            cycles = (t - t_first) / day
            c1 = 1.0 + cycles
            if a_s * c1 > 1.0:
                a = a_s * dt / knot_width
            elif c1 == 0.0:
                bad = j
                break
            else:
                a = (1.0 / c1) * dt / knot_width
            daily[i0] += a * g * rc
            daily[i1] += a * f * rc
            c1 = 1.0 + cycles / 7.0
            if a_s * c1 > 1.0:
                a = a_s * dt / day
            elif c1 == 0.0:
                bad = j
                break
            else:
                a = (1.0 / c1) * dt / day
            weekly[wd] += a * rc
        ar = r if r >= 0.0 else -r
        den = sc * (tail if tail > tail_min else tail_min)
        if den == 0.0:
            bad = j
            break
        z = ar / den
        z2 = z * z
        if z2 + za2 == 0.0:
            bad = j
            break
        raw = z2 / (z2 + za2)
        recent = recent * decay
        if raw > recent:
            recent = raw
        if n > 3:
            tail *= up if ar > tail * sc else down
        rate = a_sc if a_sc > inv_n else inv_n
        scale += rate * ((ar if ar < lim or n <= 3 else lim) - scale)
        abs_r += rate * (ar - abs_r)
    return bad, out, level, scale, n, abs_r, run_len, run_sign, run_sum, recent, t_first, t_prev, tail


@_compile
def seasonal_kernel(xs, ts, has_t, score, learn,
                    level, scale, n, abs_r, run_len, run_sign, run_sum, recent, t_first, t_prev, tail,
                    daily, weekly, a_l, a_s, a_sc, clip, patience, warmup, za2, decay, up, down,
                    knot_width, tail_min, floor_share, wd_shift):
    """The seasonal detector's loop; ``daily`` / ``weekly`` are updated in place only if ``bad`` is -1.

    Returns what :func:`_baseline_loop` returns (``out``: the scores, empty when not scoring).
    """
    d, w = _copy(daily), _copy(weekly)
    res = _baseline_loop(xs, ts, has_t, score, learn, False,
                         level, scale, n, abs_r, run_len, run_sign, run_sum, recent, t_first, t_prev, tail,
                         d, w, a_l, a_s, a_sc, clip, patience, warmup, za2, decay, up, down,
                         knot_width, tail_min, floor_share, wd_shift)
    if res[0] < 0 and learn:
        _write_back(daily, d)
        _write_back(weekly, w)
    return res


@_compile
def record_break_kernel(xs, ts, has_t, score, learn,
                        level, scale, n, abs_r, run_len, run_sign, run_sum, recent, t_first, t_prev, tail,
                        daily, weekly, a_l, a_s, a_sc, clip, patience, warmup, za2, decay, up, down,
                        knot_width, tail_min, floor_share, wd_shift,
                        rn, n_r, lo, hi, lo_r, hi_r, has_t0, t0, has_t_alert, t_alert, bseen, r_reset, blo, bhi,
                        r_warmup, warm_r, w_b, settle, quiet, alert, flat):
    """``RecordBreakDetector._run``: the baseline's loop (residuals), then the records' loop.

    ``daily``, ``weekly``, ``blo`` and ``bhi`` are updated in place only if ``bad`` is -1. Returns
    ``(bad, scores, baseline state (11 values, as :func:`_baseline_loop`), (n, n_r, lo, hi, lo_r,
    hi_r, has_t0, t0, has_t_alert, t_alert, bseen, r_reset))``.
    """
    m = xs.shape[0]
    base_n = n  # the baseline's points learnt (counted on below)
    d, w = _copy(daily), _copy(weekly)
    base = _baseline_loop(xs, ts, has_t, False, learn, True,
                          level, scale, n, abs_r, run_len, run_sign, run_sum, recent, t_first, t_prev, tail,
                          d, w, a_l, a_s, a_sc, clip, patience, warmup, za2, decay, up, down,
                          knot_width, tail_min, floor_share, wd_shift)
    bad, rs = base[0], base[1]
    out = np.empty(m if score else 0)
    vlo, vhi = _copy(blo), _copy(bhi)
    day = _DAY
    k = len(blo) if has_t else 0
    width = day / (k if k else 1)
    if not has_t:
        quiet = 0.0
    calc = score or quiet > 0.0
    floor = 1e-12 + flat * (hi if hi >= -lo else -lo)
    span = hi - lo if hi - lo > floor else floor
    sr = hi_r - lo_r if hi_r - lo_r > floor else floor
    b = 0
    t = 0.0
    for j in range(m if bad < 0 else 0):
        x = xs[j]
        r = rs[j]
        if has_t:
            t = ts[j]
        if k:
            hb = (t % day) / width
            if not hb < k:  # rounded up to k: the Python loop raises (or reads no record)
                bad = j
                break
            b = int(hb)
        e = 0.0
        if calc and rn >= r_warmup:
            if span == 0.0 or sr == 0.0:  # (cannot be: both are at least 1e-12 or NaN)
                bad = j
                break
            e = (x - hi) / span if x > hi else ((lo - x) / span if x < lo else 0.0)
            if n_r >= warm_r:
                dd = (r - hi_r) / sr if r > hi_r else ((lo_r - r) / sr if r < lo_r else 0.0)
                if dd > e:
                    e = dd
            if k and has_t0 and t - t0 >= settle and (bseen >> b) & 1:
                v = vhi[b]
                if x > v:
                    dd = w_b * (x - v) / span
                else:
                    v = vlo[b]
                    dd = w_b * (v - x) / span if x < v else 0.0
                if dd > e:
                    e = dd
        quiet_now = has_t_alert and t - t_alert < quiet
        if score:
            out[j] = e / (1.0 + e) if e > 0.0 and not quiet_now else 0.0
        if not learn:
            continue
        if quiet != 0.0 and e >= alert and e > 0.0 and not quiet_now:
            has_t_alert = True
            t_alert = t
        if has_t and not has_t0:
            has_t0 = True
            t0 = t
        if k:
            if not (bseen >> b) & 1:
                vlo[b] = vhi[b] = x
                bseen |= 1 << b
            elif x < vlo[b]:
                vlo[b] = x
            elif x > vhi[b]:
                vhi[b] = x
        moved = True
        if rn == 0:
            lo = hi = x
        elif x < lo:
            lo = x
        elif x > hi:
            hi = x
        else:
            moved = False
        rn += 1
        if base_n >= r_warmup:  # (the detector's warmup, not the baseline's)
            if not r_reset and has_t and has_t0 and t - t0 >= day:
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
    if bad < 0 and learn:
        _write_back(daily, d)
        _write_back(weekly, w)
        _write_back(blo, vlo)
        _write_back(bhi, vhi)
    return bad, out, base, (rn, n_r, lo, hi, lo_r, hi_r, has_t0, t0, has_t_alert, t_alert, bseen, r_reset)
