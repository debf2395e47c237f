"""Throughput and memory of the recurring-incident detector alone, on the ServiceNow log.

    .venv/bin/python bench/bench_recurring.py [../shared/data/servicenow/incident_event_log.csv.gz] [--runs 5]

Events are read and sorted first (not timed); then the detector replays them ``--runs`` times:

* ``events/s``: every lifecycle event (141,712 rows);
* ``incidents/s (full lifecycle)``: distinct incidents / time of the full replay above;
* ``incidents/s (first events)``: only each incident's first event (the grouping path);
* memory: ``tracemalloc`` bytes held by the detector mid-replay (at the busiest point, after
  half the events), per tracked group and per active group.
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


def timed(events: list[TicketEvent]) -> float:
    det = RecurringIncidentDetector()
    start = time.perf_counter()
    det.learn_many(events)
    det.pop_updates()
    return time.perf_counter() - start


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("path", nargs="?", default=str(DEFAULT))
    ap.add_argument("--runs", type=int, default=5)
    args = ap.parse_args()
    events = sorted((e for e in read_events("servicenow-csv", args.path) if isinstance(e, TicketEvent)),
                    key=lambda e: (e.event_time, e.version))  # fmt: skip
    seen: set[str] = set()
    firsts = [e for e in events if not (e.ticket_id in seen or seen.add(e.ticket_id))]  # type: ignore[func-returns-value]
    full = statistics.median(timed(events) for _ in range(args.runs))
    first = statistics.median(timed(firsts) for _ in range(args.runs))
    print(f"events: {len(events):,}  incidents: {len(firsts):,}  runs: {args.runs} (median)")
    print(f"events/s (all lifecycle events):   {len(events) / full:,.0f}")
    print(f"incidents/s (full lifecycle):      {len(firsts) / full:,.0f}")
    print(f"incidents/s (first events only):   {len(firsts) / first:,.0f}")

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
