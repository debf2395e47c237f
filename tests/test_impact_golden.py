"""The impact rows of the whole ServiceNow log are bit-identical to those of the code before the
impact stage was made faster (issue 8).

``tests/golden/impact_rows.msgpack.gz`` was written by commit cf72026 (the code before the change)
with ``UPDATE_GOLDEN=1 pytest tests/test_impact_golden.py``. It holds, per case, an 8-byte BLAKE2b
digest of every row's msgpack encoding (so floats must match to the bit, ``-0.0`` included) in the
order ``rows_for`` returned them, plus every 1,000th row in full (to show a difference by field).
If a change is *meant* to change the numbers, regenerate it with the new code and say so.

Cases: the log sorted by event time in 2,000-event batches (what the worker's flush sees) with no
catalogue and with ``deploy/catalog/services.example.yaml`` (one model across all batches, default
cap: evictions included); and its first 30,000 events shuffled with 5% repeated, to cover
out-of-order and duplicate events on real data.
"""

from __future__ import annotations

import gzip
import hashlib
import os
import random
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import msgspec
import pytest

from opsintel.catalog import Catalog
from opsintel.events import TicketEvent
from opsintel.impact import ImpactModel, ImpactRow
from tests.support import ROOT, SHARED_DATA

LOG = SHARED_DATA / "servicenow" / "incident_event_log.csv.gz"
GOLDEN = Path(__file__).resolve().parent / "golden" / "impact_rows.msgpack.gz"
BATCH = 2_000
SAMPLE_EVERY = 1_000

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not LOG.exists(), reason=f"needs the full ServiceNow log at {LOG}"),
]


@pytest.fixture(scope="module")
def events() -> list[TicketEvent]:
    from streams.adapters import read_events

    evs = [e for e in read_events("servicenow-csv", LOG) if isinstance(e, TicketEvent)]
    evs.sort(key=lambda e: e.event_time)  # stable: ties keep the file order
    return evs


def _shuffled(events: list[TicketEvent]) -> list[TicketEvent]:
    rng = random.Random(8)
    head = events[:30_000]
    out = head + rng.sample(head, len(head) // 20)
    rng.shuffle(out)
    return out


def _cases(events: list[TicketEvent]) -> Iterator[tuple[str, Catalog, list[TicketEvent]]]:
    example = Catalog.load(ROOT / "deploy" / "catalog" / "services.example.yaml")
    yield "sorted-no-catalogue", Catalog.empty(), events
    yield "sorted-example-catalogue", example, events
    yield "shuffled-example-catalogue", example, _shuffled(events)


def _rows(catalog: Catalog, events: list[TicketEvent]) -> Iterator[tuple[int, ImpactRow]]:
    model = ImpactModel(catalog)
    for i in range(0, len(events), BATCH):
        for row in model.rows_for(events[i:i + BATCH]):
            yield i // BATCH, row


def _record(catalog: Catalog, events: list[TicketEvent]) -> dict[str, Any]:
    enc = msgspec.msgpack.Encoder()
    digests, samples, batches = bytearray(), [], []
    for n, (batch, row) in enumerate(_rows(catalog, events)):
        data = enc.encode(row)
        digests += hashlib.blake2b(data, digest_size=8).digest()
        batches.append(batch)
        if n % SAMPLE_EVERY == 0:
            samples.append(data)
    return {"rows": len(batches), "digests": bytes(digests), "samples": samples}


def test_impact_rows_are_identical_to_the_golden_rows(events: list[TicketEvent]) -> None:
    if os.environ.get("UPDATE_GOLDEN"):
        golden = {name: _record(cat, evs) for name, cat, evs in _cases(events)}
        GOLDEN.write_bytes(gzip.compress(msgspec.msgpack.encode(golden), mtime=0))
    golden = msgspec.msgpack.decode(gzip.decompress(GOLDEN.read_bytes()))
    enc = msgspec.msgpack.Encoder()
    for name, catalog, evs in _cases(events):
        want = golden[name]
        n = -1
        for n, (batch, row) in enumerate(_rows(catalog, evs)):
            data = enc.encode(row)
            if n % SAMPLE_EVERY == 0:
                old = msgspec.msgpack.decode(want["samples"][n // SAMPLE_EVERY], type=ImpactRow)
                diff = {f: (getattr(old, f), getattr(row, f)) for f in ImpactRow.__struct_fields__
                        if enc.encode(getattr(old, f)) != enc.encode(getattr(row, f))}
                assert not diff, f"{name}: row {n} (batch {batch}, {row.ticket_id}) differs: {diff}"
            digest = hashlib.blake2b(data, digest_size=8).digest()
            assert digest == want["digests"][8 * n:8 * n + 8], \
                f"{name}: row {n} (batch {batch}, {row.ticket_id} v{row.version}) differs from the golden row"
        assert n + 1 == want["rows"], f"{name}: {n + 1} rows, the golden has {want['rows']}"
