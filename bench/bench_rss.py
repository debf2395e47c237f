"""Worker peak RSS over a 1× and a k× longer replay (issue 8: flat within ±10 % between 1× and 10×).

The ServiceNow log (time-ordered) is replayed ``--copies`` times with shifted timestamps: copy *i*
has every datetime field of every event (``event_time``, ``opened_at``, ``resolved_at``,
``closed_at``, ``reopened_at``) moved by ``i × (log span + 1 day)`` and its ``ticket_id`` /
``event_id`` suffixed with ``~r<i>``, so each copy is a new set of tickets later in time (copies
follow each other, so the whole stream stays in time order). Two topic sets are loaded once: the
1× log and the k× replay.

Then, ``--runs`` times, alternating: a fresh ``opsintel worker`` (new consumer group, new embedded
chDB folder) over the 1× topics, then over the k× topics. A sampler reads ``VmRSS`` of the worker
process and the processes it started (``/proc/<pid>/status``, summed) every second together with
the share of the input its group has committed; the worker's peak RSS is the sum of their
``VmHWM`` when the committed offsets reach the end.

Prints per run: peak RSS of 1× and k×, their ratio, the RSS at 10 %, 50 % and 100 % of the k× run
(and its rate), then the medians. Needs the local broker.

    .venv/bin/python bench/bench_rss.py --runs 3 --copies 10
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
import uuid
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import msgspec

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench._scratch import drop_topics  # noqa: E402
from opsintel.events import TicketEvent, _time_fields  # noqa: E402
from opsintel.settings import Settings  # noqa: E402
from streams.adapters import read_events  # noqa: E402
from streams.adapters._base import Rejected  # noqa: E402
from streams.ingest import INPUT_TOPICS, Ingestor, OffsetProgress, ensure_topics  # noqa: E402
from tests.support import WorkerProcess, free_port  # noqa: E402

LOG = ROOT.parent / "shared" / "data" / "servicenow" / "incident_event_log.csv.gz"


def shifted(ev: TicketEvent, i: int, shift: timedelta, fields: tuple[str, ...]) -> TicketEvent:
    if i == 0:
        return ev
    changes = {f: getattr(ev, f) + i * shift for f in fields if getattr(ev, f) is not None}
    return msgspec.structs.replace(ev, event_id=f"{ev.event_id}~r{i}", ticket_id=f"{ev.ticket_id}~r{i}", **changes)


def replay_log(log: Path) -> tuple[list[TicketEvent], timedelta]:
    """The log's events in time order, and the shift between two copies (its span + 1 day)."""
    events = [e for e in read_events("servicenow-csv", log) if not isinstance(e, Rejected)]
    events.sort(key=lambda e: e.event_time)
    fields = _time_fields(TicketEvent)
    stamps = [getattr(e, f) for e in events for f in fields if getattr(e, f) is not None]
    span = max(stamps) - min(stamps)
    shift = span + timedelta(days=1)
    print(f"log: {len(events):,} events, datetimes {min(stamps):%Y-%m-%d} .. {max(stamps):%Y-%m-%d} "
          f"(span {span.days} d); copy i shifted by i × {shift.days} d")
    return events, shift


def load(settings: Settings, events: list[TicketEvent], copies: int, shift: timedelta) -> int:
    ensure_topics(settings)
    fields = _time_fields(TicketEvent)
    ingestor = Ingestor(settings)
    for i in range(copies):
        for ev in events:
            ingestor.send_event(shifted(ev, i, shift, fields))
        ingestor.flush()
    ingestor.close()
    return ingestor.report.sent[settings.topic("tickets")]


def status_kb(pid: int, key: str) -> int:
    """``key`` (``VmRSS``, ``VmHWM``) of the worker *and every process it started* (the insert
    encoder's child, multiprocessing's resource tracker), summed. For ``VmHWM`` the sum of each
    process's own peak: at least the peak of the sum, so never flattering."""
    total = 0
    for p in [pid, *_descendants(pid)]:
        try:
            with open(f"/proc/{p}/status") as f:
                total += next(int(line.split()[1]) for line in f if line.startswith(key + ":"))
        except (OSError, StopIteration):
            if p == pid:
                raise
    return total


def peaks_by_process(pid: int) -> dict[str, int]:
    """Each process's own ``VmHWM`` (kB): the worker, the insert encoder's child, the rest."""
    out: dict[str, int] = {}
    for p in [pid, *_descendants(pid)]:
        try:
            with open(f"/proc/{p}/status") as f:
                hwm = next(int(line.split()[1]) for line in f if line.startswith("VmHWM:"))
            with open(f"/proc/{p}/cmdline", "rb") as f:
                cmdline = f.read()
        except (OSError, StopIteration):
            continue
        name = ("worker" if p == pid else "encoder child" if b"spawn_main" in cmdline
                else "resource tracker" if b"resource_tracker" in cmdline else "other")
        out[name] = out.get(name, 0) + hwm
    return out


def _descendants(pid: int) -> list[int]:
    out: list[int] = []
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as f:
            kids = [int(k) for k in f.read().split()]
    except OSError:
        return out
    for k in kids:
        out += [k, *_descendants(k)]
    return out


@dataclass
class RunResult:
    hwm: int  #: VmHWM (kB) when the group had committed everything
    by_process: dict[str, int]  #: that peak, per process
    seconds: float
    rate: float
    at: dict[float, int]  #: VmRSS (kB) at the first sample with that share committed
    samples: list[tuple[float, float, int]]  #: (seconds, share committed, VmRSS kB)
    #: per sample, the embedded engine's tracked memory (kB; the worker's /metrics, updated every 5 s)
    engine: list[int]


def worker_run(base_env: dict[str, str], settings: Settings, total: int, workdir: Path, group: str) -> RunResult:
    env = dict(base_env, OPSINTEL_TOPIC_PREFIX=settings.topic_prefix, OPSINTEL_CONSUMER_GROUP=group,
               OPSINTEL_DATA_DIR=str(workdir / group), OPSINTEL_WEB_PORT=str(free_port()))
    run_settings = settings.model_copy(update={"consumer_group": group})
    w = WorkerProcess(env, workdir / f"{group}.log").start()
    assert w.proc is not None
    pid = w.proc.pid
    samples: list[tuple[float, float, int]] = []  # (seconds, share committed, VmRSS kB)
    engine: list[int] = []
    done = threading.Event()
    share = [0.0]
    started = time.monotonic()

    def sample() -> None:
        while not done.is_set():
            try:
                samples.append((time.monotonic() - started, share[0], status_kb(pid, "VmRSS")))
                engine.append(engine_kb(w.url))
            except (OSError, KeyError):
                return
            done.wait(1.0)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    try:
        with OffsetProgress(run_settings, [settings.topic(t) for t in INPUT_TOPICS]) as progress:
            while True:
                remaining = progress.remaining()
                share[0] = 1 - remaining / total
                if remaining == 0:
                    break
                time.sleep(1.0)
        elapsed = time.monotonic() - started
        hwm = status_kb(pid, "VmHWM")
        by_process = peaks_by_process(pid)
        rss_end = status_kb(pid, "VmRSS")
        done.set()
        sampler.join()
        samples.append((elapsed, 1.0, rss_end))
        engine.append(engine_kb(w.url))
    finally:
        done.set()
        w.stop()

    def at(frac: float) -> int:
        return next(kb for _, s, kb in samples if s >= frac)

    return RunResult(hwm, by_process, elapsed, total / elapsed, {f: at(f) for f in (0.1, 0.5, 1.0)}, samples, engine)


def metric(url: str, sample: str, timeout: float = 5.0) -> float:
    """One sample of the worker's ``/metrics`` (``sample`` is its name with labels, e.g.
    ``opsintel_rows_written_total{table="problems"}``); 0 if it is not there (yet)."""
    try:
        with urllib.request.urlopen(f"{url}/metrics", timeout=timeout) as r:
            lines = r.read().decode().splitlines()
    except OSError:
        return 0.0
    prefix = sample + " "
    return next((float(line[len(prefix):]) for line in lines if line.startswith(prefix)), 0.0)


def engine_kb(url: str) -> int:
    """The embedded engine's tracked memory (kB), from the worker's ``/metrics``."""
    return int(metric(url, "opsintel_clickhouse_embedded_memory_bytes")) // 1024


def mb(kb: float) -> str:
    return f"{kb / 1024:,.0f} MB"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--copies", type=int, default=10, help="length of the long replay, in copies of the log")
    parser.add_argument("--log", type=Path, default=LOG)
    parser.add_argument("--bootstrap", default=os.environ.get("OPSINTEL_KAFKA_BOOTSTRAP", "127.0.0.1:9092"))
    args = parser.parse_args()

    events, shift = replay_log(args.log)
    sets: dict[int, tuple[Settings, int]] = {}
    groups: list[str] = []
    try:
        measure(args, events, shift, sets, groups)
    finally:
        drop_topics(Settings(kafka_bootstrap=args.bootstrap), [s.topic_prefix for s, _ in sets.values()] + groups)


def measure(args: argparse.Namespace, events: list[TicketEvent], shift: timedelta,
            sets: dict[int, tuple[Settings, int]], groups: list[str]) -> None:
    for copies in (1, args.copies):
        settings = Settings(kafka_bootstrap=args.bootstrap, topic_prefix=f"rss{uuid.uuid4().hex[:6]}.", partitions=4)
        sets[copies] = (settings, 0)  # known before loading, so a failed load is cleaned up too
        t0 = time.perf_counter()
        n = load(settings, events, copies, shift)
        print(f"loaded {copies}× = {n:,} events into {settings.topic('tickets')} in {time.perf_counter() - t0:.0f}s")
        sets[copies] = (settings, n)

    base_env = dict(os.environ, OPSINTEL_KAFKA_BOOTSTRAP=args.bootstrap, OPSINTEL_PARTITIONS="4")
    peaks: dict[int, list[int]] = {1: [], args.copies: []}
    ratios: list[float] = []
    growth: dict[float, list[int]] = {0.1: [], 0.5: [], 1.0: []}
    with tempfile.TemporaryDirectory() as tmp:
        for run in range(args.runs):
            res = {}
            for c, (s, n) in sets.items():
                groups.append(f"rss-{uuid.uuid4().hex[:8]}")
                res[c] = worker_run(base_env, s, n, Path(tmp), groups[-1])
            short, long = res[1], res[args.copies]
            for c in peaks:
                peaks[c].append(res[c].hwm)
            ratio = long.hwm / short.hwm
            ratios.append(ratio)
            for f in growth:
                growth[f].append(long.at[f])
            print(f"run {run + 1}: peak RSS 1× {mb(short.hwm)} ({short.seconds:.0f}s, {short.rate:,.0f} ev/s), "
                  f"{args.copies}× {mb(long.hwm)} ({long.seconds:.0f}s, {long.rate:,.0f} ev/s), "
                  f"ratio {ratio:.2f};  {args.copies}× RSS at 10 % {mb(long.at[0.1])}, 50 % {mb(long.at[0.5])}, "
                  f"100 % {mb(long.at[1.0])}", flush=True)
            print(f"  peaks per process, 1× / {args.copies}×: " + ", ".join(
                f"{name} {mb(short.by_process.get(name, 0))} / {mb(kb)}" for name, kb in long.by_process.items()))
            step = max(1, len(long.samples) // 20)
            print("  trace (s, committed, RSS MB, of which the embedded engine MB): " + ", ".join(
                f"{t:.0f}s {s:.0%} {kb / 1024:.0f} ({e / 1024:.0f})"
                for (t, s, kb), e in list(zip(long.samples, long.engine, strict=True))[::step]), flush=True)
            for c, r in res.items():
                rest = max(kb - e for (*_, kb), e in zip(r.samples, r.engine, strict=True))
                print(f"  {c}×: samples (1 s; the engine's gauge is updated every 5 s): process tree RSS max "
                      f"{mb(max(kb for *_, kb in r.samples))}, embedded engine max {mb(max(r.engine))}, "
                      f"RSS minus engine max {mb(rest)}")
    print(f"median peak RSS: 1× {mb(statistics.median(peaks[1]))}, {args.copies}× "
          f"{mb(statistics.median(peaks[args.copies]))}, ratio {statistics.median(ratios):.2f} "
          f"(target within ±10 %: {'met' if abs(statistics.median(ratios) - 1) <= 0.10 else 'NOT met'}); "
          f"{args.copies}× RSS at 10/50/100 %: "
          + " / ".join(mb(statistics.median(growth[f])) for f in (0.1, 0.5, 1.0)))


if __name__ == "__main__":
    subprocess.run([str(ROOT / "deploy" / "kafka.sh"), "start"], check=True)
    main()
