"""What every adapter promises, checked over every format on the real slices in tests/data."""

from __future__ import annotations

import gzip
from pathlib import Path

import pytest

from opsintel.events import ChangeEvent, MonitoringEvent, TicketEvent, decode_any, encode
from streams.adapters import FORMATS, Rejected, read_events

DATA = Path(__file__).parent / "data"
SAMPLES = {
    "servicenow-csv": DATA / "servicenow_incident_event_log.csv.gz",
    "bpic2014-incident": DATA / "bpic2014_Detail_Incident.csv.gz",
    "bpic2014-interaction": DATA / "bpic2014_Detail_Interaction.csv.gz",
    "bpic2014-change": DATA / "bpic2014_Detail_Change.csv.gz",
    "alertmanager": DATA / "alertmanager" / "alerts2.json",
}
EVENT_TYPES = (TicketEvent, MonitoringEvent, ChangeEvent)


def test_registry_names():
    assert set(FORMATS) == {*SAMPLES, "jsonl"}
    with pytest.raises(ValueError, match="unknown format 'servicenow'"):
        read_events("servicenow", SAMPLES["servicenow-csv"])


@pytest.mark.parametrize("fmt", SAMPLES)
def test_events_round_trip_and_replay_identically(fmt):
    first = list(read_events(fmt, SAMPLES[fmt]))
    assert first and all(isinstance(e, EVENT_TYPES) for e in first)  # the real slices have no bad rows
    for ev in first:
        assert not isinstance(ev, Rejected)
        assert decode_any(encode(ev)) == ev
        assert ev.event_time.tzinfo is not None
    again = list(read_events(fmt, SAMPLES[fmt]))
    assert [encode(e) for e in again] == [encode(e) for e in first]  # type: ignore[arg-type]


@pytest.mark.parametrize("fmt", SAMPLES)
def test_plain_and_gzip_files_read_the_same(fmt, tmp_path):
    source = SAMPLES[fmt]
    data = source.read_bytes()
    plain, packed = tmp_path / "plain.txt", tmp_path / "packed.txt"  # no .gz suffix: sniffed by magic
    plain.write_bytes(gzip.decompress(data) if data[:2] == b"\x1f\x8b" else data)
    packed.write_bytes(gzip.compress(plain.read_bytes()))
    assert list(read_events(fmt, plain)) == list(read_events(fmt, packed))


def test_jsonl_reads_back_what_every_adapter_wrote(tmp_path):
    written = [e for fmt, path in SAMPLES.items() for e in read_events(fmt, path)]
    path = tmp_path / "events.jsonl.gz"
    body = b"\n".join(encode(e) for e in written)  # type: ignore[arg-type]
    bad_json, bad_event = b'{"type": "ticket", ', b'{"type": "ticket", "event_id": "x", "source": "s"}'
    path.write_bytes(gzip.compress(body + b"\n\n" + bad_json + b"\n" + bad_event + b"\n"))
    out = list(read_events("jsonl", path))
    assert out[: len(written)] == written
    rejects = out[len(written) :]
    assert all(isinstance(r, Rejected) for r in rejects)
    n = len(written)
    assert [(r.source, r.reason.split(":")[0]) for r in rejects] == [  # type: ignore[union-attr]
        (f"events.jsonl.gz:{n + 2}", "bad_json"),
        (f"events.jsonl.gz:{n + 3}", "validation"),
    ]
    assert rejects[0].raw == bad_json + b"\n"  # type: ignore[union-attr]


def test_jsonl_rejects_naive_and_out_of_range_times(tmp_path):
    ok = b'{"type":"change","event_id":"c","source":"s","event_time":"2024-01-01T00:00:00Z","change_id":"C1"}'
    naive = ok.replace(b"00:00:00Z", b"00:00:00")
    old = ok.replace(b"2024-01-01", b"0001-01-01")
    path = tmp_path / "e.jsonl"
    path.write_bytes(b"\n".join([ok, naive, old]))
    kinds = [type(x).__name__ for x in read_events("jsonl", path)]
    assert kinds == ["ChangeEvent", "Rejected", "Rejected"]
