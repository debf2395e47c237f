"""The floor of Faust's delivery path on this machine: an agent that only takes batches and acks.

Runs a minimal Faust app (no decoding, no writes) over a topic, with Faust's stock aiokafka
transport (``noack_take`` batches of 5,000 events, ack every event) and with opsintel's
:class:`streams.transport.RunDeliveryTransport` (one event per partition per fetch, whose value is
the run of records; the agent counts the records and acks the runs), alternating, each in a fresh
process and consumer group. What the worker does per event comes on top of this floor.

    .venv/bin/python bench/bench_faust_floor.py TOPIC EXPECTED_MESSAGES --runs 3
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any, cast

ROOT = Path(__file__).resolve().parents[1]


def child(topic: str, expected: int, transport: str) -> None:
    import faust
    from faust.streams import Stream
    from faust.worker import Worker

    app = faust.App(f"floor-{uuid.uuid4().hex[:8]}", broker="kafka://127.0.0.1:9092", value_serializer="raw",
                    key_serializer="raw", consumer_auto_offset_reset="earliest", web_enabled=False,
                    autodiscover=False, broker_max_poll_records=5000, consumer_max_fetch_size=8 * 1024 * 1024,
                    stream_buffer_maxsize=20000, datadir=tempfile.mkdtemp(prefix="floor-"))
    runs = transport == "runs"
    if runs:
        sys.path.insert(0, str(ROOT))
        from streams.transport import RECORD_RUNS, RunDeliveryTransport

        app.transport = RunDeliveryTransport(app.conf.broker_consumer, app)
        source = app.topic(topic, key_type=bytes, value_serializer=RECORD_RUNS, maxsize=16)
    else:
        source = app.topic(topic, key_type=bytes, value_type=bytes)
    state: dict[str, Any] = {"n": 0, "t0": None}

    @app.agent(source)
    async def take(stream: Any) -> None:
        async for batch in cast(Stream, stream).noack_take(4 if runs else 5000, within=1.0):
            if state["t0"] is None:
                state["t0"] = time.perf_counter()
            for ev in batch:
                await stream.ack(ev)
            state["n"] += sum(len(ev.value) for ev in batch) if runs else len(batch)
            if state["n"] >= expected:
                print(f"RATE {expected / (time.perf_counter() - state['t0']):.0f}", flush=True)
                os._exit(0)  # measured: no need for Faust's graceful shutdown

    Worker(app, loglevel="warning", quiet=True).execute_from_commandline()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("topic")
    parser.add_argument("expected", type=int)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--child", choices=("stock", "runs"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        sys.argv = [sys.argv[0], "worker"]
        child(args.topic, args.expected, args.child)
        return
    rates: dict[str, list[float]] = {"stock": [], "runs": []}
    for i in range(args.runs):
        for transport in rates:
            out = subprocess.run([sys.executable, __file__, args.topic, str(args.expected), "--child", transport],
                                 capture_output=True, text=True, timeout=300)
            rate = next(float(line.split()[-1]) for line in (out.stdout + out.stderr).splitlines()
                        if "RATE" in line)
            rates[transport].append(rate)
            print(f"run {i + 1}: {transport:<6} {rate:>9,.0f} msg/s", flush=True)
    stock, runs = statistics.median(rates["stock"]), statistics.median(rates["runs"])
    print(f"median: stock transport {stock:,.0f} msg/s, run delivery {runs:,.0f} msg/s, ratio {runs / stock:.2f}")


if __name__ == "__main__":
    main()
