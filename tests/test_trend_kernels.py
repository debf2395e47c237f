"""The compiled loops (``detectors/_trend_kernels.py``) against the pure-Python reference, bit for bit.

Two detectors start from the same state; one runs every call through the reference loop
(``_run``, Python floats), the other through the kernel (``_run_compiled``, arrays). After each
call the outputs must have the same bytes and the states (every field of ``snapshot()``, floats
compared by their IEEE bits, so ``-0.0`` / ``0.0`` count) must be equal. Where the reference
raises, the kernel must decline the call without changing anything, so that the public methods
(which then run the reference) raise exactly as before.

NaN is compared as NaN, not by its sign and payload bits: those are not a property of the
reference either. x86 returns the first operand's NaN when both are NaN, and CPython runs the same
``a + b`` through its specialised instruction or through ``float_add`` (first calls, or under a
tracer such as coverage), whose compiled operand orders differ: the same Python code gives
``nan`` with the sign bit set or not depending on how it was interpreted.
"""

from __future__ import annotations

import math
import struct
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from detectors import RecordBreakDetector, SeasonalAnomalyDetector, compile_trend_kernels, posix_seconds
from detectors._trend_kernels import record_break_kernel, seasonal_kernel
from opsintel.evaluation.nab import read_series_csv
from tests.support import SHARED_DATA

HOUR, DAY = 3600.0, 86_400.0
Detector = SeasonalAnomalyDetector | RecordBreakDetector


def bits(obj: Any) -> Any:
    """``obj`` with every float replaced by its IEEE-754 bytes, and every scalar tagged with its type."""
    if type(obj) is float:
        return "float", b"NaN" if math.isnan(obj) else struct.pack("<d", obj)
    if obj is None or type(obj) in (bool, int, str):
        return type(obj).__name__, obj
    if type(obj) is dict:
        return {k: bits(v) for k, v in obj.items()}
    if type(obj) in (list, tuple):
        return type(obj).__name__, [bits(v) for v in obj]
    raise AssertionError(f"unexpected {type(obj).__name__} in a snapshot: {obj!r}")


def as_bytes(values: Any) -> bytes:
    """The float64 bytes of ``values``, every NaN made the same NaN."""
    a = np.asarray(values, dtype=np.float64)
    return np.where(np.isnan(a), np.nan, a).tobytes()


def step(ref: Detector, ker: Detector, xs: np.ndarray, ts: np.ndarray | None, score: bool, learn: bool) -> bool:
    """One call through each path; the outputs and then the states must be bit-identical.

    Returns False if the reference raised: the kernel must then have declined the call and left
    its state alone (the states differ from there on).
    """
    before = bits(ker.snapshot())
    got = ker._run_compiled(xs, ts, score, learn)
    try:
        expected = ref._run(xs.tolist(), None if ts is None else ts.tolist(), score, learn)
    except (ValueError, IndexError, ZeroDivisionError):
        assert got is None, "the kernel ran a call the reference raises on"
        assert bits(ker.snapshot()) == before, "a declined call changed the state"
        return False
    assert got is not None, "the kernel declined a call the reference runs"
    assert as_bytes(expected) == as_bytes(got)
    assert bits(ref.snapshot()) == bits(ker.snapshot())
    return True


# -- random series ------------------------------------------------------------------------------
def random_times(rng: np.random.Generator, n: int) -> np.ndarray:
    """Regular steps with zero and negative steps, gaps of hours to weeks, and jittered steps."""
    base = float(rng.choice([HOUR, 300.0, 60.0, 7 * HOUR]))
    steps = np.full(n, base)
    kind = rng.random(n)
    steps[kind < 0.04] = 0.0
    back = (kind >= 0.04) & (kind < 0.08)
    steps[back] = -base * rng.integers(1, 30, back.sum())
    gap = (kind >= 0.08) & (kind < 0.10)
    steps[gap] = base * rng.integers(10, 2_000, gap.sum())
    jitter = (kind >= 0.10) & (kind < 0.15)
    steps[jitter] = rng.uniform(0.0, 2 * base, jitter.sum())
    start = float(rng.choice([0.0, 1.4e9, -3.5 * DAY, rng.uniform(-2e9, 2e9), 1.0e15]))
    return start + np.cumsum(steps)


def random_values(rng: np.random.Generator, t: np.ndarray) -> np.ndarray:
    """A daily / weekly shape with noise, spikes, level shifts (the patience branch), zeros, NaN."""
    n = t.size
    level = float(rng.choice([0.0, 3.0, 50.0, -20.0, 1e6]))
    x = level + rng.uniform(0, 30) * np.sin(2 * np.pi * (t % DAY) / DAY) + rng.normal(0, rng.uniform(0.1, 5), n)
    x += 10.0 * (((t // DAY + 3) % 7) >= 5)
    spikes = rng.random(n) < 0.03
    x[spikes] += rng.choice([-1, 1], spikes.sum()) * rng.uniform(20, 300, spikes.sum())
    for _ in range(rng.integers(0, 4)):  # level shifts held for long enough to become the new normal
        at = rng.integers(0, n)
        x[at:] += rng.choice([-1, 1]) * rng.uniform(30, 200)
    if rng.random() < 0.3:
        x = np.round(np.maximum(x, 0.0))  # counts: quiet hours of exact zeros
    if rng.random() < 0.2:
        x[rng.integers(n // 2, n)] = np.nan
    if rng.random() < 0.1:
        x[rng.integers(0, n)] = math.inf
    return x


def random_detector(rng: np.random.Generator) -> Callable[[], Detector]:
    """A factory of one of the two detectors with random hyperparameters (edge values included)."""
    if rng.random() < 0.35:
        kw: dict[str, Any] = {"warmup": int(rng.choice([0, 1, 3, 24, 100])),
                              "patience": int(rng.choice([1, 3, 12])),
                              "daily_knots": int(rng.choice([1, 2, 24, 288])),
                              "level_rate": float(rng.choice([0.05, 0.5, 1.0])),
                              "season_rate": float(rng.choice([0.1, 0.9, 2.0])),
                              "clip": float(rng.choice([3.0, 0.5])), "tail_p": float(rng.choice([0.005, 0.2])),
                              "decay": float(rng.choice([0.98, 0.5]))}
        return lambda: SeasonalAnomalyDetector(**kw)
    baseline = {} if rng.random() < 0.5 else {"warmup": int(rng.choice([0, 10, 200])),
                                               "patience": int(rng.choice([2, 12])),
                                               "daily_knots": int(rng.choice([1, 24, 288]))}
    kw = {"warmup": int(rng.choice([0, 2, 24, 100])), "blocks": int(rng.choice([0, 1, 6, 24, 62])),
          "block_days": float(rng.choice([0.0, 1.0, 3.0])), "quiet_s": float(rng.choice([0.0, 3600.0, 86_400.0])),
          "alert_exceedance": float(rng.choice([0.02, 0.0, 0.5])), "block_weight": float(rng.choice([0.2, 1.0])),
          "baseline": baseline}
    return lambda: RecordBreakDetector(**kw)


@pytest.mark.parametrize("seed", range(40))
def test_random_series_in_random_calls_are_bit_identical(seed: int) -> None:
    rng = np.random.default_rng(seed)
    calls = declined = 0
    for _ in range(6):
        make = random_detector(rng)
        ref, ker = make(), make()
        n = int(rng.integers(50, 900))
        t = random_times(rng, n)
        x = random_values(rng, t)
        with_t = rng.random() < 0.8
        i = 0
        while i < n:
            # short calls run on the arrays in place, long ones (> _LIST_MIN_POINTS) on list copies
            size = int(rng.choice([1, 2, 3, 7, 8, 9, 16, 75, 300]))
            score, learn = [(True, True), (True, True), (False, True), (True, False)][rng.integers(0, 4)]
            calls += 1
            if not step(ref, ker, x[i:i + size], t[i:i + size] if with_t else None, score, learn):
                declined += 1
                break  # (a point 1 or 7 days before the first one: the reference divides by zero)
            if learn:
                i += size
            if rng.random() < 0.05:
                with_t = not with_t  # a call without timestamps in a timed series, and back
            if rng.random() < 0.05:
                ker = make().restore(ker.snapshot())  # a restored copy carries on the same
    assert declined <= 2 < calls


def test_one_call_equals_the_reference_over_a_long_series() -> None:
    # 60 days hourly, one call: the warm-up, the first day's residual restart, the block records
    # settling, level shifts and the quiet period all happen inside a single kernel call
    rng = np.random.default_rng(7)
    t = np.arange(24 * 60) * HOUR + 1.4e9
    x = 40 + 25 * np.sin(2 * np.pi * t / DAY) + rng.normal(0, 2, t.size)
    x[500:] += 60.0
    x[900:905] -= 80.0
    for ref, ker in [(SeasonalAnomalyDetector(), SeasonalAnomalyDetector()),
                     (RecordBreakDetector(), RecordBreakDetector()),
                     (RecordBreakDetector(blocks=0), RecordBreakDetector(blocks=0))]:
        step(ref, ker, x, t, True, True)
        step(ref, ker, x[:50] * 3, t[:50] + 60 * DAY, True, False)


@pytest.mark.parametrize("name", ["realAWSCloudwatch/ec2_cpu_utilization_24ae8d.csv",
                                  "artificialWithAnomaly/art_daily_jumpsup.csv"])
@pytest.mark.parametrize("chunk", [75, 1, 10_000])
def test_nab_series_is_bit_identical(name: str, chunk: int) -> None:
    path = SHARED_DATA / "nab" / "data" / name
    if not path.exists():
        pytest.skip("../shared/data/nab not present")
    stamps, values = read_series_csv(Path(path))
    t = posix_seconds(stamps)
    for ref, ker in [(RecordBreakDetector(), RecordBreakDetector()),
                     (SeasonalAnomalyDetector(), SeasonalAnomalyDetector())]:
        for i in range(0, values.size, chunk):
            step(ref, ker, values[i:i + chunk], t[i:i + chunk], True, True)


# -- where the reference raises or cannot be followed ------------------------------------------
def reference_and_public(cls: Callable[[], Detector], t_first: float, xs: list[float], ts: list[float]) -> None:
    """The public ``learn_many`` (kernel declines, reference runs) against the reference alone.

    Both first learn one point at ``t_first``.
    """
    ref, pub = cls(), cls()
    ref._run([5.0], [t_first], False, True)
    pub._run([5.0], [t_first], False, True)
    before = bits(pub.snapshot())
    assert pub._run_compiled(np.array(xs), np.array(ts), True, True) is None
    assert bits(pub.snapshot()) == before, "a declined call changed the state"
    outcome = []
    for det, run in [(ref, lambda: ref._run(xs, ts, False, True)), (pub, lambda: pub.learn_many(xs, ts))]:
        try:
            run()
            outcome.append(None)
        except (ValueError, IndexError, ZeroDivisionError) as e:
            outcome.append(type(e))
        outcome.append(bits(det.snapshot()))
    assert outcome[:2] == outcome[2:]


TEN = [10.0, 12.0, 9.0, 11.0, 10.0, 13.0, 8.0, 10.0, 11.0, 12.0]


@pytest.mark.parametrize("cls", [SeasonalAnomalyDetector, RecordBreakDetector])
@pytest.mark.parametrize(("t_first", "ts", "error"), [
    (0.0, [HOUR * i for i in range(1, 6)] + [math.nan] + [HOUR * i for i in range(7, 11)], ValueError),
    (0.0, [HOUR * i for i in range(1, 6)] + [math.inf] + [HOUR * i for i in range(7, 11)], ValueError),
    (0.0, [HOUR * i for i in range(1, 10)] + [-1e-20], IndexError),  # t % day rounds up to day: knot 24
    (DAY, [DAY + HOUR * i for i in range(1, 6)] + [0.0] + [HOUR * i for i in range(7, 11)],
     ZeroDivisionError),  # a point one day before the first: the daily rate's 1 / (1 + cycles)
    (8 * DAY, [8 * DAY + HOUR * i for i in range(1, 6)] + [DAY] + [HOUR * i for i in range(7, 11)],
     ZeroDivisionError),  # seven days before: the weekday rate's
    (1e30, [1e30 + 1e20 * i for i in range(1, 11)], None),  # a weekday beyond int64: fine in Python
])
def test_calls_the_reference_raises_on_are_declined(cls, t_first: float, ts: list[float],
                                                     error: type | None) -> None:
    reference_and_public(cls, t_first, TEN, ts)
    ref = cls()
    ref._run([5.0], [t_first], False, True)
    if error is None:
        ref._run(TEN, ts, False, True)
    else:
        with pytest.raises(error):
            ref._run(TEN, ts, False, True)


def test_a_zero_alert_threshold_declines_where_python_divides_by_zero() -> None:
    # z_alert = 0 and a residual of exactly 0: the reference divides 0 by 0
    xs, ts = [5.0] * 10, [HOUR * i for i in range(10)]
    reference_and_public(lambda: SeasonalAnomalyDetector(z_alert=0.0), 0.0, xs, ts)
    with pytest.raises(ZeroDivisionError):
        SeasonalAnomalyDetector(z_alert=0.0).learn_many(xs, ts)


def test_more_blocks_than_an_int64_holds_run_the_reference() -> None:
    t = np.arange(24 * 5) * HOUR
    x = np.sin(t / 5_000.0)
    ref, pub = RecordBreakDetector(blocks=70, warmup=10), RecordBreakDetector(blocks=70, warmup=10)
    assert pub._run_compiled(x, t, True, True) is None
    assert as_bytes(ref._run(x.tolist(), t.tolist(), True, True)) == as_bytes(pub.score_learn_many(x, t))
    assert bits(ref.snapshot()) == bits(pub.snapshot())


# -- the public methods -------------------------------------------------------------------------
@pytest.mark.parametrize("cls", [SeasonalAnomalyDetector, RecordBreakDetector])
def test_public_methods_equal_the_reference_at_every_call_size(cls) -> None:
    rng = np.random.default_rng(3)
    t = np.arange(24 * 12) * HOUR
    x = 30 + 10 * np.sin(2 * np.pi * t / DAY) + rng.normal(0, 1, t.size)
    ref, pub = cls(warmup=24), cls(warmup=24)
    i = 0
    for size in [1, 2, 3, 4, 9, 75, 1, 2, 3, 200, 5, 1]:
        xs, ts = x[i:i + size], t[i:i + size]
        assert as_bytes(ref._run(xs.tolist(), ts.tolist(), True, False)) == as_bytes(pub.score_many(xs, ts))
        assert as_bytes(ref._run(xs.tolist(), ts.tolist(), True, True)) == as_bytes(pub.score_learn_many(xs, ts))
        assert bits(ref.snapshot()) == bits(pub.snapshot())
        i += size
    if cls is RecordBreakDetector:
        xs, ts = x[i:i + 75].tolist(), t[i:i + 75].tolist()
        got = pub.score_learn_floats(xs, ts)
        assert type(got) is list and all(type(v) is float for v in got)
        assert as_bytes(ref._run(xs, ts, True, True)) == as_bytes(got)
        assert bits(ref.snapshot()) == bits(pub.snapshot())


def test_each_kernel_is_compiled_once_and_ahead_of_time_by_compile_trend_kernels() -> None:
    # every caller passes the same types (float64 arrays, Python floats / ints / bools): a second
    # signature would be a silent recompilation (seconds) in the worker, which compiles them at start
    compile_trend_kernels()
    assert len(seasonal_kernel.signatures) == 1
    assert len(record_break_kernel.signatures) == 1
