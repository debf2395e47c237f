"""End to end through the real broker: ingest → Kafka → worker → ClickHouse, read back exactly."""

from __future__ import annotations

import json
import shutil
import subprocess
import urllib.error
import urllib.request
from collections import Counter
from pathlib import Path

import pytest

from opsintel.events import TicketEvent
from streams.adapters import read_events
from streams.ingest import Ingestor, ensure_topics
from tests.support import ROOT, WorkerProcess, drain, get_json, settings_of, wait_until

pytestmark = pytest.mark.integration

SLICE = ROOT / "deploy" / "demo-data" / "servicenow_slice.csv.gz"








def expected_incidents(path: Path) -> tuple[int, Counter[str], Counter[str]]:
    """Events, incidents per state and per priority, computed from the adapter output alone."""
    latest: dict[str, TicketEvent] = {}
    n = 0
    for ev in read_events("servicenow-csv", path):
        assert isinstance(ev, TicketEvent)
        n += 1
        if ev.ticket_id not in latest or ev.version >= latest[ev.ticket_id].version:
            latest[ev.ticket_id] = ev
    return n, Counter(e.state for e in latest.values()), Counter(e.priority for e in latest.values())


def test_servicenow_slice_lands_exactly(worker: WorkerProcess) -> None:
    settings = settings_of(worker.env)
    ingestor = Ingestor(settings)
    try:
        report = ingestor.ingest("servicenow-csv", [SLICE])
    finally:
        ingestor.close()
    events, by_state, by_priority = expected_incidents(SLICE)
    assert report.sent[settings.topic("tickets")] == events
    drain(settings)
    summary = get_json(f"{worker.url}/api/summary")
    assert summary["rows"]["ticket_events"] == events
    assert summary["rows"]["incidents"] == sum(by_state.values())
    assert {r["state"]: r["incidents"] for r in summary["incidents_by_state"]} == dict(by_state)
    assert {r["priority"]: r["incidents"] for r in summary["incidents_by_priority"]} == dict(by_priority)
    assert summary["rows"]["dead_letters"] == 0

    # the same file again (a re-run, or a producer retry): totals do not move
    ingestor = Ingestor(settings)
    try:
        ingestor.ingest("servicenow-csv", [SLICE])
    finally:
        ingestor.close()
    drain(settings)
    again = get_json(f"{worker.url}/api/summary")
    assert again["rows"] == summary["rows"]


def test_malformed_messages_go_to_the_dead_letter_topic(worker: WorkerProcess) -> None:
    from kafka import KafkaConsumer, KafkaProducer

    settings = settings_of(worker.env)
    ensure_topics(settings)
    valid = [ev for ev in read_events("servicenow-csv", SLICE)][:200]
    bad = [b"{", b"not json at all", b'{"type":"ticket"}', b"\xff\xfe\x00", b'{"type":"ticket","event_id":"x",'
           b'"source":"s","ticket_id":"t","kind":"created","version":1,"event_time":"2999-01-01T00:00:00Z"}']
    producer = KafkaProducer(**settings.kafka_client_options())
    ingestor = Ingestor(settings)
    for i, ev in enumerate(valid):
        assert isinstance(ev, TicketEvent)
        ingestor.send_event(ev)
        if i % 40 == 0:
            producer.send(settings.topic("tickets"), key=b"bad", value=bad[i // 40])
    ingestor.flush()
    producer.flush()
    producer.close()
    ingestor.close()
    drain(settings)

    summary = get_json(f"{worker.url}/api/summary")
    assert summary["rows"]["ticket_events"] == len(valid)
    assert sum(r["count"] for r in summary["dead_letters"]) == len(bad)
    reasons = {r["reason"]: r["count"] for r in summary["dead_letters"]}
    assert reasons == {"bad_json": 3, "validation": 2}

    consumer = KafkaConsumer(settings.topic("deadletter"), **settings.kafka_client_options(),
                             auto_offset_reset="earliest", consumer_timeout_ms=5000)
    letters = [(m.value, dict(m.headers)) for m in consumer]
    consumer.close()
    assert sorted(v for v, _ in letters) == sorted(bad)
    assert all(h["opsintel.reason"] and h["opsintel.origin"].startswith(settings.topic("tickets").encode())
               for _, h in letters)


def test_alertmanager_webhook_and_metrics(worker: WorkerProcess, worker_env: dict[str, str]) -> None:
    settings = settings_of(worker.env)
    body = (ROOT / "deploy" / "demo-data" / "alertmanager" / "alerts2.json").read_bytes()
    n_alerts = len(json.loads(body)["alerts"])
    auth = {"Authorization": f"Bearer {worker.env['OPSINTEL_WEBHOOK_TOKEN']}"}
    req = urllib.request.Request(f"{worker.url}/alertmanager", data=body, method="POST",
                                 headers={"Content-Type": "application/json", **auth})
    with urllib.request.urlopen(req, timeout=30) as r:
        assert json.load(r) == {"accepted": n_alerts, "rejected": 0}
    bad = urllib.request.Request(f"{worker.url}/alertmanager", data=b"x", method="POST",
                                 headers={"Content-Type": "text/plain", **auth})
    with pytest.raises(urllib.error.HTTPError) as err:
        urllib.request.urlopen(bad, timeout=30)
    assert err.value.code == 415
    drain(settings)
    summary = get_json(f"{worker.url}/api/summary")
    assert summary["rows"]["monitoring_events"] == n_alerts

    with urllib.request.urlopen(f"{worker.url}/metrics", timeout=10) as r:
        scrape = r.read()
    text = scrape.decode()
    assert f'opsintel_events_consumed_total{{topic="{settings.topic("monitoring")}"}} {float(n_alerts)}' in text
    assert 'opsintel_webhook_requests_total{code="415"} 1.0' in text
    promtool = shutil.which("promtool")
    assert promtool, "promtool missing: deploy/setup.sh installs Debian's prometheus package"
    check = subprocess.run([promtool, "check", "metrics"], input=scrape, capture_output=True)
    assert check.returncode == 0, check.stdout + check.stderr

    # the worker's memory, and the embedded engine's share of it (read every 5 s)
    def gauge(name: str) -> float:
        with urllib.request.urlopen(f"{worker.url}/metrics", timeout=10) as r:
            lines = r.read().decode().splitlines()
        return next((float(line.split()[1]) for line in lines if line.startswith(name + " ")), 0.0)

    wait_until(lambda: gauge("opsintel_clickhouse_embedded_memory_bytes") > 0, timeout=30,
               message="the embedded engine's memory gauge")
    assert 0 < gauge("opsintel_clickhouse_embedded_memory_bytes") < gauge("process_resident_memory_bytes")


def test_webhook_requires_the_token(worker_env: dict[str, str], tmp_path: Path) -> None:
    env = dict(worker_env, OPSINTEL_WEBHOOK_TOKEN="tok-123")
    w = WorkerProcess(env, tmp_path / "w.log").start()
    try:
        body = b'{"version":"4","status":"firing","alerts":[]}'
        for headers, code in (({}, 401), ({"Authorization": "Bearer nope"}, 401)):
            req = urllib.request.Request(f"{w.url}/alertmanager", data=body, method="POST",
                                         headers={"Content-Type": "application/json", **headers})
            with pytest.raises(urllib.error.HTTPError) as err:
                urllib.request.urlopen(req, timeout=10)
            assert err.value.code == code
        ok = urllib.request.Request(f"{w.url}/alertmanager", data=body, method="POST",
                                    headers={"Content-Type": "application/json",
                                             "Authorization": "Bearer tok-123"})
        with urllib.request.urlopen(ok, timeout=10) as r:
            assert r.status == 200
        assert "tok-123" not in (tmp_path / "w.log").read_text()
    finally:
        w.stop()
    # without a token configured the receiver is off, not open
    off = WorkerProcess(dict(worker_env, OPSINTEL_WEBHOOK_TOKEN=""), tmp_path / "off.log").start()
    try:
        req = urllib.request.Request(f"{off.url}/alertmanager", data=body, method="POST",
                                     headers={"Content-Type": "application/json"})
        with pytest.raises(urllib.error.HTTPError) as err:
            urllib.request.urlopen(req, timeout=10)
        assert err.value.code == 503
    finally:
        off.stop()
