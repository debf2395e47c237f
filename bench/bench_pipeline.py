"""End-to-end throughput: raw aiokafka consume vs the opsintel worker, on the same topic.

Loads the ServiceNow incident event log (141,712 events) into a fresh topic once, then, alternating
``--runs`` times:

* **raw**: a plain aiokafka consumer (fresh group) reads every message of the topic — the speed of
  the Kafka client itself, the ceiling for any Python consumer;
* **worker**: a fresh ``opsintel worker`` (new consumer group, new embedded ClickHouse folder)
  decodes, validates and writes every event to ClickHouse; the clock runs from the worker's
  ``/health`` answering until its committed offsets reach the end of the topic (group join
  included), and the rows are then checked in ClickHouse. Also printed: the rate from the
  worker's first commit on (the events still uncommitted then / the time from then to the end),
  i.e. without the group join, the first batch and flush.

With ``--copies k`` the topic holds the log ``k`` times, each copy shifted later in time with its
own ticket ids (``bench_rss.py``'s replay): the worker's sustained rate over a longer backlog. Each
run also prints the problem versions the worker wrote: a longer replay is not ``k`` times the same
work for the detectors (from the second copy on every signature has a history to be compared with).

Prints every run, the medians and their ratio. Needs the local broker (``deploy/kafka.sh start``).

    .venv/bin/python bench/bench_pipeline.py --runs 3
    .venv/bin/python bench/bench_pipeline.py --runs 3 --copies 3
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench._scratch import drop_topics  # noqa: E402
from bench.bench_rss import load, metric, replay_log  # noqa: E402
from opsintel.settings import Settings  # noqa: E402
from streams.ingest import Ingestor, OffsetProgress, ensure_topics  # noqa: E402
from tests.support import WorkerProcess, free_port  # noqa: E402

LOG = ROOT.parent / "shared" / "data" / "servicenow" / "incident_event_log.csv.gz"


async def raw_consume(bootstrap: str, topic: str, expected: int) -> float:
    from aiokafka import AIOKafkaConsumer

    consumer = AIOKafkaConsumer(topic, bootstrap_servers=bootstrap, group_id=f"raw-{uuid.uuid4().hex[:8]}",
                                auto_offset_reset="earliest", enable_auto_commit=False,
                                max_poll_records=5000, fetch_max_bytes=64 * 1024 * 1024)
    await consumer.start()
    started = time.perf_counter()
    seen = 0
    try:
        while seen < expected:
            batches = await consumer.getmany(timeout_ms=1000, max_records=5000)
            for records in batches.values():
                seen += len(records)
    finally:
        elapsed = time.perf_counter() - started
        await consumer.stop()
    return elapsed


def worker_run(base_env: dict[str, str], settings: Settings, expected: int,
               workdir: Path, group: str) -> tuple[float, float, int, int]:
    """Seconds from ``/health`` to the last commit, the rate from the first commit on (ev/s), rows,
    problem versions written."""
    env = dict(base_env, OPSINTEL_CONSUMER_GROUP=group, OPSINTEL_DATA_DIR=str(workdir / group),
               OPSINTEL_WEB_PORT=str(free_port()))
    run_settings = settings.model_copy(update={"consumer_group": group})
    w = WorkerProcess(env, workdir / f"{group}.log").start()
    started = time.perf_counter()
    first: tuple[float, int] | None = None  # (time, events left) at the first committed progress
    try:
        with OffsetProgress(run_settings, [settings.topic("tickets")]) as progress:
            while (left := progress.remaining()) > 0:
                if first is None and left < expected:
                    first = (time.perf_counter(), left)
                time.sleep(0.25)
        ended = time.perf_counter()
        with urllib.request.urlopen(f"{w.url}/api/summary", timeout=60) as r:
            rows = json.load(r)["rows"]["ticket_events"]
        problems = int(metric(w.url, 'opsintel_rows_written_total{table="problems"}', timeout=60))
    finally:
        w.stop()
    steady = first[1] / (ended - first[0]) if first else float("nan")
    return ended - started, steady, rows, problems


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--log", type=Path, default=LOG)
    parser.add_argument("--copies", type=int, default=1, help="the log this many times, shifted in time")
    parser.add_argument("--bootstrap", default=os.environ.get("OPSINTEL_KAFKA_BOOTSTRAP", "127.0.0.1:9092"))
    args = parser.parse_args()

    prefix = f"bench{uuid.uuid4().hex[:6]}."
    settings = Settings(kafka_bootstrap=args.bootstrap, topic_prefix=prefix, partitions=4)
    groups: list[str] = []
    try:
        run(args, settings, groups)
    finally:
        drop_topics(settings, [prefix, *groups])


def run(args: argparse.Namespace, settings: Settings, groups: list[str]) -> None:
    prefix = settings.topic_prefix
    ensure_topics(settings)
    t0 = time.perf_counter()
    if args.copies > 1:
        events, shift = replay_log(args.log)
        n = load(settings, events, args.copies, shift)
    else:
        ingestor = Ingestor(settings)
        report = ingestor.ingest("servicenow-csv", [args.log])
        ingestor.close()
        n = report.sent[settings.topic("tickets")]
    print(f"loaded {n:,} events into {settings.topic('tickets')} in {time.perf_counter() - t0:.1f}s "
          f"(ingest incl. parsing: {n / (time.perf_counter() - t0):,.0f}/s)")

    base_env = dict(os.environ, OPSINTEL_KAFKA_BOOTSTRAP=args.bootstrap, OPSINTEL_TOPIC_PREFIX=prefix,
                    OPSINTEL_PARTITIONS="4")
    raw_rates, worker_rates, steady_rates = [], [], []
    with tempfile.TemporaryDirectory() as tmp:
        for i in range(args.runs):
            raw_s = asyncio.run(raw_consume(args.bootstrap, settings.topic("tickets"), n))
            groups.append(f"bench-{uuid.uuid4().hex[:8]}")
            w_s, steady, rows, problems = worker_run(base_env, settings, n, Path(tmp), groups[-1])
            assert rows == n, f"worker wrote {rows} rows, expected {n}"
            raw_rates.append(n / raw_s)
            worker_rates.append(n / w_s)
            steady_rates.append(steady)
            print(f"run {i + 1}: raw aiokafka {n / raw_s:>10,.0f} ev/s ({raw_s:.2f}s)   "
                  f"worker end-to-end {n / w_s:>9,.0f} ev/s ({w_s:.2f}s, {rows:,} rows verified; "
                  f"{steady:,.0f} ev/s from its first commit; {problems:,} problem versions)")
    raw_med, w_med = statistics.median(raw_rates), statistics.median(worker_rates)
    print(f"median: raw aiokafka {raw_med:,.0f} ev/s, worker end-to-end {w_med:,.0f} ev/s, "
          f"ratio {w_med / raw_med:.2f}; from the first commit {statistics.median(steady_rates):,.0f} ev/s")


if __name__ == "__main__":
    subprocess.run([str(ROOT / "deploy" / "kafka.sh"), "start"], check=True)
    main()
