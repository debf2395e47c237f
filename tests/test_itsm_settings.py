"""ITSM push configuration: settings (env, ``_FILE`` secrets, validation, redaction), the builder
of the configured clients, and delivery of a batch to every target (retry until each has it)."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any, cast

import msgspec
import pytest
from aiohttp import web
from pydantic import ValidationError

from opsintel.problems import ProblemRecord, ProblemStatus, encode_problem
from opsintel.settings import Settings
from sinks.itsm import (
    ExternalIdStore,
    ItsmDelivery,
    ItsmOutbox,
    ServiceDeskPlusProblemClient,
    ServiceNowProblemClient,
    WebhookProblemClient,
    clients_from_settings,
    external_id_path,
    verify,
)
from streams.handlers import StreamHandlers
from streams.metrics import WorkerMetrics
from streams.pipeline import BatchWriter, RawMessage
from tests.test_itsm_sinks import record, serve

SN_PASSWORD = "sn-pass-Qw3"
SN_TOKEN = "sn-bearer-Er4"
SDP_TOKEN = "sdp-key-Ty5"
HOOK_SECRET = "hook-hmac-Ui6"


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    import os

    for var in [v for v in os.environ if v.startswith("OPSINTEL_")]:
        monkeypatch.delenv(var)
    return monkeypatch


def test_nothing_configured_nothing_pushed(clean_env: pytest.MonkeyPatch) -> None:
    s = Settings()
    assert s.itsm_targets == [] and clients_from_settings(s) == []
    assert ItsmDelivery.from_settings(s) is None


def test_settings_from_env_and_secret_files(clean_env: pytest.MonkeyPatch, tmp_path: Path) -> None:
    (tmp_path / "sn").write_text(SN_PASSWORD + "\n")
    (tmp_path / "hook").write_text(HOOK_SECRET)
    clean_env.setenv("OPSINTEL_DATA_DIR", str(tmp_path / "var"))
    clean_env.setenv("OPSINTEL_ITSM_SERVICENOW_URL", "https://acme.service-now.com/")
    clean_env.setenv("OPSINTEL_ITSM_SERVICENOW_USERNAME", "opsintel-bot")
    clean_env.setenv("OPSINTEL_ITSM_SERVICENOW_PASSWORD_FILE", str(tmp_path / "sn"))
    clean_env.setenv("OPSINTEL_ITSM_SERVICENOW_TABLE", "u_problem")
    clean_env.setenv("OPSINTEL_ITSM_SERVICEDESK_PLUS_URL", "https://sdp.example:8080")
    clean_env.setenv("OPSINTEL_ITSM_SERVICEDESK_PLUS_AUTHTOKEN", SDP_TOKEN)
    clean_env.setenv("OPSINTEL_ITSM_WEBHOOK_URL", "https://hooks.example/opsintel")
    clean_env.setenv("OPSINTEL_ITSM_WEBHOOK_SECRET_FILE", str(tmp_path / "hook"))
    s = Settings()
    assert s.itsm_targets == ["servicenow", "servicedesk_plus", "webhook"]
    assert s.itsm_servicenow_password.get_secret_value() == SN_PASSWORD  # stripped of the newline
    assert s.itsm_webhook_secret.get_secret_value() == HOOK_SECRET

    shown = json.dumps(s.redacted()) + repr(s) + str(s)
    for secret in (SN_PASSWORD, SDP_TOKEN, HOOK_SECRET):
        assert secret not in shown
        assert secret in s.secret_values()  # so the log filter masks them
    assert s.redacted()["itsm_servicenow_password"] == "********"
    assert s.redacted()["itsm_servicenow_token"] == ""

    clients = clients_from_settings(s)
    assert [type(c) for c in clients] == [ServiceNowProblemClient, ServiceDeskPlusProblemClient, WebhookProblemClient]
    assert all(secret not in repr(clients) for secret in (SN_PASSWORD, SDP_TOKEN, HOOK_SECRET))
    sn = clients[0]
    assert isinstance(sn, ServiceNowProblemClient) and sn.table == "u_problem"
    stores = {id(cast(Any, c).store) for c in clients}
    assert len(stores) == 1
    sn.store.set("servicenow", "PRB-1", "sys-1")
    assert external_id_path(s) == tmp_path / "var" / "itsm" / "external-ids.json"
    assert ExternalIdStore(external_id_path(s)).get("servicenow", "PRB-1") == "sys-1"  # survives a restart


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"itsm_servicenow_url": "https://sn.example"}, "OPSINTEL_ITSM_SERVICENOW_URL is set but its credentials"),
        ({"itsm_servicenow_url": "https://sn.example", "itsm_servicenow_username": "bot"}, "credentials are not"),
        ({"itsm_servicenow_url": "https://sn.example", "itsm_servicenow_username": "bot",
          "itsm_servicenow_password": SN_PASSWORD, "itsm_servicenow_token": SN_TOKEN}, "not both"),
        ({"itsm_servicenow_url": "https://sn.example", "itsm_servicenow_token": SN_TOKEN,
          "itsm_servicenow_table": " "}, "TABLE must not be empty"),
        ({"itsm_servicedesk_plus_url": "https://sdp.example"}, "exactly one of"),
        ({"itsm_servicedesk_plus_url": "https://sdp.example", "itsm_servicedesk_plus_authtoken": SDP_TOKEN,
          "itsm_servicedesk_plus_oauth_token": SDP_TOKEN}, "exactly one of"),
        ({"itsm_webhook_url": "https://hooks.example"}, "OPSINTEL_ITSM_WEBHOOK_SECRET"),
        ({"itsm_webhook_url": "hooks.example/x", "itsm_webhook_secret": HOOK_SECRET}, "http(s)://"),
        ({"itsm_webhook_url": f"https://u:{HOOK_SECRET}@hooks.example", "itsm_webhook_secret": "x"}, "not in the URL"),
    ],
)
def test_bad_combinations_fail_clearly(clean_env: pytest.MonkeyPatch, settings: dict[str, str], message: str) -> None:
    with pytest.raises(ValidationError) as err:
        Settings(**settings)
    assert message in str(err.value)
    for secret in (SN_PASSWORD, SN_TOKEN, SDP_TOKEN, HOOK_SECRET):
        assert secret not in str(err.value)


def test_credentials_without_url_leave_the_target_off(clean_env: pytest.MonkeyPatch) -> None:
    s = Settings(itsm_servicenow_token=SN_TOKEN, itsm_webhook_secret=HOOK_SECRET)
    assert s.itsm_targets == [] and ItsmDelivery.from_settings(s) is None


def test_delivery_retries_until_every_target_has_the_newest_version() -> None:
    """One target fails twice with 503 (Retry-After 5), the other works: ``deliver`` returns only
    once both have the newest version of each problem; the backoff is honoured, not spun."""
    hook_bodies: list[dict[str, Any]] = []
    sn_calls: list[tuple[str, str, dict[str, Any]]] = []
    failures = [2]

    async def hook(request: web.Request) -> web.Response:
        body = await request.read()
        assert verify(HOOK_SECRET.encode(), request.headers["X-Opsintel-Timestamp"], body,
                      request.headers["X-Opsintel-Signature"])  # fmt: skip
        if failures[0]:
            failures[0] -= 1
            return web.json_response({}, status=503, headers={"Retry-After": "5"})
        hook_bodies.append(json.loads(body))
        return web.json_response({})

    async def servicenow(request: web.Request) -> web.Response:
        body = await request.json() if request.method != "GET" else {}
        sn_calls.append((request.method, request.path, body))
        if request.method == "GET":
            return web.json_response({"result": []})
        return web.json_response({"result": {"sys_id": "sys-" + body["correlation_id"]}})

    now = [0.0]
    slept: list[float] = []

    async def sleep(seconds: float) -> None:
        slept.append(seconds)
        now[0] += seconds
        await asyncio.sleep(0)

    metrics = WorkerMetrics()

    async def scenario(base: str) -> None:
        store = ExternalIdStore()
        clients = [ServiceNowProblemClient(base, token=SN_TOKEN, store=store),
                   WebhookProblemClient(base + "/hook", secret=HOOK_SECRET, store=store)]  # fmt: skip
        delivery = ItsmDelivery([ItsmOutbox(c, clock=lambda: now[0]) for c in clients], sleep=sleep,
                                clock=lambda: now[0], on_progress=metrics.observe_itsm)  # fmt: skip
        other = msgspec.structs.replace(record(1), problem_id="PRB-other")
        await delivery.deliver([record(1), record(3, ProblemStatus.CONFIRMED), record(2), other])
        assert all(len(box) == 0 for box in delivery.outboxes)
        await delivery.deliver([record(4, ProblemStatus.RESOLVED)])
        await delivery.close()

    serve([("GET", "/api/now/table/problem", servicenow), ("POST", "/api/now/table/problem", servicenow),
           ("PATCH", "/api/now/table/problem/{sys_id}", servicenow), ("POST", "/hook", hook)], scenario)  # fmt: skip
    # only the newest version of each problem in a batch is pushed: create once, then update
    assert [(m, p) for m, p, _ in sn_calls if m != "GET"] == [
        ("POST", "/api/now/table/problem"), ("POST", "/api/now/table/problem"),
        ("PATCH", "/api/now/table/problem/sys-PRB-abc")]  # fmt: skip
    assert sn_calls[1][2]["state"] == "103" and sn_calls[-1][2]["state"] == "106"
    assert sorted((b["problem"]["problem_id"], b["problem"]["version"]) for b in hook_bodies) == [
        ("PRB-abc", 3), ("PRB-abc", 4), ("PRB-other", 1)]  # fmt: skip
    assert slept and min(slept) >= 0 and sum(slept) >= 5.0  # waited for Retry-After, did not spin
    sample = metrics.registry.get_sample_value
    assert sample("opsintel_itsm_pushes_total", {"target": "webhook", "outcome": "retried"}) == 2
    assert sample("opsintel_itsm_pushes_total", {"target": "webhook", "outcome": "sent"}) == 3
    assert sample("opsintel_itsm_pushes_total", {"target": "servicenow", "outcome": "sent"}) == 3
    assert sample("opsintel_itsm_pending_records", {"target": "webhook"}) == 0


def test_rejected_records_are_dropped_not_retried_forever() -> None:
    async def refuse(request: web.Request) -> web.Response:
        return web.json_response({"error": "bad field"}, status=400)

    async def scenario(base: str) -> int:
        box = ItsmOutbox(WebhookProblemClient(base + "/hook", secret=HOOK_SECRET))
        delivery = ItsmDelivery([box])
        await asyncio.wait_for(delivery.deliver([record(1)]), timeout=10)
        await delivery.close()
        return box.rejected

    assert serve([("POST", "/hook", refuse)], scenario) == 1


def test_undecodable_problem_records_are_dead_lettered(chdb_store: Any) -> None:
    """The ITSM agent's handler: bad records go to the dead-letter topic with a reason, good ones
    are pushed, tombstones are skipped."""
    sent: list[tuple[str, bytes, bytes]] = []
    pushed: list[ProblemRecord] = []

    async def send(topic: str, key: bytes, value: bytes, headers: Any) -> Any:
        sent.append((topic, key, value))
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        fut.set_result(None)
        return fut

    class Recorder:
        name = "recorder"

        async def push(self, rec: ProblemRecord) -> str:
            pushed.append(rec)
            return rec.problem_id

        async def close(self) -> None:
            pass

    settings = Settings(topic_prefix="t.")
    metrics = WorkerMetrics()
    handlers = StreamHandlers(settings, BatchWriter(chdb_store, metrics), [], send,
                              itsm=ItsmDelivery([ItsmOutbox(Recorder())]))  # fmt: skip
    messages = [RawMessage("t.problems", 0, 0, encode_problem(record(1)), {}, b"PRB-abc"),
                RawMessage("t.problems", 0, 1, b"{not json", {}, b"x"),
                RawMessage("t.problems", 0, 2, b'{"problem_id": 1}', {}, b"y"),
                RawMessage("t.problems", 0, 3, None, {}, b"gone"),
                RawMessage("t.problems", 0, 4, encode_problem(record(2)), {}, b"PRB-abc")]  # fmt: skip
    asyncio.run(handlers.push_problems(messages))
    assert [r.version for r in pushed] == [2]
    assert [(t, v) for t, _, v in sent] == [("t.deadletter", b"{not json"), ("t.deadletter", b'{"problem_id": 1}')]
    sample = metrics.registry.get_sample_value
    assert sample("opsintel_events_dead_lettered_total", {"topic": "t.problems", "reason": "bad_json"}) == 1
    assert sample("opsintel_events_dead_lettered_total", {"topic": "t.problems", "reason": "validation"}) == 1


@pytest.mark.parametrize("configured", [False, True])
def test_the_itsm_agent_exists_only_when_a_target_is_configured(
    clean_env: pytest.MonkeyPatch, tmp_path: Path, configured: bool
) -> None:
    from streams.app import create_app

    itsm = {"itsm_webhook_url": "https://hooks.example/x", "itsm_webhook_secret": HOOK_SECRET} if configured else {}
    app = create_app(Settings(data_dir=tmp_path / "var", topic_prefix="t.", **itsm))
    try:
        assert ("opsintel.itsm" in app.agents) is configured
        assert {"opsintel.tickets", "opsintel.feedback", "opsintel.deadletter"} <= set(app.agents)
        if configured:
            agent = app.agents["opsintel.itsm"]
            assert list(cast(Any, agent.channel).topics) == ["t.problems"]
    finally:
        cast(Any, app).opsintel.writer.close()
