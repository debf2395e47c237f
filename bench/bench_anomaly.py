"""Throughput and memory of the trend-anomaly detectors (``--detector``, default: both).

Prints points/s of ``score_many``, ``learn_many`` and ``score_learn_many`` (median of
``--repeat`` runs, one process = one core) over a synthetic 5-minute series with a daily cycle,
and the bytes one series' state costs, measured two ways: tracemalloc (Python heap allocated
per detector, averaged over 1,000 warmed-up detectors) and the size of its JSON snapshot.

    PYTHONPATH=. .venv/bin/python bench/bench_anomaly.py --points 200000 --repeat 3
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
import tracemalloc

import numpy as np

from detectors import RecordBreakDetector, SeasonalAnomalyDetector

DETECTORS = {"recordBreak": RecordBreakDetector, "seasonal": SeasonalAnomalyDetector}


def series(n: int) -> tuple[np.ndarray, np.ndarray]:
    t = 1.6e9 + np.arange(n) * 300.0
    x = 100 + 40 * np.sin(2 * np.pi * t / 86_400) + np.random.default_rng(0).normal(0, 5, n)
    return x, t


def rate(fn, n: int, repeat: int) -> float:
    runs = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        runs.append(n / (time.perf_counter() - start))
    return statistics.median(runs)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--points", type=int, default=200_000)
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--detector", action="append", choices=sorted(DETECTORS), default=None)
    args = ap.parse_args()
    print(f"points per run: {args.points}, median of {args.repeat} runs")
    for name in args.detector or list(DETECTORS):
        print(f"-- {name}")
        bench(DETECTORS[name], args)


def bench(cls, args: argparse.Namespace) -> None:
    x, t = series(args.points)
    warm = cls()
    warm.learn_many(x[:2000], t[:2000])
    state = warm.snapshot()

    def fresh():
        return cls().restore(state)

    det = fresh()
    print(f"score_many        {rate(lambda: det.score_many(x, t), args.points, args.repeat):>12,.0f} points/s")
    print(f"learn_many        {rate(lambda: fresh().learn_many(x, t), args.points, args.repeat):>12,.0f} points/s")
    slm = rate(lambda: fresh().score_learn_many(x, t), args.points, args.repeat)
    print(f"score_learn_many  {slm:>12,.0f} points/s")
    print(f"score_learn_many (no timestamps) "
          f"{rate(lambda: fresh().score_learn_many(x), args.points, args.repeat):>12,.0f} points/s")

    n = 1000
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    detectors = [fresh() for _ in range(n)]
    for d in detectors:
        d.learn_many(x[:50], t[:50])
    after = tracemalloc.get_traced_memory()[0]
    tracemalloc.stop()
    print(f"bytes per series (tracemalloc, heap of {n} warmed detectors / {n}): {(after - before) / n:,.0f}")
    print(f"bytes per series (JSON snapshot): {len(json.dumps(warm.snapshot())):,}")


if __name__ == "__main__":
    main()
