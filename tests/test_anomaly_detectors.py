"""One contract over every trend-anomaly detector, then the seasonal detector's own behaviour."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from detectors import (
    AnomalyVerdict,
    BypassRule,
    HalfSpaceTreesDetector,
    IsolationForestWindowsDetector,
    RecordBreakDetector,
    SeasonalAnomalyDetector,
    SustainedAnomalyTracker,
    WindowedGaussianDetector,
)

HOUR = 3600.0

#: small settings so the contract runs in a second or two per detector
FACTORIES: dict[str, Callable[[int], Any]] = {
    "recordBreak": lambda seed: RecordBreakDetector(),
    "seasonal": lambda seed: SeasonalAnomalyDetector(),
    "halfSpaceTrees": lambda seed: HalfSpaceTreesDetector(n_trees=10, height=8, window_size=100, seed=seed),
    "isolationForest": lambda seed: IsolationForestWindowsDetector(
        width=4, buffer=300, refit=150, n_estimators=20, seed=seed),
    "windowedGaussian": lambda seed: WindowedGaussianDetector(window=500, step=50),
}


def ticket_volume(days: int = 21, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Hourly tickets of one service: a daily cycle, quieter weekends, Poisson-like noise."""
    rng = np.random.default_rng(seed)
    t = np.arange(days * 24) * HOUR
    hour, weekday = (t % 86_400) / HOUR, (t // 86_400 + 3) % 7
    mean = 40 + 25 * np.sin(2 * np.pi * (hour - 6) / 24) - 15 * (weekday >= 5)
    return t, mean + rng.normal(0, 2.0, t.size)


def with_anomalies(x: np.ndarray, start: int = 240) -> tuple[np.ndarray, np.ndarray]:
    """Isolated spikes (+30) and drops (-30) every 23 hours after ``start``."""
    x, y = x.copy(), np.zeros(x.size, dtype=bool)
    for k, i in enumerate(range(start, x.size, 23)):
        x[i] += 30.0 if k % 2 == 0 else -30.0
        y[i] = True
    return x, y


@pytest.fixture(params=sorted(FACTORIES))
def factory(request: pytest.FixtureRequest) -> Callable[[int], Any]:
    return FACTORIES[request.param]


def test_scores_are_in_unit_interval_and_beat_chance_on_spikes_and_drops(factory) -> None:
    t, x = ticket_volume()
    x, y = with_anomalies(x)
    scores = factory(7).score_learn_many(x, t)
    assert scores.shape == x.shape and np.all((scores >= 0) & (scores <= 1))
    later = slice(240, None)
    assert roc_auc_score(y[later], scores[later]) > 0.5


def test_score_does_not_learn(factory) -> None:
    t, x = ticket_volume(days=10)
    a, b = factory(3), factory(3)
    a.learn_many(x[:200], t[:200])
    b.learn_many(x[:200], t[:200])
    a.score_one(500.0, t[200])
    a.score_many(x[200:] * 3, t[200:])
    np.testing.assert_array_equal(a.score_learn_many(x[200:], t[200:]), b.score_learn_many(x[200:], t[200:]))


def test_snapshot_restore_round_trip(factory) -> None:
    t, x = ticket_volume(days=10)
    a = factory(5)
    a.learn_many(x[:200], t[:200])
    state = a.snapshot()
    b = factory(5).restore(state)
    np.testing.assert_array_equal(a.score_learn_many(x[200:], t[200:]), b.score_learn_many(x[200:], t[200:]))


def test_same_seed_same_scores_and_batch_equals_one_at_a_time(factory) -> None:
    t, x = ticket_volume(days=8)
    x, _ = with_anomalies(x, start=100)
    batch = factory(11).score_learn_many(x, t)
    np.testing.assert_array_equal(batch, factory(11).score_learn_many(x, t))
    one = factory(11)
    looped = []
    for v, ts in zip(x.tolist(), t.tolist(), strict=True):
        looped.append(one.score_one(v, ts))
        one.learn_one(v, ts)
    np.testing.assert_allclose(batch, looped, rtol=0, atol=1e-12)


@pytest.mark.parametrize("cls", [RecordBreakDetector, SeasonalAnomalyDetector])
def test_chunking_changes_no_bit(cls) -> None:
    # long calls run on list copies of the daily / weekly profiles, short ones on the arrays
    # themselves: any mix of chunk sizes gives exactly the scores and state of one call
    t, x = ticket_volume(days=9)
    x, _ = with_anomalies(x, start=120)
    whole = cls(warmup=24)
    expected = whole.score_learn_many(x, t)
    chunked, got, i = cls(warmup=24), [], 0
    for n in [1, 2, 9, 3, 40, 8, 1, 100] * 4:
        got += chunked.score_learn_many(x[i:i + n], t[i:i + n]).tolist()
        i += n
    got += chunked.score_learn_many(x[i:], t[i:]).tolist()
    assert got == expected.tolist() and chunked.snapshot() == whole.snapshot()


def test_record_break_score_learn_floats_is_score_learn_many_on_lists() -> None:
    t, x = ticket_volume(days=9)
    x, _ = with_anomalies(x, start=120)
    a, b = RecordBreakDetector(blocks=0), RecordBreakDetector(blocks=0)
    for lo in range(0, x.size, 50):
        xs, ts = x[lo:lo + 50].tolist(), t[lo:lo + 50].tolist()
        assert b.score_learn_floats(xs, ts) == a.score_learn_many(xs, ts).tolist()
    assert a.snapshot() == b.snapshot()
    with pytest.raises(ValueError, match="3 values but 2 timestamps"):
        b.score_learn_floats([1.0, 2.0, 3.0], [1.0, 2.0])


def test_a_point_that_raises_leaves_the_profiles_as_in_place_updates_would(monkeypatch) -> None:
    # a NaN timestamp raises inside the loop; the profiles then hold the points before it, on
    # the list-copy path (long calls) exactly as on the in-place path (short calls)
    import detectors._seasonal as seasonal

    t, x = ticket_volume(days=3)
    ts = t.tolist()
    ts[60] = float("nan")
    states = []
    for min_points in (8, 10_000):  # list copies, then in place
        monkeypatch.setattr(seasonal, "_LIST_MIN_POINTS", min_points)
        det = SeasonalAnomalyDetector(warmup=24)
        det.learn_many(x[:30], t[:30])
        with pytest.raises(ValueError):
            det.learn_many(x[30:], ts[30:])
        states.append(det.snapshot())
    assert states[0] == states[1] and states[0]["daily"] != SeasonalAnomalyDetector().snapshot()["daily"]


# -- the seasonal detector ---------------------------------------------------------------------
def trained(days: int = 21, **kw: Any) -> tuple[SeasonalAnomalyDetector, np.ndarray, np.ndarray]:
    t, x = ticket_volume(days)
    det = SeasonalAnomalyDetector(**kw)
    det.learn_many(x, t)
    return det, t, x


def truth(t: float) -> float:
    hour, weekday = (t % 86_400) / HOUR, (t // 86_400 + 3) % 7
    return 40 + 25 * np.sin(2 * np.pi * (hour - 6) / 24) - 15 * (weekday >= 5)


def test_learns_the_daily_and_weekly_cycle() -> None:
    det, t, _ = trained(days=35)
    next_day = t[-1] + HOUR * np.arange(1, 49)
    errors = [abs(det.verdict_one(truth(ts), ts).expected - truth(ts)) for ts in next_day]
    assert max(errors) < 5.0  # daily amplitude 25, weekend offset 15, noise sd 2
    assert max(det.score_many([truth(ts) for ts in next_day], next_day)) < 0.1


def test_spike_and_drop_are_flagged_with_their_direction() -> None:
    det, t, _ = trained()
    ts = t[-1] + HOUR
    # +-40 is 20 noise sd; the band is wider than the noise because the learnt profile is not exact
    spike, drop, normal = det.verdict_one(truth(ts) + 40, ts), det.verdict_one(truth(ts) - 40, ts), \
        det.verdict_one(truth(ts), ts)
    assert spike.is_anomaly and spike.direction == "spike" and spike.observed > spike.band[1]
    assert drop.is_anomaly and drop.direction == "drop" and drop.observed < drop.band[0]
    assert not normal.is_anomaly and normal.band[0] < normal.observed < normal.band[1]
    assert det.score_one(truth(ts) + 40, ts) > 0.5 > det.score_one(truth(ts), ts)


def test_outliers_do_not_poison_the_baseline() -> None:
    t, x = ticket_volume(days=21)
    dirty = x.copy()
    dirty[::10] += 200.0  # 10 % of the hours carry a huge outlier
    clean_det, dirty_det = SeasonalAnomalyDetector(), SeasonalAnomalyDetector()
    clean_det.learn_many(x, t)
    dirty_det.learn_many(dirty, t)
    ts = t[-1] + HOUR
    dirty_expected = dirty_det.verdict_one(truth(ts), ts).expected
    assert abs(dirty_expected - clean_det.verdict_one(truth(ts), ts).expected) < 3.0
    assert abs(dirty_expected - truth(ts)) < 5.0  # a mean would sit ~20 higher


def test_a_persistent_shift_becomes_the_new_normal() -> None:
    t, x = ticket_volume(days=21)
    x[400:] += 60.0
    scores = SeasonalAnomalyDetector().score_learn_many(x, t)
    assert scores[400] > 0.5                 # the onset alerts
    assert scores[440:].max() < 0.2          # then it is the baseline, not an alert per hour


def test_cold_start_scores_zero_and_gives_no_verdict() -> None:
    det = SeasonalAnomalyDetector(warmup=50)
    t, x = ticket_volume(days=3)
    assert det.verdict_one(1e6, t[0]) is None
    assert not det.score_learn_many(x[:50] * 10, t[:50]).any()
    assert det.verdict_one(x[50], t[50]) is not None


def test_snapshot_is_json() -> None:
    det, t, x = trained(days=3)
    back = SeasonalAnomalyDetector().restore(json.loads(json.dumps(det.snapshot())))
    assert back.score_one(x[5] + 20, t[-1] + HOUR) == det.score_one(x[5] + 20, t[-1] + HOUR)


# -- the record-break detector (the default) ----------------------------------------------------
def test_record_break_flags_new_extremes_and_seasonal_records_only() -> None:
    t, x = ticket_volume(days=21)
    det = RecordBreakDetector()
    scores = det.score_learn_many(x, t)
    # two weeks in, noise rarely breaks a record, and then only barely (the records of a
    # four-hour block of the day break a few more times than the all-time ones, far below an alert)
    late = scores[24 * 14:]
    assert (late > 0.0).sum() <= 6 and late.max() < 0.05
    assert not (late >= det.alert_exceedance / (1.0 + det.alert_exceedance)).any()
    ts = t[-1] + HOUR
    assert det.score_one(x.max() + 10, ts) > 0.1           # a new all-time high
    # a daytime level at night is inside the all-time range, but a record for a night hour
    night = t[-1] + HOUR * next(h for h in range(1, 25) if truth(t[-1] + HOUR * h) < 20)
    assert det.score_one(truth(night) + 40, night) > 0.1
    assert det.score_one(truth(night), night) == 0.0


def test_record_break_once_reached_a_level_is_no_longer_a_record() -> None:
    t, x = ticket_volume(days=21)
    x[300] += 80.0
    x[400] += 80.0
    scores = RecordBreakDetector().score_learn_many(x, t)
    assert scores[300] > 0.3 and scores[400] < scores[300] / 2


def test_record_break_verdict_explains_the_band_and_direction() -> None:
    t, x = ticket_volume(days=21)
    det = RecordBreakDetector()
    assert det.verdict_one(x[0], t[0]) is None          # cold start
    det.learn_many(x, t)
    ts = t[-1] + HOUR
    spike, drop, normal = (det.verdict_one(truth(ts) + d, ts) for d in (60.0, -60.0, 0.0))
    assert spike.is_anomaly and spike.direction == "spike" and spike.observed > spike.band[1]
    assert drop.is_anomaly and drop.direction == "drop" and drop.observed < drop.band[0]
    assert not normal.is_anomaly and normal.band[0] <= normal.observed <= normal.band[1]
    assert abs(normal.expected - truth(ts)) < 5.0


def test_record_break_alerts_once_per_quiet_period() -> None:
    t, x = square_days(days=4)
    i = 3 * 288 + 100
    x[i], x[i + 4] = 150.0, 200.0                        # two new highs 20 minutes apart
    quiet = RecordBreakDetector().score_learn_many(x, t)
    loud = RecordBreakDetector(quiet_s=0.0).score_learn_many(x, t)
    assert quiet[i] == loud[i] > 0.3
    assert quiet[i + 4] == 0.0 < loud[i + 4]               # inside the hour after the alert
    later = RecordBreakDetector()
    y = x.copy()
    y[i + 13] = 250.0                                      # 65 minutes after the alert: scored
    assert later.score_learn_many(y, t)[i + 13] > 0.1
    # the quiet period is state learnt with the points, not with the scores
    det = RecordBreakDetector()
    det.learn_many(x[:i + 1], t[:i + 1])
    assert det.score_one(x[i + 4], t[i + 4]) == 0.0
    back = RecordBreakDetector().restore(json.loads(json.dumps(det.snapshot())))
    assert back.score_one(x[i + 4], t[i + 4]) == 0.0 and back.score_one(x[i + 4], t[i] + 3600.0) > 0.0



def test_record_break_snapshot_is_json_and_scores_zero_while_cold() -> None:
    t, x = ticket_volume(days=3)
    det = RecordBreakDetector(warmup=50)
    assert not det.score_learn_many(x[:50] * 10, t[:50]).any()
    det.learn_many(x[50:], t[50:])
    back = RecordBreakDetector(warmup=50).restore(json.loads(json.dumps(det.snapshot())))
    probe = [x.max() + 5, x.min() - 5, x[7]]
    np.testing.assert_array_equal(back.score_many(probe, [t[-1] + HOUR] * 3),
                                  det.score_many(probe, [t[-1] + HOUR] * 3))


def square_days(days: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """5-minute values: 20 at night, 80 from 08:00 to 18:00 (NAB's ``art_daily`` shape), noise 2."""
    t = 1.6e9 - 1.6e9 % 86_400 + np.arange(days * 288) * 300.0
    hour = (t % 86_400) / HOUR
    return t, np.where((hour >= 8) & (hour < 18), 80.0, 20.0) + np.random.default_rng(seed).normal(0, 2, t.size)


def test_record_break_block_records_flag_a_value_out_of_place_for_its_time_of_day() -> None:
    # a flat 50 in the afternoon is inside the all-time range and the seasonal baseline cannot
    # follow the square shape tightly, but every afternoon so far was >= 70: a block record
    t, x = square_days(days=8)
    afternoon = slice(7 * 288 + 14 * 12, 7 * 288 + 17 * 12)  # day 8, 14:00-17:00
    x[afternoon] = 50.0
    with_blocks = RecordBreakDetector().score_learn_many(x, t)
    without = RecordBreakDetector(blocks=0).score_learn_many(x, t)
    first = afternoon.start
    assert with_blocks[first] > 0.05 and without[first] < 0.02
    # one alert for the episode: once 50 is this block's low record it is no longer a record
    assert (with_blocks[first + 1:afternoon.stop] > 0.0).sum() == 0
    # the block records score only once ``block_days`` days have passed: on day 2 the detector
    # scores as it does without them
    y = x[:2 * 288].copy()
    y[288 + 14 * 12] = 50.0
    np.testing.assert_array_equal(RecordBreakDetector().score_learn_many(y, t[:2 * 288]),
                                  RecordBreakDetector(blocks=0).score_learn_many(y, t[:2 * 288]))


def test_record_break_block_records_need_timestamps_and_survive_json_snapshots() -> None:
    t, x = square_days(days=5)
    det = RecordBreakDetector()
    det.learn_many(x, t)
    probe_t = [t[-1] + 300.0 + 14 * HOUR] * 3                # next day, 14:00 (a high block)
    probe = [50.0, 79.0, 20.0]
    back = RecordBreakDetector().restore(json.loads(json.dumps(det.snapshot())))
    np.testing.assert_array_equal(back.score_many(probe, probe_t), det.score_many(probe, probe_t))
    assert det.score_many(probe, probe_t)[0] > 0.0 and det.score_many(probe, probe_t)[1] == 0.0
    assert det.score_many(probe).tolist() == [0.0, 0.0, 0.0]  # no time of day, no block records
    v = det.verdict_one(50.0, probe_t[0])
    assert v is not None and v.is_anomaly and v.band[0] > 50.0
    # a state saved before the block records existed restores; its block records start afresh
    old = {k: v for k, v in det.snapshot().items() if k not in ("t0", "block_lo", "block_hi", "block_seen")}
    legacy = RecordBreakDetector().restore(old)
    assert legacy.score_many(probe, probe_t)[0] == 0.0
    assert legacy.score_one(200.0, probe_t[0]) == det.score_one(200.0, probe_t[0]) > 0.5  # value records kept



# -- signals -----------------------------------------------------------------------------------
def verdict(direction: str, anomalous: bool) -> AnomalyVerdict:
    return AnomalyVerdict(1.0, 2.0, (1.5, 2.5), 0.9 if anomalous else 0.1, anomalous, direction)  # type: ignore[arg-type]


@pytest.mark.parametrize(("tickets", "alerts", "fires"), [
    (verdict("drop", True), verdict("spike", False), True),    # tickets fell, alerts steady: bypass
    (verdict("drop", True), verdict("spike", True), True),     # alerts even rose
    (verdict("drop", True), verdict("drop", True), False),     # both fell: demand really fell
    (verdict("spike", True), verdict("spike", False), False),  # a ticket spike is not a bypass
    (verdict("drop", False), verdict("spike", False), False),  # no anomaly at all
    (verdict("drop", True), None, False),                      # alerts unknown: do not guess
])
def test_bypass_rule(tickets, alerts, fires) -> None:
    signal = BypassRule().check("payroll", tickets, alerts)
    assert (signal is not None) == fires
    if signal:
        assert signal.kind == "demand_shift_bypass" and signal.service == "payroll"


def test_sustained_anomalies_raise_one_candidate_per_episode() -> None:
    tracker = SustainedAnomalyTracker(min_intervals=3)
    seq = [verdict("spike", True)] * 5 + [verdict("drop", True)] * 3 + [verdict("spike", False)] \
        + [verdict("spike", True)] * 2
    out = [tracker.update("svc", v) for v in seq]
    raised = [(i, c.direction) for i, c in enumerate(out) if c is not None]
    assert raised == [(2, "spike"), (7, "drop")]
    assert tracker.update("other", None) is None
