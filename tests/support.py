"""Helpers shared by the tests (importable as ``tests.support``)."""

from __future__ import annotations

import argparse
import json
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterable
from pathlib import Path
from typing import Any, ClassVar

import pytest
from pydantic import SecretStr

from opsintel.cli import build_parser
from opsintel.settings import Settings

ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = ROOT.parent / "shared" / "data"
TEST_DATA = Path(__file__).resolve().parent / "data"

def _our_stacks(dump: str, each: int = 4_000) -> str:
    """Of Faust's stack dump (every thread, then every asyncio task, locals included: ~1.5 MB),
    the threads, the agents and the tasks running this project's code (a flush), each cut to
    ``each`` characters."""
    dump = "\n".join(line[:200] for line in dump.splitlines())  # locals print whole batches
    threads, *tasks = dump.split("\nStack for ")
    ours = [t for t in tasks if "Agent._execute_actor" in t.split("\n", 1)[0]
            or any(f"{ROOT / pkg}/" in t for pkg in ("streams", "sinks", "opsintel", "detectors"))]
    parts = [t[:each] for t in threads.split("\nTHREAD ")] + [f"Stack for {t[:each]}" for t in ours]
    return "\n".join(parts) + f"\n[{len(tasks) - len(ours)} other asyncio tasks left out]"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class WorkerProcess:
    """An ``opsintel worker`` child process."""

    #: the workers started by the running test (the conftest reports their logs if it fails)
    started: ClassVar[list[WorkerProcess]] = []

    def __init__(self, env: dict[str, str], log: Path) -> None:
        self.env = env
        self.log = log
        self.url = f"http://127.0.0.1:{env['OPSINTEL_WEB_PORT']}"
        self.proc: subprocess.Popen[bytes] | None = None

    def launch(self) -> WorkerProcess:
        """Start the process and return at once (:meth:`start` waits until it is healthy)."""
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "opsintel.cli", "worker"], env=self.env, stdout=out,
                stderr=subprocess.STDOUT, cwd=ROOT,
            )
        if self not in WorkerProcess.started:
            WorkerProcess.started.append(self)
        return self

    def start(self, timeout: float = 90.0) -> WorkerProcess:
        self.launch()
        assert self.proc is not None
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

    def diagnose(self, tail: int = 8_000) -> str:
        """The end of its log and, from a worker still running, the stacks of its threads and
        asyncio tasks (Faust's ``SIGUSR1``): for a test that failed waiting on it."""
        before = self.log.read_text(errors="replace")
        out = f"{self.log.name}, last {tail} characters:\n{before[-tail:]}"
        if self.proc is None or self.proc.poll() is not None:
            return out + f"\n[exited with status {self.proc and self.proc.returncode}]"
        self.proc.send_signal(signal.SIGUSR1)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:  # the dump is written at once unless its event loop is blocked
            time.sleep(1)
            after = self.log.read_text(errors="replace")[len(before):]
            if after and after == self.log.read_text(errors="replace")[len(before):]:
                return out + f"\n[still running; its stacks:]\n{_our_stacks(after)}"
        return out + "\n[still running; no stacks in 10 s: its event loop is blocked]"

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


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


def settings_of(env: dict[str, str]) -> Settings:
    """The settings a worker started with ``env`` uses."""
    return Settings(**{k[len("OPSINTEL_"):].lower(): v for k, v in env.items() if k.startswith("OPSINTEL_")})


def get_json(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=30) as r:
        return json.load(r)


def drain(settings: Settings, timeout: float = 180, extra_topics: Iterable[str] = ()) -> None:
    """Wait until the worker's group has committed every offset of the input topics."""
    from streams.ingest import INPUT_TOPICS, OffsetProgress

    topics = [settings.topic(t) for t in (*INPUT_TOPICS, *extra_topics)]  # type: ignore[arg-type]
    with OffsetProgress(settings, topics) as progress:
        wait_until(lambda: progress.remaining() == 0, timeout=timeout, message="worker to commit every offset")


#: every ``OPSINTEL_*`` variable the worker reads, and the ``*_FILE`` forms of its secrets
SETTING_VARS = {f"OPSINTEL_{name.upper()}" for name in Settings.model_fields}
SECRET_FILE_VARS = {
    f"OPSINTEL_{name.upper()}_FILE" for name, info in Settings.model_fields.items() if info.annotation is SecretStr
}


def parse_cli(argv: list[str]) -> argparse.Namespace:
    """``opsintel ARGV`` as the real CLI parses it; argparse's exit becomes a readable failure."""
    try:
        return build_parser().parse_args(argv)
    except SystemExit:
        pytest.fail(f"`opsintel {' '.join(argv)}` is rejected by the CLI (see the captured stderr)")
