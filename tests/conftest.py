"""Shared fixtures.

Unit tests need nothing running: ClickHouse is the in-process chDB engine in a temp folder.
Integration tests (``@pytest.mark.integration``) use the real Kafka broker that ``deploy/kafka.sh``
starts (idempotently) and give every test uuid-named topics, consumer group and data folder.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = ROOT.parent / "shared" / "data"
TEST_DATA = Path(__file__).resolve().parent / "data"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


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
def worker_env(kafka_bootstrap: str, tmp_path: Path) -> dict[str, str]:
    """Environment for an isolated worker: its own topics, group, data folder and web port."""
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
    )
    return env


class WorkerProcess:
    """An ``opsintel worker`` child process."""

    def __init__(self, env: dict[str, str], log: Path) -> None:
        self.env = env
        self.log = log
        self.url = f"http://127.0.0.1:{env['OPSINTEL_WEB_PORT']}"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 90.0) -> WorkerProcess:
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "opsintel.cli", "worker"], env=self.env, stdout=out,
                stderr=subprocess.STDOUT, cwd=ROOT,
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, f"worker exited early:\n{self.log.read_text()[-3000:]}"
            try:
                with urllib.request.urlopen(f"{self.url}/health", timeout=2) as r:
                    if r.status == 200:
                        return self
            except OSError:
                time.sleep(0.3)
        raise AssertionError(f"worker not healthy in {timeout}s:\n{self.log.read_text()[-3000:]}")

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


@pytest.fixture
def worker(worker_env: dict[str, str], tmp_path: Path) -> Iterator[WorkerProcess]:
    w = WorkerProcess(worker_env, tmp_path / "worker.log").start()
    yield w
    w.stop()


def wait_until(predicate, timeout: float = 120.0, interval: float = 0.5, message: str = "condition") -> None:  # type: ignore[no-untyped-def]
    """Poll ``predicate`` until it returns truthy (readiness by polling, never a bare sleep)."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = predicate()
        if last:
            return
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {message} (last: {last!r})")
