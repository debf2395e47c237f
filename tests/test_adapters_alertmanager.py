"""Alertmanager webhook adapter on the real payloads in tests/data/alertmanager (Apache-2.0)."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import msgspec
import pytest

from opsintel.events import MonitoringEvent, decode_any, encode
from streams.adapters import Rejected, read_events
from streams.adapters.alertmanager import label_fingerprint, parse_alertmanager_payload, read_alertmanager

DATA = Path(__file__).parent / "data" / "alertmanager"
FILES = {"alerts2.json": 10, "example_with_external_labels.json": 10, "testing_md_alarm.json": 3,
         "testing_md_clear.json": 3}  # fmt: skip


def events(name: str) -> list[MonitoringEvent]:
    out = list(read_alertmanager(DATA / name))
    assert all(isinstance(e, MonitoringEvent) for e in out)
    return out  # type: ignore[return-value]


@pytest.mark.parametrize(("name", "n"), FILES.items())
def test_one_event_per_alert_round_trips(name, n):
    out = events(name)
    assert len(out) == n
    assert all(decode_any(encode(e)) == e for e in out)
    assert len({e.event_id for e in out}) == n


def test_firing_batch_maps_labels_and_annotations():
    payload = json.loads((DATA / "alerts2.json").read_text())
    out = events("alerts2.json")
    for ev, alert in zip(out, payload["alerts"], strict=True):
        assert ev.fingerprint == alert["fingerprint"]
        assert (ev.name, ev.severity, ev.ci) == ("Server Is Not Monitored", "major", alert["labels"]["instance"])
        assert ev.service == ""  # no `service` label: left empty, not guessed from `job`
        assert ev.summary == "Exporter node-exporter is down"  # from annotations
        assert ev.status == "firing" and ev.ends_at is None  # endsAt 0001-01-01 = not ended
        assert ev.event_time == ev.starts_at == datetime(2021, 12, 7, 16, 16, 52, 795000, tzinfo=UTC)
        assert ev.labels == alert["labels"] and ev.generator_url == alert["generatorURL"]
        assert ev.event_id == f"alertmanager:{ev.fingerprint}:firing:2021-12-07T16:16:52.795000+00:00"


def test_nanosecond_timestamps_and_missing_summary():
    ev = events("example_with_external_labels.json")[0]
    assert ev.starts_at == datetime(2021, 12, 7, 14, 26, 49, 66423, tzinfo=UTC)
    assert ev.summary == ""  # this payload has a `title` annotation, not a summary


def test_fingerprint_reconstruction_matches_alertmanager():
    alerts = [a for name in ("alerts2.json", "example_with_external_labels.json")
              for a in json.loads((DATA / name).read_text())["alerts"]]  # fmt: skip
    assert len(alerts) == 20
    assert all(label_fingerprint(a["labels"]) == a["fingerprint"] for a in alerts)


def test_alarm_and_clear_without_fingerprint_pair_up():
    alarm, clear = events("testing_md_alarm.json"), events("testing_md_clear.json")
    assert [e.fingerprint for e in alarm] == [e.fingerprint for e in clear]
    assert all(e.fingerprint == label_fingerprint(e.labels) for e in alarm)
    assert alarm[0].summary == "No physical connection to 172.29.254.30"  # from the labels
    for fired, resolved in zip(alarm, clear, strict=True):
        assert (fired.status, resolved.status) == ("firing", "resolved")
        assert fired.event_id != resolved.event_id
        # the clear payload has no endsAt: the resolution time is unknown, event_time falls back
        assert resolved.ends_at is None and resolved.event_time == resolved.starts_at


def test_one_bad_alert_rejects_only_that_alert():
    payload = json.loads((DATA / "alerts2.json").read_text())
    payload["alerts"][2]["startsAt"] = "yesterday"
    payload["alerts"][5]["endsAt"] = "1900-01-01T00:00:00Z"
    payload["alerts"][7] = "not an alert"
    out = parse_alertmanager_payload(json.dumps(payload).encode(), source="hook")
    rejects = {r.source: r for r in out if isinstance(r, Rejected)}
    assert len(out) == 10 and sorted(rejects) == ["hook:alerts[2]", "hook:alerts[5]", "hook:alerts[7]"]
    assert rejects["hook:alerts[2]"].reason == "bad_timestamp: startsAt: 'yesterday'"
    assert rejects["hook:alerts[5]"].reason.startswith("bad_timestamp: `ends_at` out of range")
    assert rejects["hook:alerts[7]"].reason.startswith("validation:")
    assert msgspec.json.decode(rejects["hook:alerts[2]"].raw) == payload["alerts"][2]


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (b"{not json", "bad_json:"),
        (b'{"status": "firing"}', "validation: not an Alertmanager webhook payload"),
        (b"[1, 2]", "validation: not an Alertmanager webhook payload"),
        (b'{"version": "3", "alerts": []}', "validation: unsupported webhook version '3'"),
    ],
)
def test_bad_payload_is_rejected_whole(body, reason):
    [rejected] = parse_alertmanager_payload(body)
    assert isinstance(rejected, Rejected)
    assert rejected.reason.startswith(reason) and rejected.raw == body and rejected.source == "webhook"


def test_json_lines_of_payloads(tmp_path):
    lines = [json.dumps(json.loads((DATA / name).read_text())) for name in FILES]
    path = tmp_path / "payloads.jsonl"
    path.write_text("\n".join([lines[0], "", lines[1], '{"alerts": [', lines[2], lines[3]]) + "\n")
    out = list(read_events("alertmanager", path))
    rejects = [r for r in out if isinstance(r, Rejected)]
    assert len(out) - len(rejects) == sum(FILES.values())
    assert [(r.source, r.reason.split(":")[0]) for r in rejects] == [("payloads.jsonl:4", "bad_json")]


def test_a_broken_single_payload_is_one_reject(tmp_path):
    path = tmp_path / "broken.json"
    path.write_text((DATA / "alerts2.json").read_text()[:-40])
    [rejected] = read_alertmanager(path)
    assert isinstance(rejected, Rejected) and rejected.reason.startswith("bad_json:")
