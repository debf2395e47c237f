"""``opsintel demo``: the README's main job, end to end on real data.

Starts the worker (a child process that owns the embedded store), streams the ServiceNow incident
log and the Alertmanager samples into Kafka, waits until the worker has committed every offset
(committed offsets are written rows: the worker acks only after ClickHouse accepted a batch),
prints the summary read back from ClickHouse, writes the dashboards, and stops the worker.
The Kafka broker must be running (``deploy/kafka.sh start``; ``deploy/demo.sh`` does both).
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SHARED = ROOT.parent / "shared" / "data"
BUNDLED = ROOT / "deploy" / "demo-data"


def _default(shared: Path, bundled: Path) -> Path:
    return shared if shared.exists() else bundled


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("demo", help="run the whole pipeline on the bundled real data and print a summary")
    parser.add_argument(
        "--servicenow",
        type=Path,
        default=_default(SHARED / "servicenow" / "incident_event_log.csv.gz",
                         BUNDLED / "servicenow_slice.csv.gz"),
        help="ServiceNow incident event log (default: the shared full log, else the bundled slice)",
    )
    parser.add_argument(
        "--alertmanager",
        type=Path,
        nargs="*",
        default=sorted(_default(SHARED / "alertmanager", BUNDLED / "alertmanager").glob("*.json")),
        help="Alertmanager webhook payloads",
    )
    parser.add_argument("--timeout", type=float, default=900.0, help="seconds to wait for the worker")
    parser.add_argument("--keep-running", action="store_true", help="leave the worker running at the end")
    parser.set_defaults(func=run)


def _wait_healthy(url: str, proc: subprocess.Popen[bytes], timeout: float) -> None:
    from opsintel.cli import CommandError

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise CommandError(f"the worker exited with code {proc.returncode}; see its log")
        try:
            with urllib.request.urlopen(f"{url}/health", timeout=2) as resp:  # noqa: S310
                if resp.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.5)
    raise CommandError(f"the worker did not become healthy within {timeout:.0f}s")


def run(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from opsintel.cli import CommandError
    from opsintel.cli.summary import fetch_summary, format_summary
    from opsintel.settings import load_settings
    from streams.ingest import INPUT_TOPICS, Ingestor, OffsetProgress, ensure_topics

    settings = load_settings()
    if not args.servicenow.is_file():
        raise CommandError(f"no such file: {args.servicenow}")
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    ensure_topics(settings)
    log_path = settings.data_dir / "worker.log"
    print(f"starting the worker (log: {log_path}) …")
    with log_path.open("ab") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "opsintel.cli", "worker"], stdout=log, stderr=subprocess.STDOUT,
            env=os.environ.copy(),
        )
    try:
        _wait_healthy(settings.web_url, proc, 120)
        topics = [settings.topic(t) for t in INPUT_TOPICS]
        with OffsetProgress(settings, topics) as progress:
            already = sum(progress.end_offsets().values())
        if already:
            # a re-run: the log is already in Kafka. Sending it again would show the detectors the
            # same history twice; the tables would fold the copies, the detectors would not.
            print(f"the topics already hold {already:,} messages from an earlier run: not sending them again "
                  "(`deploy/kafka.sh stop && rm -rf var` starts from scratch)")
            total = already
        else:
            ingestor = Ingestor(settings)
            try:
                with tqdm(total=_data_rows(args.servicenow), unit=" events", desc="ingest ServiceNow log") as bar:
                    ingestor.ingest("servicenow-csv", [args.servicenow], progress=bar)
                if args.alertmanager:
                    with tqdm(unit=" alerts", desc="ingest Alertmanager payloads") as bar:
                        ingestor.ingest("alertmanager", args.alertmanager, progress=bar)
            finally:
                ingestor.close()
            total = ingestor.report.total
        deadline = time.monotonic() + args.timeout
        with tqdm(total=total, unit=" events", desc="worker → ClickHouse") as bar, \
                OffsetProgress(settings, topics) as progress:
            while True:
                left = progress.remaining()
                bar.n = max(total - left, 0)
                bar.refresh()
                if left == 0:
                    break
                if proc.poll() is not None:
                    raise CommandError(f"the worker exited with code {proc.returncode}; see {log_path}")
                if time.monotonic() > deadline:
                    raise CommandError(f"{left} messages still unprocessed after {args.timeout:.0f}s")
                time.sleep(1.0)
        print()
        print(format_summary(fetch_summary()))
        _write_dashboards(settings.data_dir / "dashboards")
    finally:
        if not args.keep_running and proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                proc.kill()
    if args.keep_running:
        print(f"worker still running (pid {proc.pid}); metrics at {settings.web_url}/metrics")
    return 0


def _data_rows(path: Path) -> int:
    """Rows of a CSV log (one event each), for the progress bar's total."""
    from streams.adapters._base import open_text

    with open_text(path) as f:
        return max(sum(1 for _ in f) - 1, 0)


def _write_dashboards(out: Path) -> None:
    try:
        from dashboards import write_all
    except ImportError:
        print("dashboards: not built yet in this version")
        return
    written = write_all(out)
    print(f"dashboards: {len(written)} files written to {out}")
