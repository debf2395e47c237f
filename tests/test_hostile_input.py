"""Bad input is contained: property-based tests over every adapter and the canonical decoders.

No Kafka here (unit tier). What a user may rely on, and what these tests check:

* reading a file never raises for bad *records*: every record becomes an event or a
  :class:`~streams.adapters.Rejected` with a machine-readable reason code and its original bytes;
  only a file that is not the format at all (no header / not JSON) or is a corrupt gzip stream
  raises, before or instead of producing records (:data:`FILE_LEVEL_ERRORS`);
* the records around a rejected one are read normally (an unmutated row still gives its event);
* the worker's decoder (:func:`streams.pipeline.decode_batch`) never raises; every rejected message
  is a dead letter with a known reason code and its original bytes; an event it accepts can be
  stored (its values fit the ClickHouse columns), so no valid-looking record blocks a partition.

Hostile values: arbitrary bytes, truncated records, wrong types, strings of 1 MB and more, control
characters and unusual unicode (RTL override, U+2028, lone surrogates as invalid UTF-8), NaN and
infinities, timestamps in the far past / future and in odd formats, duplicates, out-of-order rows
and missing keys.
"""

from __future__ import annotations

import asyncio
import contextlib
import gzip
import io
import json
import math
import random
import zlib
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import msgspec
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from opsintel.events import (
    MAX_TIME,
    MIN_TIME,
    ChangeEvent,
    MonitoringEvent,
    TicketEvent,
    decode_any,
    decode_change,
    decode_monitoring,
    decode_ticket,
    encode,
)
from sinks.clickhouse import ClickHouseStore
from sinks.deadletter import MAX_PAYLOAD, reason_code
from streams.adapters import FORMATS, Rejected, parse_alertmanager_payload, read_events
from streams.metrics import WorkerMetrics
from streams.pipeline import CHANGES, MONITORING, TICKETS, BatchWriter, RawMessage, decode_batch

DATA = Path(__file__).parent / "data"
CSV_SAMPLES = {
    "servicenow-csv": (DATA / "servicenow_incident_event_log.csv.gz", ","),
    "bpic2014-incident": (DATA / "bpic2014_Detail_Incident.csv.gz", ";"),
    "bpic2014-interaction": (DATA / "bpic2014_Detail_Interaction.csv.gz", ";"),
    "bpic2014-change": (DATA / "bpic2014_Detail_Change.csv.gz", ";"),
}
ALERTS = DATA / "alertmanager" / "alerts2.json"

#: reason codes an adapter may give (streams/adapters/__init__.py) and the worker's decoder adds
ADAPTER_REASONS = {"bad_timestamp", "missing_field", "bad_number", "bad_bool", "bad_json", "bad_csv", "bad_row",
                   "validation"}
DECODER_REASONS = {"bad_json", "validation", "empty", "invalid"}
#: what a reader may raise for a file that is not its format at all, or is a corrupt gzip stream
FILE_LEVEL_ERRORS = (ValueError, EOFError, gzip.BadGzipFile, zlib.error)

ROWS = 12  # data rows of each sample used per example: enough for neighbours, small enough to be quick
HYPOTHESIS = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                                 HealthCheck.too_slow])

# --- hostile values ---------------------------------------------------------------------------------------
ODD_TIMES = [
    "31/12/9999 23:59", "1/1/1969 23:59", "1/1/0001 00:00", "0/0/0 0:00", "29/2/2015 10:00", "1/1/2016 25:61",
    "2016-01-01T00:00:00Z", "1/1/2016", "1/1/2016 1:2:3:4", "١/١/٢٠١٦ ٠:٠٠", "31/12/2099 23:59", "1/1/2100 00:00",
    "-1/-1/-1 -1:-1", "1e3/1/2016 0:00", "NaN", "inf", "", "?", "29/2/2016 01:16 PM", "29/2/2016\t01:16",
    "0001-01-01T00:00:00Z", "9999-12-31T23:59:59.999999999+14:00", "2016-02-30T00:00:00Z", "1970-01-01T00:00:00-00:01",
    "2100-01-01T00:00:00Z", "1969-12-31T23:59:59.999Z", "2016-01-01T00:00:00", "2016-01-01 00:00:00+00:00",
    "1451606400", "2016-W01-1", "  2016-01-01T00:00:00Z  ",
]
ODD_NUMBERS = ["NaN", "nan", "inf", "-inf", "Infinity", "1e400", "-1", "-0", "99999999999999999999999", "0x10",
               "1_000", " 7 ", "3,5", "3.5", "١٢", "1e3", "4294967296", "18446744073709551616"]
ODD_TEXT = [
    "'; DROP TABLE incidents; --", "Robert'); DROP TABLE `ticket_events`;--", "{db}", "{closed:Array(String)}",
    "\x00", "\x1b[31mred\x1b[0m", "\u202eevil", "\u2028", "\u2029", "\x85", "\ufeff", "𝔘𝔫𝔦𝔠𝔬𝔡𝔢", "🔥" * 10, "\\",
    "\\x00", "a\tb", "#N/B", "#MULTIVALUE", "?", "true", "Y", "N", "\"", "\"\"", "a\"b", "\"unclosed", "x\ny", "x\r",
]
HUGE = "x" * (1024 * 1024 + 7)  # ≥ 1 MB

cell_values = st.one_of(
    st.sampled_from(ODD_TIMES + ODD_NUMBERS + ODD_TEXT),
    st.text(max_size=40),  # any unicode, control characters included
    st.just(HUGE),
)


def surrogate_bytes(text: str) -> bytes:
    """UTF-8 bytes, lone surrogates written as the invalid bytes a broken exporter would write."""
    return text.encode("utf-8", "surrogatepass")


# --- helpers ------------------------------------------------------------------------------------------------
EVENT_TYPES = (TicketEvent, MonitoringEvent, ChangeEvent)


def identity(ev: Any) -> str:
    if isinstance(ev, TicketEvent):
        return ev.ticket_id
    if isinstance(ev, ChangeEvent):
        return ev.change_id
    return str(ev.fingerprint)


def read_all(fmt: str, path: Path) -> list[Any] | None:
    """Every item the reader yields, or ``None`` when it refused the whole file at the start."""
    items: list[Any] = []
    try:
        for item in read_events(fmt, path):
            items.append(item)
    except FILE_LEVEL_ERRORS as e:
        # a file-level refusal, never a record-level one: records already read were all fine
        assert not isinstance(e, ValueError) or not items, f"{fmt} raised after {len(items)} records: {e!r}"
        return None
    for item in items:
        check_item(item)
    return items


def check_item(item: Any) -> None:
    if isinstance(item, Rejected):
        assert reason_code(item.reason) in ADAPTER_REASONS, item.reason
        assert isinstance(item.raw, bytes) and item.source
        return
    assert isinstance(item, EVENT_TYPES), type(item)
    check_storable(item)
    assert decode_any(encode(item)) == item  # what an adapter yields survives the wire


def check_storable(ev: Any) -> None:
    """An accepted event's values fit the ClickHouse columns (else it would poison a batch)."""
    for name in ev.__struct_fields__:
        value = getattr(ev, name)
        if isinstance(value, datetime):
            assert value.tzinfo is not None and value.utcoffset().total_seconds() == 0
            assert MIN_TIME <= value < MAX_TIME
        elif isinstance(value, str):
            value.encode("utf-8")  # no lone surrogates
        elif isinstance(value, bool) or value is None:
            pass
        elif isinstance(value, int):
            limit = 2**64 if name == "version" else 2**32
            assert 0 <= value < limit, (name, value)
        elif isinstance(value, float):
            assert math.isfinite(value), (name, value)


def physical_lines(data: bytes) -> int:
    """How many lines the readers see in ``data`` (text mode, newline="": \\n, \\r and \\r\\n end a line)."""
    return len(list(io.StringIO(data.decode("utf-8", "replace"), newline="")))


def sample_rows(fmt: str) -> tuple[bytes, list[bytes]]:
    path, _ = CSV_SAMPLES[fmt]
    lines = gzip.decompress(path.read_bytes()).splitlines(keepends=True)
    return lines[0], lines[1 : ROWS + 1]


def ids_of_row(fmt: str, header: bytes, row: bytes, tmp: Path) -> Counter[str]:
    tmp.write_bytes(header + row)
    items = read_all(fmt, tmp)
    assert items is not None
    return Counter(identity(i) for i in items if not isinstance(i, Rejected))


# --- adapters: arbitrary bytes --------------------------------------------------------------------------------
@pytest.mark.parametrize("fmt", sorted(FORMATS))
@HYPOTHESIS
@given(data=st.one_of(st.binary(max_size=2000), st.binary(max_size=400).map(gzip.compress),
                      st.binary(min_size=1, max_size=400).map(lambda b: gzip.compress(b)[: max(1, len(b) // 2)])))
def test_every_adapter_survives_arbitrary_bytes(fmt: str, data: bytes, tmp_path: Path) -> None:
    path = tmp_path / "input"
    path.write_bytes(data)
    read_all(fmt, path)


@pytest.mark.parametrize("fmt", sorted(CSV_SAMPLES))
@HYPOTHESIS
@given(data=st.binary(max_size=600), cut=st.integers(min_value=0, max_value=5000))
def test_csv_adapters_survive_garbage_after_a_real_header(fmt: str, data: bytes, cut: int, tmp_path: Path) -> None:
    header, rows = sample_rows(fmt)
    body = b"".join(rows)
    path = tmp_path / "input.csv"
    path.write_bytes(header + body[:cut] + data)  # a truncated file, then garbage
    assert read_all(fmt, path) is not None


# --- adapters: real rows with hostile cells, around untouched rows ---------------------------------------------
mutation = st.one_of(
    st.tuples(st.just("cell"), st.integers(0, 80), cell_values),
    # a stray quote must not swallow the rows after it
    st.tuples(st.just("cell"), st.integers(0, 80), st.sampled_from(['"unclosed', '"', 'a"b', '"x\ny', '""', 'x"'])),
    st.tuples(st.just("truncate"), st.integers(0, 400), st.just("")),
    st.tuples(st.just("garbage"), st.just(0), st.binary(max_size=120).map(lambda b: b.decode("latin-1"))),
    st.tuples(st.just("drop_cells"), st.integers(1, 10), st.just("")),
    st.tuples(st.just("extra_cells"), st.integers(1, 5), st.text(max_size=5)),
)


def mutate_row(row: bytes, delimiter: str, how: tuple[str, int, str]) -> bytes:
    kind, n, value = how
    text = row.decode("utf-8").rstrip("\r\n")
    cells = text.split(delimiter)
    if kind == "cell":
        cells[n % len(cells)] = value
        text = delimiter.join(cells)
    elif kind == "truncate":
        text = text[: n % max(len(text), 1)]
    elif kind == "garbage":
        text = value
    elif kind == "drop_cells":
        text = delimiter.join(cells[:-n])
    else:
        text = delimiter.join(cells + [value] * n)
    return surrogate_bytes(text) + b"\n"


@pytest.mark.parametrize("fmt", sorted(CSV_SAMPLES))
@HYPOTHESIS
@given(
    mutations=st.dictionaries(st.integers(0, ROWS - 1), mutation, max_size=4),
    order=st.sampled_from(["file", "reversed", "shuffled"]),
    duplicates=st.lists(st.integers(0, ROWS - 1), max_size=3),
    seed=st.integers(0, 2**16),
)
def test_csv_adapters_reject_only_the_bad_rows(fmt: str, mutations: dict[int, tuple[str, int, str]], order: str,
                                               duplicates: list[int], seed: int, tmp_path: Path) -> None:
    header, rows = sample_rows(fmt)
    _, delimiter = CSV_SAMPLES[fmt]
    indices = list(range(len(rows))) + duplicates  # duplicate rows: a replayed export
    if order == "reversed":
        indices.reverse()
    elif order == "shuffled":
        random.Random(seed).shuffle(indices)
    body: list[tuple[bytes, bool]] = []
    for position, i in enumerate(indices):
        if position in mutations:
            body.append((mutate_row(rows[i], delimiter, mutations[position]), True))
        else:
            body.append((rows[i], False))
    # Two stray quotes on different rows can pair up into a well-formed multi-line CSV value of the
    # right width; no CSV reader can tell that from a real one (docs/guarantees.md, known limits).
    assume(sum(b'"' in data for data, bad in body if bad) <= 1)
    path = tmp_path / "input.csv"
    path.write_bytes(header + b"".join(b for b, _ in body))
    items = read_all(fmt, path)
    assert items is not None

    # which physical lines hold a mutated row
    mutated_lines: set[int] = set()
    line = 2
    for data, bad in body:
        n = physical_lines(data)
        if bad:
            mutated_lines.update(range(line, line + n))
        line += n
    rejected_lines = {int(r.source.rsplit(":", 1)[1]) for r in items if isinstance(r, Rejected)}
    assert rejected_lines <= mutated_lines, f"good rows rejected: {sorted(rejected_lines - mutated_lines)}"

    # every untouched row still gives its events, whatever happened to its neighbours
    want: Counter[str] = Counter()
    for data, bad in body:
        if not bad:
            want += ids_of_row(fmt, header, data, tmp_path / "one.csv")
    got = Counter(identity(i) for i in items if not isinstance(i, Rejected))
    assert not (want - got), f"events missing for untouched rows: {want - got}"


# --- Alertmanager payloads ---------------------------------------------------------------------------------
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20)
    | st.sampled_from(ODD_TIMES + ODD_TEXT),
    lambda children: st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=8), children, max_size=3),
    max_leaves=8,
)
alert_mutation = st.one_of(
    st.tuples(st.just("set"), st.sampled_from(["status", "labels", "annotations", "startsAt", "endsAt",
                                               "generatorURL", "fingerprint"]), json_values),
    st.tuples(st.just("delete"), st.sampled_from(["status", "labels", "startsAt", "endsAt", "fingerprint"]),
              st.none()),
    st.tuples(st.just("label"), st.sampled_from(["alertname", "instance", "service", "severity"]),
              cell_values),
    st.tuples(st.just("replace"), st.just(""), json_values),
)


def mutate_alert(alert: dict[str, Any], how: tuple[str, str, Any]) -> Any:
    kind, key, value = how
    alert = json.loads(json.dumps(alert))
    if kind == "set":
        alert[key] = value
    elif kind == "delete":
        alert.pop(key, None)
    elif kind == "label":
        alert["labels"][key] = value
        alert.pop("fingerprint", None)  # so the label set decides the identity
    else:
        return value
    return alert


@HYPOTHESIS
@given(mutations=st.dictionaries(st.integers(0, 9), alert_mutation, max_size=4), lines=st.booleans(),
       garbage=st.binary(max_size=80))
def test_alertmanager_rejects_only_the_bad_alerts(mutations: dict[int, tuple[str, str, Any]], lines: bool,
                                                  garbage: bytes, tmp_path: Path) -> None:
    payload = json.loads(ALERTS.read_bytes())
    alerts = payload["alerts"]
    assert len(alerts) == 10
    good = Counter()
    out_alerts = []
    for i, alert in enumerate(alerts):
        if i in mutations:
            out_alerts.append(mutate_alert(alert, mutations[i]))
        else:
            out_alerts.append(alert)
            good[alert["fingerprint"]] += 1
    body = msgspec.json.encode(dict(payload, alerts=out_alerts), enc_hook=str)
    path = tmp_path / "alerts.json"
    if lines:  # JSON lines of payloads, with a garbage line between two good payloads
        path.write_bytes(body + b"\n" + garbage.replace(b"\n", b" ") + b"\n" + body + b"\n")
        good = good + good
    else:
        path.write_bytes(body)
    items = read_all("alertmanager", path)
    assert items is not None
    got = Counter(identity(i) for i in items if not isinstance(i, Rejected))
    assert not (good - got), f"untouched alerts lost: {good - got}"
    rejected = [r for r in items if isinstance(r, Rejected)]
    # only mutated alerts, or the garbage line (2) between the two payloads, are rejected
    assert all("alerts[" in r.source or r.source == "alerts.json:2" for r in rejected), [r.source for r in rejected]


@HYPOTHESIS
@given(body=st.one_of(st.binary(max_size=500), json_values.map(lambda v: msgspec.json.encode(v, enc_hook=str)),
                      st.builds(lambda a: msgspec.json.encode({"version": "4", "alerts": a}, enc_hook=str),
                                st.lists(json_values, max_size=4))))
def test_webhook_payload_parser_never_raises(body: bytes) -> None:
    for item in parse_alertmanager_payload(body):
        check_item(item)


# --- JSON lines and the worker's decoders -------------------------------------------------------------------
def sample_events() -> list[Any]:
    events: list[Any] = []
    for fmt, (path, _) in CSV_SAMPLES.items():
        events.extend(e for e in list(read_events(fmt, path))[:4])
    events.extend(list(read_events("alertmanager", ALERTS))[:4])
    return events


SAMPLE_EVENTS = sample_events()
TIME_FIELDS = ("event_time", "opened_at", "resolved_at", "closed_at", "starts_at", "ends_at", "planned_start")
field_mutation = st.one_of(
    st.tuples(st.just("set"), st.sampled_from(["event_id", "source", "type", "version", "kind", "ticket_id",
                                               "change_id", "fingerprint", "status", "service", "description",
                                               "reassignment_count", "reopen_count", "handle_time_hours",
                                               "labels", "active", "schema_version", "emergency"]),
              st.one_of(json_values, st.integers(min_value=-(2**70), max_value=2**70),
                        st.sampled_from([math.nan, math.inf, -math.inf, 1e308, -0.0, 2**32, 2**64, -1]),
                        cell_values)),
    st.tuples(st.just("time"), st.sampled_from(TIME_FIELDS), st.sampled_from(ODD_TIMES)),
    st.tuples(st.just("delete"), st.sampled_from(["event_id", "type", "event_time", "ticket_id", "kind", "version",
                                                  "source", "status", "fingerprint", "starts_at", "change_id"]),
              st.none()),
)


def mutate_event(event: Any, how: tuple[str, str, Any]) -> bytes:
    kind, key, value = how
    doc = json.loads(encode(event))
    if kind == "delete":
        doc.pop(key, None)
    else:
        doc[key] = value
    # NaN / Infinity are not JSON; write them the way a sloppy producer (Python's json) does
    return surrogate_bytes(json.dumps(doc, allow_nan=True, default=str, ensure_ascii=False))


@HYPOTHESIS
@given(mutations=st.dictionaries(st.integers(0, len(SAMPLE_EVENTS) - 1), st.one_of(
    field_mutation.map(lambda m: ("field", m)),
    st.integers(0, 300).map(lambda n: ("truncate", n)),
    st.binary(max_size=200).map(lambda b: ("bytes", b)),
), max_size=6))
def test_jsonl_rejects_only_the_bad_lines(mutations: dict[int, Any], tmp_path: Path) -> None:
    lines: list[tuple[bytes, bool]] = []
    for i, ev in enumerate(SAMPLE_EVENTS):
        if i not in mutations:
            lines.append((encode(ev), False))
            continue
        kind, arg = mutations[i]
        raw = mutate_event(ev, arg) if kind == "field" else encode(ev)[:arg] if kind == "truncate" else arg
        lines.append((raw.replace(b"\n", b" ").replace(b"\r", b" "), True))
    path = tmp_path / "events.jsonl"
    path.write_bytes(b"\n".join(raw for raw, _ in lines) + b"\n")
    items = read_all("jsonl", path)
    assert items is not None
    bad_lines = {n for n, (_, bad) in enumerate(lines, 1) if bad}
    assert {int(r.source.rsplit(":", 1)[1]) for r in items if isinstance(r, Rejected)} <= bad_lines
    want = Counter(identity(ev) for i, ev in enumerate(SAMPLE_EVENTS) if i not in mutations)
    got = Counter(identity(i) for i in items if not isinstance(i, Rejected))
    assert not (want - got)


hostile_message = st.one_of(
    st.none(),
    st.binary(max_size=300),
    st.tuples(st.sampled_from(SAMPLE_EVENTS), field_mutation).map(lambda t: mutate_event(*t)),
    st.tuples(st.sampled_from(SAMPLE_EVENTS), st.integers(0, 300)).map(lambda t: encode(t[0])[: t[1]]),
    st.sampled_from(SAMPLE_EVENTS).map(lambda e: encode(e).replace(b'"source":"', b'"source":"' + HUGE.encode(), 1)),
    st.sampled_from(SAMPLE_EVENTS).map(encode),  # valid ones mixed in, duplicates included
)


@HYPOTHESIS
@given(values=st.lists(hostile_message, max_size=25))
def test_decode_batch_never_raises_and_dead_letters_every_reject(values: list[bytes | None]) -> None:
    for kind in (TICKETS, MONITORING, CHANGES):
        messages = [RawMessage("t", 0, i, v, {}) for i, v in enumerate(values)]
        events, kept, dead = decode_batch(kind, messages)
        assert len(events) == len(kept) and len(events) + len(dead) == len(messages)
        assert sorted([m.offset for m in kept] + [int(d.origin.rsplit("/", 1)[1]) for d in dead]) == list(
            range(len(values)))
        for ev in events:
            check_storable(ev)
        for dl in dead:
            assert dl.reason_code in DECODER_REASONS, dl.reason
            original = values[int(dl.origin.rsplit("/", 1)[1])] or b""
            assert dl.payload == original[:MAX_PAYLOAD] and dl.payload_bytes == len(original)
    for decode in (decode_ticket, decode_monitoring, decode_change, decode_any):
        for v in values:
            with contextlib.suppress(msgspec.ValidationError, msgspec.DecodeError):
                check_storable(decode(v or b""))


# --- what the decoder accepts, the store takes --------------------------------------------------------------
@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(values=st.lists(hostile_message, min_size=1, max_size=12))
def test_accepted_events_never_block_the_store(values: list[bytes | None], chdb_store: ClickHouseStore) -> None:
    """Every message is written or dead-lettered; none makes the store look *unavailable* (which would
    be retried forever and stall the partition)."""
    writer = BatchWriter(chdb_store, WorkerMetrics())
    writer.stopping = True  # an unavailable-store error now raises instead of being retried
    try:
        for kind in (TICKETS, MONITORING, CHANGES):
            messages = [RawMessage("t", 0, i, v, {}) for i, v in enumerate(values)]
            done = asyncio.run(writer.process(kind, messages))
            events, _, _ = decode_batch(kind, messages)
            assert len(done.dead_letters) == len(messages) - len(events)  # nothing the decoder took was refused
    finally:
        writer.executor.shutdown(wait=True)


def test_duplicate_and_out_of_order_events_fold(chdb_store: ClickHouseStore) -> None:
    """Re-delivered and reordered lifecycle events give the same rows as the clean stream."""
    path, _ = CSV_SAMPLES["servicenow-csv"]
    events = [e for e in read_events("servicenow-csv", path)][:120]
    clean = sorted(chdb_store.query("SELECT event_id, version FROM {db}.ticket_events FINAL"))
    assert clean == []
    noisy = list(reversed(events)) + events[::3] + events[::-7]
    writer = BatchWriter(chdb_store, WorkerMetrics())
    messages = [RawMessage("t", 0, i, encode(e), {}) for i, e in enumerate(noisy)]
    try:
        assert asyncio.run(writer.process(TICKETS, messages)).dead_letters == []
    finally:
        writer.executor.shutdown(wait=True)
    latest: dict[str, TicketEvent] = {}
    for ev in events:
        if ev.ticket_id not in latest or ev.version >= latest[ev.ticket_id].version:
            latest[ev.ticket_id] = ev
    assert chdb_store.table_counts(["ticket_events", "incidents"]) == {"ticket_events": len(events),
                                                                       "incidents": len(latest)}
    got = dict(chdb_store.query("SELECT ticket_id, last_event_id FROM {db}.incidents FINAL"))
    assert got == {t: ev.event_id for t, ev in latest.items()}


def test_far_times_are_rejected_not_stored() -> None:
    base = TicketEvent(event_id="e", source="s", ticket_id="t", kind="created", version=0,
                       event_time=datetime(2016, 1, 1, tzinfo=UTC))
    for text in ("0001-01-01T00:00:00+01:00", "9999-12-31T23:59:59-01:00", "1969-12-31T23:59:59Z",
                 "2100-01-01T00:00:00Z", "2016-01-01T00:00:00"):
        raw = encode(base).replace(b"2016-01-01T00:00:00Z", text.encode())
        _, _, dead = decode_batch(TICKETS, [RawMessage("t", 0, 0, raw, {})])
        assert [d.reason_code for d in dead] == ["validation"], text


def test_integers_outside_the_column_ranges_are_rejected_by_the_decoder() -> None:
    """A count or version ClickHouse cannot hold is a validation error, not a failed insert."""
    base = encode(TicketEvent(event_id="e", source="s", ticket_id="t", kind="created", version=0,
                              event_time=datetime(2016, 1, 1, tzinfo=UTC)))
    for field, value in (("version", 2**64), ("version", -1), ("reassignment_count", 2**32),
                         ("reopen_count", -1), ("handle_time_hours", 1e308)):
        raw = base[:-1] + f',"{field}":{value}}}'.encode()
        _, _, dead = decode_batch(TICKETS, [RawMessage("t", 0, 0, raw, {})])
        assert [d.reason_code for d in dead] == ["validation"], (field, value)
    ok = base[:-1] + b',"version":18446744073709551615,"reassignment_count":4294967295}'
    assert decode_ticket(ok).version == 2**64 - 1
