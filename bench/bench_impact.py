"""Throughput of the business-impact model (stream stage) alone, on the ServiceNow log.

    .venv/bin/python bench/bench_impact.py [../shared/data/servicenow/incident_event_log.csv.gz] [--runs 3]

Events are read first (not timed), ``Rejected`` dropped, and sorted by event time (stable); then
a fresh :class:`~opsintel.impact.ImpactModel` per run gets them in batches of ``--batch`` events
(2,000: what the worker's flush hands the impact stage) with one ``rows_for`` each, as
:mod:`streams.impact_stage` calls it. Once with no catalogue (``Catalog.empty()``: every ticket
on the 24x7 default service) and once with ``deploy/catalog/services.example.yaml`` (mapping
rules, office-hours calendars with holidays, SLA targets):

* ``events/s`` and ``rows/s`` of ``rows_for`` (one row per ticket a batch touched), median of
  ``--runs``, with the median CPU seconds (steadier than wall time on a shared machine);
* ``fold``: the same batches folded only (``ImpactModel._fold``: the incident states, no rows);
  ``rows``: the rest of ``rows_for`` (catalogue mapping, business hours, the row), as the
  difference of the two medians.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from opsintel.catalog import Catalog
from opsintel.events import TicketEvent
from opsintel.impact import ImpactModel
from streams.adapters import Rejected, read_events

ROOT = Path(__file__).resolve().parents[1]
DEFAULT = ROOT.parent / "shared" / "data" / "servicenow" / "incident_event_log.csv.gz"
EXAMPLE = ROOT / "deploy" / "catalog" / "services.example.yaml"


def timed(runs: int, once: Callable[[], int]) -> tuple[float, float, int]:
    """Median wall and CPU seconds of ``runs`` calls of ``once`` (and what it returned)."""
    wall, cpu, out = [], [], 0
    for _ in range(runs):
        start, start_cpu = time.perf_counter(), time.process_time()
        out = once()
        wall.append(time.perf_counter() - start)
        cpu.append(time.process_time() - start_cpu)
    return statistics.median(wall), statistics.median(cpu), out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("path", nargs="?", default=str(DEFAULT))
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--batch", type=int, default=2_000, help="events per rows_for call")
    args = ap.parse_args()
    events = [e for e in read_events("servicenow-csv", args.path) if not isinstance(e, Rejected)]
    tickets = [e for e in events if isinstance(e, TicketEvent)]
    tickets.sort(key=lambda e: e.event_time)
    batches = [tickets[i:i + args.batch] for i in range(0, len(tickets), args.batch)]
    n = len(tickets)
    print(f"events: {n:,}  batches: {len(batches)} of {args.batch:,}  runs: {args.runs} (median)")

    for label, catalog in (("no catalogue", Catalog.empty()), ("example catalogue", Catalog.load(EXAMPLE))):

        def rows_for(catalog: Catalog = catalog) -> int:
            model = ImpactModel(catalog)
            return sum(len(model.rows_for(b)) for b in batches)

        def fold_only(catalog: Catalog = catalog) -> int:
            model = ImpactModel(catalog)
            return sum(len(model._fold(b)) for b in batches)

        t, cpu, rows = timed(args.runs, rows_for)
        tf, cpuf, _ = timed(args.runs, fold_only)
        print(f"{label}:")
        print(f"  rows_for  events/s: {n / t:10,.0f}  rows/s: {rows / t:9,.0f}  "
              f"({rows:,} rows; {t:.2f} s; CPU {cpu:.2f} s)")
        print(f"  fold      events/s: {n / tf:10,.0f}  ({tf:.2f} s; CPU {cpuf:.2f} s)")
        print(f"  rows      rows/s:   {rows / max(t - tf, 1e-9):10,.0f}  ({t - tf:.2f} s; CPU {cpu - cpuf:.2f} s)")


if __name__ == "__main__":
    main()
