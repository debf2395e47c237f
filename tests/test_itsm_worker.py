"""The worker pushes problem records from the problems topic to a ServiceNow-like server and a
signed webhook (local HTTP servers); a failing target delays only the ITSM agent."""

from __future__ import annotations

import asyncio
import base64
import json
import threading
import urllib.request
from collections.abc import Iterator
from itertools import islice
from pathlib import Path
from typing import Any

import msgspec
import pytest
from aiohttp import web

from opsintel.events import TicketEvent
from opsintel.problems import ProblemStatus, encode_problem
from sinks.itsm import verify
from streams.adapters import read_events
from streams.ingest import INPUT_TOPICS, Ingestor, OffsetProgress
from tests.support import ROOT, WorkerProcess, drain, free_port, settings_of, wait_until
from tests.test_itsm_sinks import record

pytestmark = pytest.mark.integration

SLICE = ROOT / "deploy" / "demo-data" / "servicenow_slice.csv.gz"
SN_PASSWORD = "sn-s3cret-Pa55"
HOOK_SECRET = "hook-s3cret-Hm4c"


class ItsmServers:
    """A ServiceNow Table API look-alike and a webhook receiver, in a thread of their own."""

    def __init__(self) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.sn_calls: list[tuple[str, str, dict[str, Any]]] = []
        self.sn_records: dict[str, dict[str, Any]] = {}  # sys_id -> fields
        self.hook_deliveries: list[dict[str, Any]] = []
        self.hook_failures = 0
        self.hook_down = True
        self.bad_signatures = 0
        self._lock = threading.Lock()
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    async def _servicenow(self, request: web.Request) -> web.Response:
        expected = "Basic " + base64.b64encode(f"opsintel-bot:{SN_PASSWORD}".encode()).decode()
        if request.headers.get("Authorization") != expected:
            return web.json_response({"error": "auth"}, status=401)
        body = await request.json() if request.method in ("POST", "PATCH") else {}
        with self._lock:
            self.sn_calls.append((request.method, request.path, body))
            if request.method == "GET":
                pid = request.query["sysparm_query"].removeprefix("correlation_id=")
                hits = [{"sys_id": s} for s, r in self.sn_records.items() if r["correlation_id"] == pid]
                return web.json_response({"result": hits[:1]})
            if request.method == "POST":
                sys_id = f"sys{len(self.sn_records):04d}"
                self.sn_records[sys_id] = body
                return web.json_response({"result": {"sys_id": sys_id, **body}}, status=201)
            self.sn_records[request.match_info["sys_id"]].update(body)
            return web.json_response({"result": {"sys_id": request.match_info["sys_id"]}})

    async def _hook(self, request: web.Request) -> web.Response:
        body = await request.read()
        ok = verify(HOOK_SECRET.encode(), request.headers.get("X-Opsintel-Timestamp", ""), body,
                    request.headers.get("X-Opsintel-Signature", ""))  # fmt: skip
        with self._lock:
            if not ok:
                self.bad_signatures += 1
                return web.json_response({"error": "signature"}, status=401)
            if self.hook_down:
                self.hook_failures += 1
                return web.json_response({"error": "maintenance"}, status=503, headers={"Retry-After": "1"})
            self.hook_deliveries.append(json.loads(body))
        return web.json_response({"id": "hook-" + json.loads(body)["problem"]["problem_id"]})

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        app = web.Application()
        app.router.add_route("*", "/api/now/table/problem", self._servicenow)
        app.router.add_route("PATCH", "/api/now/table/problem/{sys_id}", self._servicenow)
        app.router.add_post("/hook", self._hook)
        self._runner = web.AppRunner(app)
        self._loop.run_until_complete(self._runner.setup())
        self._loop.run_until_complete(web.TCPSite(self._runner, "127.0.0.1", self.port).start())
        self._ready.set()
        self._loop.run_forever()

    def start(self) -> ItsmServers:
        self._thread.start()
        assert self._ready.wait(10)
        return self

    def stop(self) -> None:
        asyncio.run_coroutine_threadsafe(self._runner.cleanup(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)

    def sn_methods(self, problem_id: str) -> list[str]:
        with self._lock:
            sys_ids = {s for s, r in self.sn_records.items() if r["correlation_id"] == problem_id}
            return [m for m, p, b in self.sn_calls
                    if (m == "POST" and b.get("correlation_id") == problem_id) or p.rsplit("/", 1)[-1] in sys_ids]

    def hook_versions(self, problem_id: str) -> list[int]:
        with self._lock:
            return [d["problem"]["version"] for d in self.hook_deliveries if d["problem"]["problem_id"] == problem_id]


@pytest.fixture
def servers() -> Iterator[ItsmServers]:
    s = ItsmServers().start()
    yield s
    s.stop()


def produce_problems(settings: Any, values: list[tuple[bytes, bytes]]) -> None:
    from kafka import KafkaProducer

    producer = KafkaProducer(**settings.kafka_client_options())
    for key, value in values:
        producer.send(settings.topic("problems"), key=key, value=value)
    producer.flush()
    producer.close()


def scrape(url: str) -> str:
    with urllib.request.urlopen(f"{url}/metrics", timeout=10) as r:
        return str(r.read().decode())


def metric_samples(text: str) -> dict[str, float]:
    return {line.rsplit(" ", 1)[0]: float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
            if line and not line.startswith("#")}  # fmt: skip


def test_worker_pushes_problems_to_servicenow_and_a_signed_webhook(
    worker_env: dict[str, str], servers: ItsmServers, tmp_path: Path
) -> None:
    password_file = tmp_path / "sn-password"
    password_file.write_text(SN_PASSWORD + "\n")
    env = dict(worker_env, OPSINTEL_ITSM_SERVICENOW_URL=servers.url, OPSINTEL_ITSM_SERVICENOW_USERNAME="opsintel-bot",
               OPSINTEL_ITSM_SERVICENOW_PASSWORD_FILE=str(password_file),
               OPSINTEL_ITSM_WEBHOOK_URL=f"{servers.url}/hook", OPSINTEL_ITSM_WEBHOOK_SECRET=HOOK_SECRET)
    worker = WorkerProcess(env, tmp_path / "worker.log").start()
    try:
        settings = settings_of(worker_env)  # the same topics and group (its ITSM secrets are files)
        a1 = msgspec.structs.replace(record(1), problem_id="PRB-itsm-a")
        b1 = msgspec.structs.replace(record(1), problem_id="PRB-itsm-b", title="4 similar incidents: db-2")
        produce_problems(settings, [(b"PRB-itsm-a", encode_problem(a1)), (b"bad", b"{not a problem"),
                                    (b"PRB-itsm-b", encode_problem(b1))])  # fmt: skip

        # ServiceNow gets the agent's batch while the webhook answers 503 and is retried. The two
        # records live on two partitions: whether they share the first batch depends on the
        # fetches (seen both ways), so the rest of the batch may wait for the webhook like the
        # offsets do; both are created, once each, in the end (checked below)
        wait_until(lambda: ["POST"] in (servers.sn_methods("PRB-itsm-a"), servers.sn_methods("PRB-itsm-b")),
                   timeout=90, message="a ServiceNow create")  # fmt: skip
        wait_until(lambda: servers.hook_failures >= 2, timeout=60, message="the webhook to be retried")

        # … meanwhile ticket ingestion goes on and commits, but the problems batch is not acked
        events = [ev for ev in islice(read_events("servicenow-csv", SLICE), 300) if isinstance(ev, TicketEvent)]
        ingestor = Ingestor(settings)
        try:
            for ev in events:
                ingestor.send_event(ev)
            ingestor.flush()
        finally:
            ingestor.close()
        drain(settings, timeout=120)
        with OffsetProgress(settings, [settings.topic("problems")]) as progress:
            assert progress.remaining() > 0, "the ITSM agent acked a batch the webhook has not received"
        assert servers.hook_deliveries == []

        # the webhook comes back: it gets the records, then the batch is committed
        servers.hook_down = False
        wait_until(lambda: servers.hook_versions("PRB-itsm-a") == [1] and servers.hook_versions("PRB-itsm-b") == [1],
                   timeout=60, message="the webhook to receive the problems after its outage")  # fmt: skip
        drain(settings, timeout=60, extra_topics=["problems"])

        # newer versions: updates, never a second create
        a2 = msgspec.structs.replace(a1, version=2, status=ProblemStatus.CONFIRMED, incident_count=5)
        a3 = msgspec.structs.replace(a1, version=3, status=ProblemStatus.RESOLVED, incident_count=6)
        b2 = msgspec.structs.replace(b1, version=2, status=ProblemStatus.CONFIRMED)
        produce_problems(settings, [(b"PRB-itsm-a", encode_problem(a2)), (b"PRB-itsm-b", encode_problem(b2))])
        wait_until(lambda: servers.hook_versions("PRB-itsm-b") == [1, 2] and 2 in servers.hook_versions("PRB-itsm-a"),
                   timeout=60, message="the second versions")  # fmt: skip
        produce_problems(settings, [(b"PRB-itsm-a", encode_problem(a3))])
        wait_until(lambda: servers.hook_versions("PRB-itsm-a")[-1:] == [3], timeout=60, message="the third version")
        drain(settings, timeout=60, extra_topics=["problems"])

        assert servers.sn_methods("PRB-itsm-a") == ["POST", "PATCH", "PATCH"]
        assert servers.sn_methods("PRB-itsm-b") == ["POST", "PATCH"]
        with servers._lock:
            by_problem = {r["correlation_id"]: r for r in servers.sn_records.values()}
            gets = [p for m, p, _ in servers.sn_calls if m == "GET"]
        assert by_problem["PRB-itsm-a"]["state"] == "106" and by_problem["PRB-itsm-b"]["state"] == "103"
        assert len(gets) == 2  # one correlation_id lookup per problem, before its create; then the stored sys_id
        assert servers.bad_signatures == 0
        ids = json.loads((settings.data_dir / "itsm" / "external-ids.json").read_text())
        assert set(ids["servicenow"]) >= {"PRB-itsm-a", "PRB-itsm-b"}

        samples = metric_samples(scrape(worker.url))
        # (the ingested tickets may raise problems of their own: those are pushed too)
        assert samples['opsintel_itsm_pushes_total{outcome="sent",target="servicenow"}'] >= 5
        assert samples['opsintel_itsm_pushes_total{outcome="sent",target="webhook"}'] >= 5
        assert samples['opsintel_itsm_pushes_total{outcome="retried",target="webhook"}'] >= 2
        assert samples['opsintel_itsm_pending_records{target="webhook"}'] == 0
        dead = f'opsintel_events_dead_lettered_total{{reason="bad_json",topic="{settings.topic("problems")}"}}'
        assert samples[dead] == 1
        with OffsetProgress(settings, [settings.topic(t) for t in INPUT_TOPICS]) as progress:
            assert progress.remaining() == 0
    finally:
        worker.stop()
    log = (tmp_path / "worker.log").read_text(errors="replace")
    assert "pushing problem records to servicenow, webhook" in log
    assert SN_PASSWORD not in log and HOOK_SECRET not in log
