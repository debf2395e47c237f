"""Stopping the worker (SIGTERM: a rollout, a node drain): what it has read is stored and committed
first; a store that does not take it within ``OPSINTEL_SHUTDOWN_SECONDS`` does not hold the stop
(before, the worker waited for it forever): those batches stay uncommitted and the next start
replays them, so nothing is lost either way.
"""

from __future__ import annotations

import asyncio
import os
import signal
import time
from pathlib import Path

import pytest

from streams.ingest import ensure_topics
from tests.support import ROOT, WorkerProcess, settings_of, wait_until
from tests.worker_runs import (
    FAULTS,
    SLICE,
    committed,
    drain,
    expected_totals,
    ingest,
    metric,
    progress,
    store_dir,
    store_probe,
)

#: nothing is flushed by size or time while the test reads: only the stop flushes
HOLD = {"OPSINTEL_BATCH_SIZE": "1000000", "OPSINTEL_FLUSH_SECONDS": "3600"}


def stored(env: dict[str, str]) -> int:
    """Ticket events in the (stopped) worker's store."""
    digest = store_probe("digest", store_dir(env), settings_of(env).clickhouse_database)
    return int(digest["ticket_events"][0])


def read_all(worker: WorkerProcess, events: int) -> None:
    wait_until(lambda: metric(worker.url, "opsintel_events_consumed_total") >= events,
               message=f"the worker to read all {events} events")


def sigterm(worker: WorkerProcess, timeout: float) -> tuple[int, float]:
    """Its exit status and how long it took to stop."""
    assert worker.proc is not None
    started = time.monotonic()
    worker.proc.send_signal(signal.SIGTERM)
    return worker.proc.wait(timeout=timeout), time.monotonic() - started


@pytest.mark.integration
def test_a_stop_stores_and_commits_what_the_worker_has_read(worker_env: dict[str, str], tmp_path: Path) -> None:
    events, _ = expected_totals(SLICE)
    ensure_topics(settings_of(worker_env))
    assert ingest(worker_env, SLICE) == events
    env = dict(worker_env, **HOLD)
    worker = WorkerProcess(env, tmp_path / "worker.log").start()
    try:
        read_all(worker, events)
        with progress(env) as p:
            assert committed(p, settings_of(env).topic("tickets")) == 0, "flushed before the stop"
        status, _ = sigterm(worker, timeout=90)
    finally:
        worker.stop()
    assert status == 0
    with progress(env) as p:
        assert p.remaining() == 0, "the stop left read events uncommitted"
    assert stored(env) == events


@pytest.mark.integration
def test_a_stop_while_clickhouse_is_down_ends_in_time_and_a_restart_stores_everything(
        worker_env: dict[str, str], tmp_path: Path) -> None:
    events, _ = expected_totals(SLICE)
    ensure_topics(settings_of(worker_env))
    assert ingest(worker_env, SLICE) == events
    marker = tmp_path / "clickhouse-down"
    marker.touch()
    env = dict(worker_env, **HOLD, OPSINTEL_SHUTDOWN_SECONDS="5")
    faulty = dict(env, OPSINTEL_TEST_STORE_FAULT=str(marker), PYTHONPATH=os.pathsep.join([str(FAULTS), str(ROOT)]))
    worker = WorkerProcess(faulty, tmp_path / "faulty.log").start()
    try:
        read_all(worker, events)
        status, took = sigterm(worker, timeout=120)  # (it waited for ever before)
    finally:
        worker.stop()
    assert status == 0
    # 5 s for the batches, then Faust's own stop (consumer, producer, web): well under the 60 s of
    # the chart's terminationGracePeriodSeconds
    assert took < 45, f"the stop took {took:.0f} s with OPSINTEL_SHUTDOWN_SECONDS=5"
    assert "not stored in 5 s" in (tmp_path / "faulty.log").read_text()
    with progress(env) as p:
        assert committed(p, settings_of(env).topic("tickets")) == 0, "committed what was never stored"
    assert stored(env) == 0

    marker.unlink()
    restarted = WorkerProcess(dict(env, OPSINTEL_FLUSH_SECONDS="1"), tmp_path / "restarted.log").start()
    try:
        drain(env)
    finally:
        restarted.stop()
    assert stored(env) == events


class _Consumer:
    """What Faust's wait for acks needs of a consumer: it returns once nothing is unacked."""

    def __init__(self) -> None:
        self.waited = 0

    async def wait_empty(self) -> None:
        self.waited += 1


def test_only_a_stop_flushes_at_once_and_bounds_the_wait(tmp_path: Path) -> None:
    """Faust waits for acks both when the worker stops and before every rebalance revokes
    partitions: a rebalance must keep Faust's own wait (flushing at once from then on, or failing
    the worker after ``shutdown_seconds``, would be wrong there)."""
    from opsintel.settings import Settings
    from streams.app import WorkerApp, create_app

    app = create_app(Settings(topic_prefix="t.", data_dir=tmp_path, shutdown_seconds=0.5))
    assert isinstance(app, WorkerApp) and app.handlers is not None
    handlers = app.handlers
    consumer = _Consumer()

    async def hanging_flush() -> None:  # a flush that never ends (ClickHouse down)
        await asyncio.Event().wait()

    async def failing_flush() -> None:  # a flush that fails for good
        raise RuntimeError("a bug in a flush")

    async def run() -> None:
        await app._consumer_wait_empty(consumer, app.log)  # a rebalance
        assert consumer.waited == 1 and not handlers._finishing and not handlers.failed
        app._stopped.set()  # what mode's Service.stop() does first
        handlers.flush = failing_flush  # type: ignore[method-assign]
        await app._consumer_wait_empty(consumer, app.log)  # a stop: no error escapes, no wait for acks
        assert consumer.waited == 1
        handlers.flush = hanging_flush  # type: ignore[method-assign]
        started = time.monotonic()
        await app._consumer_wait_empty(consumer, app.log)  # a stop
        assert time.monotonic() - started < 5
        assert handlers.failed and app.handlers.writer.stopping  # nothing more is flushed or retried

    try:
        asyncio.run(run())
    finally:
        app.opsintel.writer.close()  # type: ignore[attr-defined]
