"""ClickHouse insert rate through clickhouse-connect on embedded chDB (issue 8: >= 200,000 rows/s).

Every run makes a fresh store (``ClickHouseStore("chdb://<tmp>", "bench")`` + ``migrate()``) and
inserts, in batches of ``--batch`` rows (10,000: the worker's default batch until session 5, now
20,000; kept so that the figures compare across sessions), through the store's own methods:

* ``ticket_events``: the ServiceNow log's 141,712 canonical events (time-ordered), raw table only
  (``_insert_events``, what ``insert_ticket_events`` does first);
* ``ticket_events+incidents``: ``insert_ticket_events`` as the worker calls it (raw rows; the
  materialized view ``incidents_from_events`` copies them into ``incidents`` inside ClickHouse -
  before it, the store inserted the newest version of each ticket of the batch itself); rows/s
  counts ticket events;
* ``incident_impact``: the rows the worker writes, ``ImpactModel(Catalog.empty()).rows_for`` over
  the log in batches of 10,000 events (one row per ticket a batch touched);
* ``anomalies``: synthetic :class:`detectors.AnomalyRow` s (``anomaly_row`` over 50 services × hourly
  intervals; the shape the trend monitor writes).

* ``ticket_events+incidents, child-encoded`` and ``incident_impact, child-encoded``: the worker's
  path since session 6 - each batch is handed to the insert encoder's child process
  (``NativeEncoder.submit``, as the worker does when it decodes a batch) and inserted
  (``insert_encoded``, the bytes through clickhouse-connect's ``raw_insert``) once encoded, while
  the child encodes the next batches (two in flight); the clock covers handing over, encoding and
  inserting every batch.

Only the insert calls are timed (after one warm-up insert per table in a scratch store:
clickhouse-connect imports pandas on its first insert), and each case starts once chDB runs no
background merge: it goes on merging the parts of the case before for up to ~0.5 s, which overlapped
much of the ~0.3 s ``anomalies`` case, by more or less from run to run. For each table the bench also times, without
inserting, the store's own Python work before it calls clickhouse-connect: building the column
lists (``_columns(rows, columns)``: one ``attrgetter`` per column, a tile of rows at a time) and
turning ``DateTime64`` columns into integer milliseconds (``_sendable``); and the same with the
columns built by a plain ``getattr`` per cell; each as a share of the run's insert time (timed at
the start of each run, before its store exists, so that chDB's background merges do not slow it
down). The rest is clickhouse-connect (serialising the columns to ClickHouse's Native format) and
chDB (parsing + writing the part).

    .venv/bin/python bench/bench_inserts.py --runs 3
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from collections import deque
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from detectors._seasonal import AnomalyVerdict  # noqa: E402
from detectors._trend_series import anomaly_row  # noqa: E402
from opsintel.catalog import Catalog  # noqa: E402
from opsintel.events import TicketEvent  # noqa: E402
from opsintel.impact import ImpactModel  # noqa: E402
from sinks.clickhouse import TABLES_BY_NAME, ClickHouseStore  # noqa: E402
from sinks.clickhouse.analytics_store import _columns  # noqa: E402
from sinks.clickhouse.native import Encoding, NativeEncoder  # noqa: E402
from sinks.clickhouse.store import _sendable  # noqa: E402
from streams.adapters import read_events  # noqa: E402
from streams.adapters._base import Rejected  # noqa: E402

Inserter = Callable[[Sequence[Any], int], Any]  #: (batch, offset of its first row) -> None

LOG = ROOT.parent / "shared" / "data" / "servicenow" / "incident_event_log.csv.gz"


def chunks(rows: Sequence[Any], size: int) -> list[Sequence[Any]]:
    return [rows[i : i + size] for i in range(0, len(rows), size)]


def make_rows(log: Path, batch: int, anomalies: int) -> tuple[list[TicketEvent], list[Any], list[Any]]:
    events = [e for e in read_events("servicenow-csv", log) if not isinstance(e, Rejected)]
    events.sort(key=lambda e: e.event_time)
    model = ImpactModel(Catalog.empty())
    impact = [row for b in chunks(events, batch) for row in model.rows_for(b)]
    t0 = datetime(2016, 3, 1, tzinfo=UTC)
    anomaly_rows = [
        anomaly_row(f"Service {i % 50}", ("tickets", "alerts", "p1")[i % 3], t0 + timedelta(hours=i // 50),
                    AnomalyVerdict(float(i % 17), 4.0, (1.0, 7.0), 3.5 + (i % 7) / 10, True,
                                   "spike" if i % 2 else "drop"),
                    "spike" if i % 2 else "drop", "seasonal")
        for i in range(anomalies)
    ]  # fmt: skip
    return events, impact, anomaly_rows


def settle(store: ClickHouseStore, timeout: float = 30.0) -> None:
    """Wait until chDB runs no background merge (of the parts the previous case wrote)."""
    deadline = time.monotonic() + timeout
    while store.query("SELECT count() FROM system.merges")[0][0] and time.monotonic() < deadline:
        time.sleep(0.05)


def timed(batches: list[Sequence[Any]], insert: Inserter) -> float:
    started = time.perf_counter()
    offset = 0
    for b in batches:
        insert(b, offset)
        offset += len(b)
    if isinstance(insert, ChildEncoded):
        insert.finish()
    return time.perf_counter() - started


class ChildEncoded:
    """The worker's insert path with the encoder child: each batch is handed to the child as soon as
    it exists (the worker does it as a batch is decoded) and inserted once the child has encoded it,
    while the child encodes the next ones - here up to ``ahead`` batches in flight."""

    def __init__(self, store: ClickHouseStore, table: str, with_position: bool, ahead: int = 2) -> None:
        assert store.encoder is not None
        self.store, self.encoder, self.table, self.ahead = store, store.encoder, table, ahead
        self.with_position = with_position
        self.in_flight: deque[Encoding] = deque()

    def __call__(self, batch: Sequence[Any], offset: int) -> None:
        extra = ([0] * len(batch), list(range(offset, offset + len(batch)))) if self.with_position else ()
        encoding = self.encoder.submit(TABLES_BY_NAME[self.table], batch, extra)
        assert encoding is not None
        self.in_flight.append(encoding)
        if len(self.in_flight) > self.ahead:
            self.store.insert_encoded(self.table, [self.in_flight.popleft()])

    def finish(self) -> None:
        while self.in_flight:
            self.store.insert_encoded(self.table, [self.in_flight.popleft()])


def columns_only(table: str, batches: list[Sequence[Any]], *, as_store: bool = True) -> float:
    """Seconds to make the columns of ``batches`` as the store sends them: built as the store does
    (``as_store``; the store's ``_columns``, which accepts mappings too) or with a plain
    ``getattr``, then ``DateTime64`` columns as milliseconds (``_sendable``)."""
    schema = TABLES_BY_NAME[table]
    names = schema.column_names
    if table == "ticket_events":
        names = names[:-2]  # partition and offset come as their own lists
    started = time.perf_counter()
    for rows in batches:
        columns = _columns(rows, names) if as_store else [[getattr(r, c) for r in rows] for c in names]
        if table == "ticket_events":
            columns += [[0] * len(rows), list(range(len(rows)))]
        _sendable(schema, columns)
    return time.perf_counter() - started


def _table(case: str) -> str:
    return "ticket_events" if case.startswith("ticket_events") else case.split(",")[0]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--batch", type=int, default=10_000)
    parser.add_argument("--anomalies", type=int, default=100_000, help="synthetic anomaly rows")
    parser.add_argument("--log", type=Path, default=LOG)
    parser.add_argument("--only", default="", help="comma-separated subset of the tables (for profiling)")
    args = parser.parse_args()

    events, impact, anomaly_rows = make_rows(args.log, args.batch, args.anomalies)
    ev_batches, imp_batches, an_batches = (chunks(x, args.batch) for x in (events, impact, anomaly_rows))
    print(f"rows: ticket_events {len(events):,}, incident_impact {len(impact):,}, anomalies {len(anomaly_rows):,}; "
          f"batches of {args.batch:,}")
    raw_table = TABLES_BY_NAME["ticket_events"]
    cases: dict[str, tuple[int, list[Sequence[Any]], Callable[[ClickHouseStore], Inserter]]] = {
        "ticket_events": (len(events), ev_batches, lambda s: lambda b, o: s._insert_events(
            raw_table, b, [0] * len(b), range(o, o + len(b)))),
        "ticket_events+incidents": (len(events), ev_batches, lambda s: lambda b, o: s.insert_ticket_events(
            b, [0] * len(b), range(o, o + len(b)))),
        "incident_impact": (len(impact), imp_batches, lambda s: lambda b, _o: s.insert_incident_impact(b)),
        "anomalies": (len(anomaly_rows), an_batches, lambda s: lambda b, _o: s.insert_anomalies(b)),
        "ticket_events+incidents, child-encoded": (len(events), ev_batches,
                                                   lambda s: ChildEncoded(s, "ticket_events", True)),
        "incident_impact, child-encoded": (len(impact), imp_batches,
                                           lambda s: ChildEncoded(s, "incident_impact", False)),
    }  # fmt: skip
    if args.only:
        cases = {k: v for k, v in cases.items() if k in args.only.split(",")}
    rates: dict[str, list[float]] = {k: [] for k in cases}
    conv: dict[str, list[float]] = {k: [] for k in cases}
    plain: dict[str, list[float]] = {k: [] for k in cases}
    encoder = NativeEncoder()
    encoder.start()
    with tempfile.TemporaryDirectory() as tmp:  # warm-up: the first insert of each case, the encoder child
        store = ClickHouseStore(f"chdb://{tmp}/chdb", "bench")
        store.migrate()
        for name, (_n, batches, make) in cases.items():
            store.encoder = encoder if name.endswith("child-encoded") else None
            timed([batches[0][:100]], make(store))
        store.encoder = None
        store.close()
    for run in range(args.runs):
        # the column work is timed before the store exists: right after the inserts, chDB's
        # background merges of the parts just written would compete with it for the CPU
        conv_s = {name: columns_only(_table(name), c[1]) for name, c in cases.items()}
        plain_s = {name: columns_only(_table(name), c[1], as_store=False) for name, c in cases.items()}
        with tempfile.TemporaryDirectory() as tmp:
            store = ClickHouseStore(f"chdb://{tmp}/chdb", "bench")
            store.migrate()
            line = []
            for name, (n, batches, make) in cases.items():
                settle(store)
                store.encoder = encoder if name.endswith("child-encoded") else None
                seconds = timed(batches, make(store))
                store.encoder = None
                rates[name].append(n / seconds)
                conv[name].append(conv_s[name] / seconds)
                plain[name].append(plain_s[name] / seconds)
                share = conv_s[name] / seconds
                line.append(f"{name} {n / seconds:>9,.0f} rows/s ({seconds:.2f}s, columns {share:.0%})")
            counts = store.table_counts(["ticket_events", "incident_impact", "anomalies"])
            store.close()
        print(f"run {run + 1}: " + "; ".join(line) + f"   [stored: {counts}]", flush=True)
    encoder.close()
    for name in cases:
        med = statistics.median(rates[name])
        print(f"median {name:24} {med:>9,.0f} rows/s  (runs {' / '.join(f'{r:,.0f}' for r in rates[name])}; "
              f"row→column+ms share {statistics.median(conv[name]):.0%}, with plain getattr "
              f"{statistics.median(plain[name]):.0%}; target >= 200,000: "
              f"{'met' if med >= 200_000 else 'NOT met'})")


if __name__ == "__main__":
    main()
