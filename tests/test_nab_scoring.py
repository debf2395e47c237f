"""NAB scoring, checked against values computed by hand from docs/nab-scoring.md."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from opsintel.evaluation.nab import (
    REWARD_LOW_FN,
    REWARD_LOW_FP,
    STANDARD,
    LabelledSeries,
    NabDataError,
    load_corpus,
    normalised_score,
    probationary_length,
    raw_score,
    row_weights,
    scaled_sigmoid,
    sweep,
)


def series(n: int, windows: tuple[tuple[int, int], ...], key: str = "cat/f.csv") -> LabelledSeries:
    return LabelledSeries(key, np.arange(n).astype("datetime64[m]"), np.zeros(n), windows)


def flags(n: int, *rows: int) -> np.ndarray:
    a = np.zeros(n)
    a[list(rows)] = 1.0
    return a


def test_sigmoid_values_from_the_spec() -> None:
    got = scaled_sigmoid([-1.0, -0.5, 0.0, 1.0, 3.0, 3.0001])
    assert got[0] == pytest.approx(0.98661429815)
    assert got[1] == pytest.approx(0.84828, abs=1e-5)
    assert got[2] == 0.0
    assert got[3] == pytest.approx(-0.98661429815)
    assert got[4] == pytest.approx(-0.9999994, abs=1e-7)
    assert got[5] == -1.0


def test_probationary_period() -> None:
    assert probationary_length(100) == 15
    assert probationary_length(4032) == 604
    assert probationary_length(1_000_000) == 750


def test_perfect_detector_scores_100_and_null_scores_0() -> None:
    s = series(200, ((100, 119), (150, 159)))
    perfect = flags(200, 100, 150)
    for p in (STANDARD, REWARD_LOW_FP, REWARD_LOW_FN):
        assert raw_score(perfect, s, 1.0, p) == pytest.approx(2.0)
        assert normalised_score(sweep([(perfect, s)], p).raw, 2, p) == pytest.approx(100.0)
        null = np.full(200, 0.5)
        best = sweep([(null, s)], p)
        assert best.threshold == 1.1  # flagging every row is worse than flagging none
        assert normalised_score(best.raw, 2, p) == 0.0


def test_single_false_positive_costs_a_fp_before_any_window() -> None:
    s = series(200, ((100, 119),))
    fp_then_tp = flags(200, 50, 100)
    assert raw_score(fp_then_tp, s, 1.0, STANDARD) == pytest.approx(1.0 - 0.11)
    assert raw_score(fp_then_tp, s, 1.0, REWARD_LOW_FP) == pytest.approx(1.0 - 0.22)


def test_fp_after_a_window_is_weighted_by_distance() -> None:
    s = series(200, ((100, 119),))  # W = 20 rows, R' = 119
    for row, p in ((120, 1 / 19), (129, 10 / 19), (190, 71 / 19)):
        cost = 0.11 * (2 / (1 + math.exp(5 * p)) - 1) if p <= 3 else -0.11
        assert raw_score(flags(200, 100, row), s, 1.0, STANDARD) == pytest.approx(1.0 + cost)


def test_in_window_credit_follows_the_sigmoid_and_only_the_earliest_counts() -> None:
    s = series(200, ((100, 119),))
    mid = 2 / (1 + math.exp(5 * -(119 - 110 + 1) / 20)) - 1
    expected = mid / 0.98661429815
    assert raw_score(flags(200, 110), s, 1.0, STANDARD) == pytest.approx(expected)
    assert raw_score(flags(200, 110, 111, 119), s, 1.0, STANDARD) == pytest.approx(expected)


def test_miss_costs_a_fn_per_profile() -> None:
    s = series(200, ((100, 119),))
    nothing = np.zeros(200)
    assert raw_score(nothing, s, 0.5, STANDARD) == -1.0
    assert raw_score(nothing, s, 0.5, REWARD_LOW_FN) == -2.0


def test_probationary_rows_are_not_scored() -> None:
    s = series(200, ((100, 119),))  # probation = 30 rows
    assert raw_score(flags(200, 10, 29, 100), s, 1.0, STANDARD) == pytest.approx(1.0)
    assert raw_score(flags(200, 30, 100), s, 1.0, STANDARD) == pytest.approx(0.89)


def test_sweep_finds_the_best_threshold_and_prefers_the_higher_on_ties() -> None:
    s = series(200, ((100, 119),))
    scores = np.zeros(200)
    scores[100] = 0.6   # the true positive
    scores[60] = 0.9    # a confident FP: detecting it too costs 0.11
    scores[61] = 0.3    # below the TP: never worth it
    best = sweep([(scores, s)], STANDARD)
    assert best.threshold == 0.6 and best.raw == pytest.approx(1.0 - 0.11)
    tie = np.zeros(200)
    tie[100] = 0.6
    tie[101] = 0.5     # same window, later: same raw score, the higher threshold wins
    assert sweep([(tie, s)], STANDARD).threshold == 0.6


def test_sweep_matches_brute_force_over_a_pooled_corpus() -> None:
    rng = np.random.default_rng(0)
    corpus = [series(300, ((120, 149), (220, 239)), "a/x.csv"), series(250, (), "b/y.csv"),
              series(400, ((300, 339),), "b/z.csv")]
    scores = [np.round(rng.random(len(s.values)), 2) for s in corpus]
    for p in (STANDARD, REWARD_LOW_FP, REWARD_LOW_FN):
        best = sweep(zip(scores, corpus, strict=True), p)
        brute = max(sum(raw_score(a, s, t, p) for a, s in zip(scores, corpus, strict=True))
                    for t in [1.1, *np.unique(np.concatenate(scores))])
        assert best.raw == pytest.approx(brute)
        at_best = sum(raw_score(a, s, best.threshold, p) for a, s in zip(scores, corpus, strict=True))
        assert at_best == pytest.approx(best.raw)


def test_row_weights_shape_of_the_spec() -> None:
    w, wid = row_weights(10, [(4, 6)], STANDARD)
    assert w[4] == pytest.approx(1.0) and 0 < w[6] < w[5] < w[4]
    assert list(wid) == [-1] * 4 + [0] * 3 + [-1] * 3
    assert w[0] == -0.11 and -0.11 < w[7] < 0


def test_corpus_reader_follows_nab(tmp_path, caplog) -> None:
    (tmp_path / "cat").mkdir()
    rows = "\n".join(f"2020-01-01 00:{m:02d}:00,{m}" for m in range(40))
    (tmp_path / "cat" / "a.csv").write_text("timestamp,value\n" + rows + "\n")
    (tmp_path / "cat" / "unlabelled.csv").write_text("timestamp,value\n" + rows + "\n")
    labels = {"cat/a.csv": [["2020-01-01 00:20:00.000000", "2020-01-01 00:25:00.000000"]],
              "other/not_here.csv": [["2020-01-01 00:00:00.000000", "2020-01-01 00:01:00.000000"]]}
    (tmp_path / "labels.json").write_text(json.dumps(labels))
    corpus = load_corpus(tmp_path, tmp_path / "labels.json")
    assert [s.key for s in corpus] == ["cat/a.csv"]  # unlabelled file skipped, missing data ignored
    assert corpus[0].windows == ((20, 25),) and corpus[0].category == "cat"
    assert "no label for data file cat/unlabelled.csv" in caplog.text
    labels["cat/a.csv"] = [["2020-01-01 00:20:30", "2020-01-01 00:25:00"]]
    (tmp_path / "labels.json").write_text(json.dumps(labels))
    with pytest.raises(NabDataError, match="does not match"):
        load_corpus(tmp_path, tmp_path / "labels.json")


def test_eval_nab_command_on_three_small_series(tmp_path, capsys) -> None:
    import argparse

    from opsintel.cli import evaluate

    rng = np.random.default_rng(1)
    labels = {}
    for i, cat in enumerate(("alpha", "alpha", "beta")):
        (tmp_path / "data" / cat).mkdir(parents=True, exist_ok=True)
        stamps = np.datetime64("2021-03-01T00:00") + np.arange(600) * np.timedelta64(5, "m")
        values = 10 + rng.normal(0, 1, 600)
        values[400] += 25
        text = "\n".join(f"{str(t).replace('T', ' ')}:00,{v:.3f}" for t, v in zip(stamps, values, strict=True))
        (tmp_path / "data" / cat / f"s{i}.csv").write_text("timestamp,value\n" + text + "\n")
        labels[f"{cat}/s{i}.csv"] = [[f"{str(stamps[380]).replace('T', ' ')}:00.000000",
                                      f"{str(stamps[420]).replace('T', ' ')}:00.000000"]]
    labels["gamma/held_back.csv"] = [["2021-01-01 00:00:00.000000", "2021-01-01 01:00:00.000000"]]
    (tmp_path / "labels.json").write_text(json.dumps(labels))
    # the eval group alone: `opsintel.cli.main` also imports the other command modules
    parser = argparse.ArgumentParser()
    evaluate.register(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["eval", "nab", "--data", str(tmp_path / "data"), "--labels",
                              str(tmp_path / "labels.json"), "--out", str(tmp_path / "out"),
                              "--detector", "seasonal", "--detector", "null", "--detector", "perfect"])
    assert args.func(args) == 0
    table = capsys.readouterr().out
    assert "3 files, 1800 rows, 3 windows" in table
    rows = {line.split("|")[0].strip(): line for line in table.splitlines()}
    assert rows["perfect"].split("|")[1].strip() == "100.00"
    assert rows["null"].split("|")[1].strip() == "0.00"
    written = tmp_path / "out" / "seasonal" / "alpha" / "seasonal_s0.csv"
    head = written.read_text().splitlines()
    assert head[0] == "timestamp,value,anomaly_score,label" and len(head) == 601
    assert head[401].endswith(",1")


# -- eval volume: per-service hourly ticket volumes --------------------------------------------
def test_volume_series_count_created_tickets_per_service_hour_and_flag_a_burst() -> None:
    from datetime import UTC, datetime, timedelta

    from detectors import RecordBreakDetector
    from opsintel.evaluation.volume import flag_volumes, hourly_volumes

    start = datetime(2016, 3, 7, tzinfo=UTC)
    created = []
    for h in range(24 * 28):
        when = start + timedelta(hours=h)
        n = 3 if 8 <= when.hour < 18 and when.weekday() < 5 else 0
        n = 30 if h == 24 * 21 + 10 else n  # one burst on a Monday morning, week four
        created += [("payroll", when + timedelta(minutes=5))] * n
    created.append(("hr", start + timedelta(hours=3)))
    series = hourly_volumes(created)
    t, x = series["payroll"]
    assert len(t) == len(series["hr"][0]) and x.sum() == len(created) - 1
    found = flag_volumes(series, RecordBreakDetector, min_tickets=10)
    assert {a.service for a in found} == {"payroll"}  # hr is below min_tickets
    burst = [a for a in found if a.hour == start + timedelta(hours=24 * 21 + 10)]
    assert burst and burst[0].direction == "spike" and burst[0].observed == 30
    assert len([a for a in found if a.hour > start + timedelta(days=14)]) <= 2
