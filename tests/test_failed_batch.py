"""A batch that fails in its handler stops the worker; nothing from it on is committed, a restart replays it.

Faust restarts an agent whose code raised, and the stream that agent leaves behind acks whatever
it still reads: before this was handled, one failing batch of the full ServiceNow log ended with
every offset committed and 15,000 events never stored. Now the failure stops flushes, the agent
stays in its take loop and the worker stops with exit status 1 (a supervisor restarts it).
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from streams.ingest import ensure_topics
from tests.support import ROOT, WorkerProcess, get_json, settings_of
from tests.worker_runs import (
    FAULTS,
    SLICE,
    committed,
    drain,
    expected_totals,
    ingest,
    progress,
    store_dir,
    store_probe,
    variant,
)

pytestmark = pytest.mark.integration


def test_a_batch_failing_in_its_handler_stops_the_worker_unacked_and_a_restart_replays_it(
        worker_env: dict[str, str], tmp_path: Path) -> None:
    events, incidents = expected_totals(SLICE)
    ensure_topics(settings_of(worker_env))
    assert ingest(worker_env, SLICE) == events
    # small batches, so that the failing third one comes after flushed and committed ones
    base = variant(worker_env, tmp_path / "store", OPSINTEL_BATCH_SIZE="2000", OPSINTEL_FLUSH_SECONDS="0.2")
    faulty = dict(base, OPSINTEL_TEST_BATCH_FAULT="3", PYTHONPATH=os.pathsep.join([str(FAULTS), str(ROOT)]))
    # launched, not started: it may fail and exit before its health endpoint is ever polled
    worker = WorkerProcess(faulty, tmp_path / "faulty.log").launch()
    try:
        assert worker.proc is not None
        assert worker.proc.wait(timeout=120) == 1, "the worker did not stop with exit status 1"
    finally:
        worker.stop()
    log = (tmp_path / "faulty.log").read_text()
    assert "a batch failed" in log and "injected fault: batch 3" in log
    topic = settings_of(worker_env).topic("tickets")
    with progress(base) as p:
        done = committed(p, topic)
        assert p.remaining() > 0, "the failed batch (or what followed it) was committed"
    # what is committed is stored (the store is free again: read it in a child process)
    stored = store_probe("digest", store_dir(base), settings_of(base).clickhouse_database)["ticket_events"][0]
    assert done <= stored < events

    restarted = WorkerProcess(base, tmp_path / "restarted.log").start()
    try:
        drain(base)
        summary = get_json(f"{restarted.url}/api/summary")
        assert summary["rows"]["ticket_events"] == events and summary["rows"]["incidents"] == incidents
    finally:
        restarted.stop()
