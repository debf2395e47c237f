"""Shared fixtures.

Unit tests need nothing running: ClickHouse is the in-process chDB engine in a temp folder.
Integration tests (``@pytest.mark.integration``) use the real Kafka broker that ``deploy/kafka.sh``
starts (idempotently) and give every test uuid-named topics, consumer group and data folder.
"""

from __future__ import annotations

import os
import subprocess
import uuid
import warnings
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support import ROOT, WorkerProcess, free_port


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[pytest.TestReport]:
    """A test that failed while worker processes ran reports their logs, with the stacks of the
    threads and asyncio tasks of those still running (a worker that hangs says where)."""
    report = yield
    if report.when == "setup":
        WorkerProcess.started.clear()
    if report.failed and report.when in ("setup", "call"):
        for worker in WorkerProcess.started:
            report.sections.append((f"worker log {worker.log.name}", worker.diagnose()))
    return report


@pytest.fixture
def chdb_store(tmp_path: Path) -> Iterator[object]:
    """A migrated embedded ClickHouse store in a temp folder."""
    from sinks.clickhouse import ClickHouseStore

    store = ClickHouseStore(f"chdb://{tmp_path / 'ch'}", "opsintel_test")
    store.migrate()
    yield store
    store.close()


@pytest.fixture(scope="session")
def kafka_bootstrap() -> str:
    """The local broker, started by deploy/kafka.sh if it is not running yet."""
    port = os.environ.get("KAFKA_PORT", "9092")
    subprocess.run([str(ROOT / "deploy" / "kafka.sh"), "start"], check=True, cwd=ROOT)
    return f"127.0.0.1:{port}"


@pytest.fixture
def worker_env(kafka_bootstrap: str, tmp_path: Path) -> Iterator[dict[str, str]]:
    """Environment for an isolated worker: its own topics, group, data folder and web port. Its
    topics (and Faust's, named after the group) are deleted afterwards: left behind, they pile up
    on a developer's broker and slow down everything that runs on it later."""
    tag = uuid.uuid4().hex[:10]
    env = dict(os.environ)
    env.update(
        OPSINTEL_KAFKA_BOOTSTRAP=kafka_bootstrap,
        OPSINTEL_TOPIC_PREFIX=f"t{tag}.",
        OPSINTEL_CONSUMER_GROUP=f"g{tag}",
        OPSINTEL_DATA_DIR=str(tmp_path / "var"),
        OPSINTEL_WEB_PORT=str(free_port()),
        OPSINTEL_PARTITIONS="4",
        OPSINTEL_BATCH_SECONDS="0.5",
        OPSINTEL_WEBHOOK_TOKEN="test-webhook-token",
    )
    yield env
    from bench._scratch import drop_topics
    from tests.support import settings_of

    try:
        drop_topics(settings_of(env), [env["OPSINTEL_TOPIC_PREFIX"], env["OPSINTEL_CONSUMER_GROUP"]])
    except Exception as e:  # the broker of a test that stopped it, say: not the test's failure
        warnings.warn(f"could not delete the test's topics: {e!r}", stacklevel=1)


@pytest.fixture
def worker(worker_env: dict[str, str], tmp_path: Path) -> Iterator[WorkerProcess]:
    w = WorkerProcess(worker_env, tmp_path / "worker.log").start()
    yield w
    w.stop()


@pytest.fixture
def workers() -> Iterator[list[WorkerProcess]]:
    """Worker processes a test starts; all stopped at the end, whatever happened."""
    started: list[WorkerProcess] = []
    yield started
    for w in started:
        w.stop()
