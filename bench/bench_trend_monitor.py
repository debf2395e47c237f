"""Throughput and memory of the trend monitor (stream stage) alone, on the ServiceNow log.

    .venv/bin/python bench/bench_trend_monitor.py [../shared/data/servicenow/incident_event_log.csv.gz] [--runs 3]

Events are read and the detectors' compiled loops loaded (or compiled: ``compile_trend_kernels``)
first, not timed; events are fed **in file order** (grouped by ticket, as the log is
published: the watermark and the future buckets do the event-time work); then a fresh
:class:`~detectors.TrendMonitor` learns them all with one ``learn_many`` per run:

* ``events/s``: every event of the log (lifecycle events the monitor does not count included),
  median of ``--runs`` (with the median CPU seconds: steadier than wall time on a shared machine);
* ``series``: service × metric series scored, and the intervals closed (series-points = the
  detector steps, the heavy part);
* ``bytes per series``: the msgpack snapshot size / series, and the ``tracemalloc`` bytes a
  monitor restored from it holds / series;
* anomalies (rows by kind), trend problems raised, events dropped late / beyond the horizon.

``--chunk N`` feeds the events as the streaming worker does instead: one ``learn_many`` plus
``pop_anomalies`` / ``pop_updates`` per ``N`` events (1,250 is one partition's share of a
5,000-event batch over four partitions), so the per-call costs are measured too: on this log
a 1,250-event chunk closes ~75 hourly intervals, so each series scores ~75 points per call
(``problems raised`` then counts every version popped).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
import tracemalloc
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from detectors import TrendMonitor, compile_trend_kernels
from streams.adapters import Rejected, read_events

DEFAULT = Path(__file__).resolve().parents[2] / "shared" / "data" / "servicenow" / "incident_event_log.csv.gz"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("path", nargs="?", default=str(DEFAULT))
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--chunk", type=int, default=0, help="events per learn_many (0: all in one call)")
    args = ap.parse_args()
    events = [e for e in read_events("servicenow-csv", args.path) if not isinstance(e, Rejected)]
    start = time.perf_counter()
    compile_trend_kernels()  # as the worker does before it consumes (not timed)
    compiled = time.perf_counter() - start

    times, cpu, mon = [], [], TrendMonitor()
    step = args.chunk or len(events)
    for _ in range(args.runs):
        mon = TrendMonitor()
        rows, problems = [], []
        start, start_cpu = time.perf_counter(), time.process_time()
        for i in range(0, len(events), step):
            mon.learn_many(events[i:i + step])
            rows += mon.pop_anomalies()
            problems += mon.pop_updates()
        times.append(time.perf_counter() - start)
        cpu.append(time.process_time() - start_cpu)
    snap = mon.snapshot()
    series = mon.series_count
    points = mon.counters["intervals_closed"]

    # the state held at the end of the log, measured on a restored copy (tracing a full replay is slow)
    tracemalloc.start()
    base = tracemalloc.get_traced_memory()[0]
    held_mon = TrendMonitor.from_snapshot(snap)
    held = tracemalloc.get_traced_memory()[0] - base
    tracemalloc.stop()
    del held_mon

    t = statistics.median(times)
    c = mon.counters
    print(f"events: {len(events):,}  counted by the monitor: {c['events']:,}  runs: {args.runs} (median)  "
          f"chunk: {args.chunk or 'all'}")
    print(f"events/s:                 {len(events) / t:,.0f}   ({t:.2f} s; CPU {statistics.median(cpu):.2f} s)"
          f"   (kernels compiled / loaded first: {compiled:.2f} s)")
    print(f"series (service x metric): {series:,}  services: {len(mon._services):,}  intervals closed: {points:,}")
    print(f"series-points/s:          {sum(s.steps for v in mon._services.values() for s in v.series if s) / t:,.0f}")
    print(f"snapshot: {len(snap):,} B  = {len(snap) / series:,.0f} B per series;  "
          f"tracemalloc held: {held:,} B = {held / series:,.0f} B per series")
    print(f"anomalies: {len(rows):,} {dict(Counter(r.kind for r in rows))}  "
          f"by metric {dict(Counter(r.metric for r in rows))}")
    print(f"trend problems raised: {len(problems):,}  by metric {dict(Counter(p.details['metric'] for p in problems))}")
    print(f"dropped late: {c['dropped_late']:,}  beyond horizon: {c['dropped_beyond']:,}  "
          f"evicted services: {c['evicted_services']}")


if __name__ == "__main__":
    main()
