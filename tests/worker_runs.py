"""Running ``opsintel worker`` processes against the real broker and comparing what they store:
the helpers of the tests that crash, starve, stop and restart workers (test_reliability,
test_failed_batch, test_shutdown).

The store is embedded chDB, one process per data folder: a worker's store is read after it has
stopped, by ``tests/store_digest.py`` in a child process (:func:`store_probe`).
"""

from __future__ import annotations

import gzip
import json
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path
from typing import Any

from opsintel.events import TicketEvent
from sinks.clickhouse import TABLES
from streams.adapters import read_events
from streams.ingest import INPUT_TOPICS, Ingestor, OffsetProgress
from tests import support
from tests.support import ROOT, SHARED_DATA, WorkerProcess, free_port, settings_of

SLICE = ROOT / "deploy" / "demo-data" / "servicenow_slice.csv.gz"
FULL_LOG = SHARED_DATA / "servicenow" / "incident_event_log.csv.gz"
#: the full ServiceNow log (141,712 events) in CI, where ../shared sits beside the clone
CRASH_LOG = Path(os.environ.get("OPSINTEL_TEST_CRASH_LOG") or (FULL_LOG if FULL_LOG.exists() else SLICE))
FAULTS = Path(__file__).parent / "faults"
#: a SIGKILLed member stays in the group until its session times out (Faust's default: 60 s);
#: Faust reads these from the environment, so a restarted worker rejoins within seconds
FAST_REJOIN = {"BROKER_SESSION_TIMEOUT": "6", "BROKER_HEARTBEAT_INTERVAL": "1"}


def variant(env: dict[str, str], folder: Path, group: str | None = None, **extra: str) -> dict[str, str]:
    """The same topics, another data folder and web port (and optionally another consumer group)."""
    out = dict(env, OPSINTEL_DATA_DIR=str(folder), OPSINTEL_WEB_PORT=str(free_port()), **extra)
    if group:
        out["OPSINTEL_CONSUMER_GROUP"] = group
    return out


def progress(env: dict[str, str]) -> OffsetProgress:
    s = settings_of(env)
    return OffsetProgress(s, [s.topic(t) for t in INPUT_TOPICS], s.consumer_group)


def committed(p: OffsetProgress, topic: str) -> int:
    return sum(off for (t, _), off in p.committed().items() if t == topic)


def drain(env: dict[str, str], timeout: float = 300) -> None:
    """Wait until the group of the worker started with ``env`` has committed every input offset."""
    support.drain(settings_of(env), timeout)


def ingest(env: dict[str, str], path: Path, **kwargs: Any) -> int:
    ingestor = Ingestor(settings_of(env), **kwargs)
    try:
        report = ingestor.ingest("servicenow-csv", [path])
    finally:
        ingestor.close()
    return report.total


def background(fn: Any, *args: Any) -> tuple[threading.Thread, list[Any]]:
    result: list[Any] = []

    def run() -> None:
        try:
            result.append(fn(*args))
        except BaseException as e:  # surfaced by the test when it joins
            result.append(e)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread, result


def joined(thread: threading.Thread, result: list[Any], timeout: float = 600) -> Any:
    thread.join(timeout)
    assert not thread.is_alive(), "background ingest did not finish"
    if isinstance(result[0], BaseException):
        raise result[0]
    return result[0]


def store_probe(*args: str) -> Any:
    """Run tests/store_digest.py in a child process (one chDB folder per process)."""
    out = subprocess.run([sys.executable, "-m", "tests.store_digest", *args], cwd=ROOT, capture_output=True,
                         text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    return json.loads(out.stdout) if out.stdout.strip() else None


def store_dir(env: dict[str, str]) -> str:
    return str((Path(env["OPSINTEL_DATA_DIR"]) / "clickhouse").resolve())


def digest(env: dict[str, str]) -> dict[str, Any]:
    result = store_probe("digest", store_dir(env), settings_of(env).clickhouse_database)
    assert {t.name for t in TABLES} - {"detector_state"} <= set(result), "a table is missing from the digest"
    return result


def assert_same_tables(got: dict[str, Any], want: dict[str, Any]) -> None:
    differing = {name: (got.get(name), want[name]) for name in want if got.get(name) != want[name]}
    summary: dict[str, Any] = {}
    for name, (g, w) in differing.items():
        if isinstance(w, list) and len(w) == 3 and isinstance(w[2], dict):  # a table: rows and columns
            columns = sorted(c for c in w[2] if not g or g[2].get(c) != w[2][c])
            summary[name] = f"rows {g[0] if g else None} vs {w[0]}, columns differing: {columns}"
        else:
            summary[name] = f"view: {len(g or [])} vs {len(w)} rows, {len(set(g or []) ^ set(w))} rows differ"
    assert not differing, f"tables differ (got vs want): {summary}"
    assert set(got) == set(want)


def expected_totals(path: Path) -> tuple[int, int]:
    """Events and incidents in a ServiceNow log, from the adapter alone."""
    latest: set[str] = set()
    n = 0
    for ev in read_events("servicenow-csv", path):
        assert isinstance(ev, TicketEvent)
        n += 1
        latest.add(ev.ticket_id)
    return n, len(latest)


def count_rows(path: Path) -> int:
    with gzip.open(path, "rt") as f:
        return sum(1 for _ in f) - 1




def settled(p: OffsetProgress, quiet: float = 4.0, timeout: float = 60.0) -> dict[tuple[str, int], int]:
    """The group's committed offsets once they have not moved for ``quiet`` seconds."""
    deadline = time.monotonic() + timeout
    last, since = p.committed(), time.monotonic()
    while time.monotonic() < deadline:
        time.sleep(0.5)
        now = p.committed()
        if now != last:
            last, since = now, time.monotonic()
        elif time.monotonic() - since >= quiet:
            return now
    raise AssertionError(f"committed offsets still moving after {timeout:.0f}s: {last}")


def metric(url: str, name: str) -> float:
    with urllib.request.urlopen(f"{url}/metrics", timeout=10) as r:
        text = r.read().decode()
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines() if line.startswith(name))


def sigkill(worker: WorkerProcess) -> None:
    assert worker.proc is not None
    worker.proc.send_signal(signal.SIGKILL)
    worker.proc.wait(30)
