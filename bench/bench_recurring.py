"""Throughput and memory of the recurring-incident detector alone, on the ServiceNow log.

    .venv/bin/python bench/bench_recurring.py [../shared/data/servicenow/incident_event_log.csv.gz] [--runs 5]

Events are read and sorted first (not timed); then the detector replays them ``--runs`` times:

* ``events/s``: every lifecycle event (141,712 rows);
* ``incidents/s (full lifecycle)``: distinct incidents / time of the full replay above;
* ``incidents/s (first events)``: only each incident's first event (the grouping path);
* memory: ``tracemalloc`` bytes held by the detector mid-replay (at the busiest point, after
  half the events), per tracked group and per active group.

Each rate is given on the wall clock and on this process's CPU time (``process_time``): on a
shared machine the wall clock also counts the time other jobs held the core, CPU time is the
"per core" figure.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
import tracemalloc
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from detectors import RecurringIncidentDetector
from opsintel.events import TicketEvent
from streams.adapters import read_events

DEFAULT = Path(__file__).resolve().parents[2] / "shared" / "data" / "servicenow" / "incident_event_log.csv.gz"


def timed(events: list[TicketEvent]) -> tuple[float, float]:
    """(wall seconds, CPU seconds) of one replay."""
    det = RecurringIncidentDetector()
    start, cpu = time.perf_counter(), time.process_time()
    det.learn_many(events)
    det.pop_updates()
    return time.perf_counter() - start, time.process_time() - cpu


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("path", nargs="?", default=str(DEFAULT))
    ap.add_argument("--runs", type=int, default=5)
    args = ap.parse_args()
    events = sorted((e for e in read_events("servicenow-csv", args.path) if isinstance(e, TicketEvent)),
                    key=lambda e: (e.event_time, e.version))  # fmt: skip
    seen: set[str] = set()
    firsts = [e for e in events if not (e.ticket_id in seen or seen.add(e.ticket_id))]  # type: ignore[func-returns-value]
    full_runs = [timed(events) for _ in range(args.runs)]
    first_runs = [timed(firsts) for _ in range(args.runs)]
    print(f"events: {len(events):,}  incidents: {len(firsts):,}  runs: {args.runs} (median; wall clock / CPU time)")
    for label, n, runs in (("events/s (all lifecycle events):", len(events), full_runs),
                           ("incidents/s (full lifecycle):", len(firsts), full_runs),
                           ("incidents/s (first events only):", len(firsts), first_runs)):  # fmt: skip
        wall, cpu = (statistics.median(r[i] for r in runs) for i in (0, 1))
        print(f"{label:<35}{n / wall:>9,.0f} / {n / cpu:,.0f}")

    tracemalloc.start()
    base = tracemalloc.get_traced_memory()[0]
    det = RecurringIncidentDetector()
    det.learn_many(events[: len(events) // 2])
    held = tracemalloc.get_traced_memory()[0] - base
    tracemalloc.stop()
    print(
        f"mid-replay: {det.active_groups:,} active groups, {det.tracked_groups:,} tracked, "
        f"{held / 1e6:.1f} MB held by the detector"
    )
    print(
        f"memory per tracked group: {held / max(det.tracked_groups, 1) / 1024:.1f} KiB "
        f"(incl. its incidents' index entries); per active group: {held / max(det.active_groups, 1) / 1024:.1f} KiB"
    )
    print(f"snapshot size: {len(det.snapshot()) / 1e6:.2f} MB")


if __name__ == "__main__":
    main()
