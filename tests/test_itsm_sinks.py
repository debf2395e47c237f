"""ITSM pushes against a local HTTP server that checks method, path, auth and body fields."""

from __future__ import annotations

import asyncio
import base64
import json
import logging
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

import msgspec
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from opsintel.problems import ProblemRecord, ProblemStatus
from sinks.itsm import (
    ExternalIdStore,
    ItsmOutbox,
    ItsmRejected,
    ItsmUnavailable,
    ServiceDeskPlusProblemClient,
    ServiceNowProblemClient,
    WebhookProblemClient,
    verify,
)

T = datetime(2016, 3, 1, 9, tzinfo=UTC)
SECRET = "s3cret-value"


def record(version: int = 1, status: ProblemStatus = ProblemStatus.CANDIDATE) -> ProblemRecord:
    return ProblemRecord(problem_id="PRB-abc", kind="recurring", version=version, status=status,
                         title="3 similar incidents: srv-7 / Symptom 72", first_seen=T, last_seen=T,
                         raised_at=T, updated_at=T, ci="srv-7", category="Category 55",
                         incident_ids=["INC1", "INC2", "INC3"], incident_count=3)  # fmt: skip


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def serve(routes: list[tuple[str, str, Handler]], scenario: Callable[[str], Awaitable[Any]]) -> Any:
    async def main() -> Any:
        app = web.Application()
        for method, path, handler in routes:
            app.router.add_route(method, path, handler)
        server = TestServer(app, host="127.0.0.1")
        await server.start_server()
        try:
            return await scenario(str(server.make_url("")).rstrip("/"))
        finally:
            await server.close()

    return asyncio.run(main())


def test_servicenow_creates_once_then_patches() -> None:
    calls: list[tuple[str, str, dict[str, Any]]] = []
    expected_auth = "Basic " + base64.b64encode(f"bot:{SECRET}".encode()).decode()

    async def handler(request: web.Request) -> web.Response:
        assert request.headers["Authorization"] == expected_auth
        body = await request.json() if request.method in ("POST", "PATCH") else {}
        calls.append((request.method, request.path, body))
        if request.method == "GET":
            assert request.query["sysparm_query"] == "correlation_id=PRB-abc"
            return web.json_response({"result": []})
        if request.method == "POST":
            return web.json_response({"result": {"sys_id": "6816f79cc0a8016401c5a33be04be441"}}, status=201)
        return web.json_response({"result": {"sys_id": request.match_info["sys_id"]}})

    async def scenario(base: str) -> None:
        store = ExternalIdStore()
        async with ServiceNowProblemClient(base, username="bot", password=SECRET, store=store) as client:
            assert await client.push(record(1)) == "6816f79cc0a8016401c5a33be04be441"
            await client.push(record(2, ProblemStatus.CONFIRMED))

    serve([("GET", "/api/now/table/problem", handler), ("POST", "/api/now/table/problem", handler),
           ("PATCH", "/api/now/table/problem/{sys_id}", handler)], scenario)  # fmt: skip
    assert [(m, p) for m, p, _ in calls] == [
        ("GET", "/api/now/table/problem"),
        ("POST", "/api/now/table/problem"),
        ("PATCH", "/api/now/table/problem/6816f79cc0a8016401c5a33be04be441"),
    ]
    created, patched = calls[1][2], calls[2][2]
    assert created["correlation_id"] == "PRB-abc" and created["short_description"].startswith("3 similar")
    assert created["cmdb_ci"] == "srv-7" and created["state"] == "101" and "INC1" in created["description"]
    assert patched["state"] == "103"


def test_servicenow_bearer_and_found_by_correlation_id() -> None:
    seen: list[str] = []

    async def handler(request: web.Request) -> web.Response:
        assert request.headers["Authorization"] == "Bearer tok-123"
        seen.append(request.method)
        if request.method == "GET":
            return web.json_response({"result": [{"sys_id": "existing"}]})
        return web.json_response({"result": {"sys_id": "existing"}})

    async def scenario(base: str) -> str:
        async with ServiceNowProblemClient(base, token="tok-123") as client:
            return await client.push(record())

    assert serve([("GET", "/api/now/table/problem", handler),
                  ("PATCH", "/api/now/table/problem/{sys_id}", handler)], scenario) == "existing"  # fmt: skip
    assert seen == ["GET", "PATCH"]  # a lost create is not repeated


@pytest.mark.parametrize("auth", ["authtoken", "oauth"])
def test_servicedesk_plus_input_data(auth: str) -> None:
    calls: list[tuple[str, str, dict[str, Any]]] = []

    async def handler(request: web.Request) -> web.Response:
        if auth == "authtoken":
            assert request.headers["authtoken"] == SECRET
        else:
            assert request.headers["Authorization"] == f"Zoho-oauthtoken {SECRET}"
        assert request.headers["Accept"] == "application/vnd.manageengine.sdp.v3+json"
        form = await request.post()
        payload = json.loads(str(form["input_data"]))
        calls.append((request.method, request.path, payload))
        return web.json_response({"problem": {"id": "120000000012345", "title": payload["problem"]["title"]},
                                  "response_status": {"status_code": 2000, "status": "success"}})  # fmt: skip

    async def scenario(base: str) -> None:
        kw = {"authtoken": SECRET} if auth == "authtoken" else {"oauth_token": SECRET}
        async with ServiceDeskPlusProblemClient(base, status_map={"confirmed": "Open"}, **kw) as client:
            assert await client.push(record(1)) == "120000000012345"
            await client.push(record(2, ProblemStatus.CONFIRMED))

    serve([("POST", "/api/v3/problems", handler), ("PUT", "/api/v3/problems/{id}", handler)], scenario)
    assert [(m, p) for m, p, _ in calls] == [("POST", "/api/v3/problems"), ("PUT", "/api/v3/problems/120000000012345")]
    assert calls[0][2]["problem"]["title"].startswith("3 similar incidents")
    assert "srv-7" in calls[0][2]["problem"]["description"] and "status" not in calls[0][2]["problem"]
    assert calls[1][2]["problem"]["status"] == {"name": "Open"}


def test_webhook_signature_and_timestamp() -> None:
    got: list[dict[str, Any]] = []

    async def handler(request: web.Request) -> web.Response:
        body = await request.read()
        ts = request.headers["X-Opsintel-Timestamp"]
        assert ts == "1700000000"
        assert verify(SECRET.encode(), ts, body, request.headers["X-Opsintel-Signature"])
        assert request.headers["X-Opsintel-Idempotency-Key"] == "PRB-abc:1"
        got.append(json.loads(body))
        return web.json_response({"id": "hook-1"})

    async def scenario(base: str) -> str:
        async with WebhookProblemClient(base + "/hook", secret=SECRET, clock=lambda: 1_700_000_000.0) as c:
            return await c.push(record())

    assert serve([("POST", "/hook", handler)], scenario) == "hook-1"
    assert got[0]["event"] == "problem.upsert" and got[0]["problem"]["problem_id"] == "PRB-abc"


def test_errors_are_typed_and_secrets_stay_out_of_logs(caplog: pytest.LogCaptureFixture) -> None:
    async def fail(request: web.Request) -> web.Response:
        code = 503 if request.method == "POST" else 401
        return web.json_response({"error": "nope"}, status=code, headers={"Retry-After": "7"})

    async def scenario(base: str) -> None:
        client = ServiceNowProblemClient(base, username="bot", password=SECRET)
        try:
            with pytest.raises(ItsmRejected) as rejected:
                await client.push(record())  # GET -> 401
            assert rejected.value.status == 401
            webhook = WebhookProblemClient(base + "/hook", secret=SECRET)
            outbox = ItsmOutbox(webhook, clock=lambda: 0.0)
            outbox.offer(record())
            with caplog.at_level(logging.DEBUG):
                assert await outbox.flush() == 0
            await webhook.close()
            assert len(outbox) == 1 and outbox.retries == 1
            assert outbox.next_due() == pytest.approx(7.0)  # honours Retry-After
        finally:
            await client.close()

    serve([("GET", "/api/now/table/problem", fail), ("POST", "/hook", fail)], scenario)
    assert SECRET not in caplog.text and SECRET not in repr(ServiceNowProblemClient("http://x", token=SECRET))


class FlakyClient:
    name = "flaky"

    def __init__(self, failures: int) -> None:
        self.failures = failures
        self.pushed: list[int] = []

    async def push(self, rec: ProblemRecord) -> str:
        if self.failures:
            self.failures -= 1
            raise ItsmUnavailable("down", retry_after=0.0)
        self.pushed.append(rec.version)
        return "ext"

    async def close(self) -> None:
        pass


def test_outbox_backoff_coalesces_and_is_bounded() -> None:
    now = [0.0]
    client = FlakyClient(failures=2)
    box = ItsmOutbox(client, max_pending=2, base_delay=1.0, clock=lambda: now[0])

    async def scenario() -> None:
        box.offer(record(1))
        assert await box.flush() == 0 and box.next_due() == 1.0
        box.offer(record(3))
        box.offer(record(2))  # older than the pending one: ignored
        now[0] = 1.0
        assert await box.flush() == 0 and box.next_due() == 3.0  # backoff doubles
        now[0] = 3.0
        assert await box.flush() == 1
        assert client.pushed == [3] and len(box) == 0
        for pid in ("a", "b", "c"):  # never blocks: the oldest is dropped when full
            box.offer(msgspec.structs.replace(record(), problem_id=pid))
        assert len(box) == 2 and box.dropped == 1

    asyncio.run(scenario())
