"""The worker's reads by key against a long history (issue 8: they must not grow with the tables).

A worker reads ClickHouse by key in its hot path: the impact stage rebuilds a ticket it no longer
holds from its stored events (``load_ticket_history``, a few tickets per batch after a restart or
an eviction), and ``problems show`` / the HTTP API read a problem with its incidents
(``queries.problem``). Until session 9 both filtered *after* ``FINAL`` merged the whole table, so
on a 10× history a lookup took ~25× longer and up to 270 MB of transient memory (BENCHMARKS.md,
"RSS, session 9").

For each ``--copies`` k (default 1 and 10), a fresh ``chdb://`` store gets k copies of the
ServiceNow log in ``ticket_events`` (shifted in time, ticket ids suffixed per copy, as in
``bench_rss.py``; the ``incidents`` view fills itself) and one problem linking 200 incidents of the
last copy. Then, ``--lookups`` times each (median reported): ``load_ticket_history`` for 5 random
tickets of the last copy, and ``queries.problem``. Also printed: the highest peak RSS a lookup
added over the RSS before it (``VmHWM`` reset through ``/proc/self/clear_refs``, Linux).

    .venv/bin/python bench/bench_lookups.py
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.bench_rss import LOG, replay_log, shifted, status_kb  # noqa: E402
from opsintel.events import TicketEvent, _time_fields  # noqa: E402
from sinks.clickhouse import ClickHouseStore, queries  # noqa: E402
from streams.impact_stage import load_ticket_history  # noqa: E402

LINKS = 200


def measured(fn: Callable[[], Any]) -> tuple[float, int, int]:
    """(seconds, peak RSS above the start in MB, len of the result) of one call."""
    Path("/proc/self/clear_refs").write_text("5")  # resets VmHWM to the current RSS
    before = status_kb(os.getpid(), "VmRSS")
    started = time.perf_counter()
    out = fn()
    seconds = time.perf_counter() - started
    return seconds, (status_kb(os.getpid(), "VmHWM") - before) // 1024, len(out)


def fill(store: ClickHouseStore, events: list[TicketEvent], copies: int, shift: Any) -> list[str]:
    """k shifted copies of the log into ``ticket_events``; one problem linking ``LINKS`` incidents
    of the last copy. Returns the ticket ids of the last copy."""
    fields = _time_fields(TicketEvent)
    copy: list[TicketEvent] = []
    for i in range(copies):
        copy = [shifted(e, i, shift, fields) for e in events]
        for j in range(0, len(copy), 20_000):
            batch = copy[j : j + 20_000]
            store.insert_ticket_events(batch, [0] * len(batch), range(j, j + len(batch)))
    last = sorted({e.ticket_id for e in copy})
    store._command("INSERT INTO {db}.problems (problem_id, kind, version, status, title) "
                   "VALUES ('PRB-bench', 'recurring', 1, 'candidate', 'bench')")
    store._command("INSERT INTO {db}.problem_incidents (problem_id, source, ticket_id, version, linked) "
                   "SELECT 'PRB-bench', 'servicenow', arrayJoin({ids:Array(String)}), 1, true",
                   {"ids": last[:LINKS]})  # fmt: skip
    return last


def lookups(store: ClickHouseStore, ids: list[str], rng: random.Random) -> dict[str, Callable[[], Any]]:
    return {
        "load_ticket_history (5 tickets)": lambda: load_ticket_history(
            store, {("servicenow", t) for t in rng.sample(ids, 5)}),
        f"queries.problem ({LINKS} incidents)": lambda: (queries.problem(store, "PRB-bench") or {})["incidents"],
    }  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--copies", type=int, nargs="+", default=[1, 10])
    parser.add_argument("--lookups", type=int, default=9)
    parser.add_argument("--log", type=Path, default=LOG)
    args = parser.parse_args()

    events, shift = replay_log(args.log)
    rng = random.Random(1)
    medians: dict[int, dict[str, float]] = {}
    for k in args.copies:
        with tempfile.TemporaryDirectory() as tmp:
            store = ClickHouseStore(f"chdb://{tmp}/chdb", "bench")
            store.migrate()
            started = time.perf_counter()
            ids = fill(store, events, k, shift)
            counts = store.table_counts(["ticket_events", "incidents"])
            parts = store.query("SELECT count() FROM system.parts WHERE active AND database = 'bench' "
                                "AND table = 'ticket_events'")[0][0]
            print(f"{k}×: {counts['ticket_events']:,} ticket events ({parts} parts), {counts['incidents']:,} "
                  f"incidents, loaded in {time.perf_counter() - started:.0f}s")
            medians[k] = {}
            for name, fn in lookups(store, ids, rng).items():
                runs = [measured(fn) for _ in range(args.lookups)]
                assert all(n > 0 for _, _, n in runs), f"{name} found nothing"
                med = statistics.median(s for s, _, _ in runs)
                medians[k][name] = med
                print(f"  {name:34} median {med * 1000:7.1f} ms (min {min(s for s, _, _ in runs) * 1000:.1f}, "
                      f"max {max(s for s, _, _ in runs) * 1000:.1f}); peak RSS above the start, max "
                      f"{max(m for _, m, _ in runs)} MB", flush=True)
            store.close()
    if len(medians) > 1:
        lo, hi = min(medians), max(medians)
        for name in medians[lo]:
            print(f"{name}: {hi}× / {lo}× history = {medians[hi][name] / medians[lo][name]:.1f}× the time")


if __name__ == "__main__":
    main()
