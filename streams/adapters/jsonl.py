"""JSON lines of canonical events (the wire format, e.g. a dump of a topic) → events.

Each non-blank line is decoded with :func:`opsintel.events.decode_any`, which validates it fully
(type tag, field types, UTC timestamps). A line that does not decode becomes a :class:`Rejected`
(``bad_json:`` for broken JSON, ``validation:`` for JSON that is not a valid event).
"""

from __future__ import annotations

from pathlib import Path

import msgspec

from opsintel.events import Event, decode_any

from ._base import AdapterOutput, Rejected, open_text


def decode_line(line: bytes | str, *, source: str = "jsonl") -> Event | Rejected:
    """Decode one line into an event, or a :class:`Rejected` saying why it is not one.

    >>> decode_line('{"type": "ticket", "event_id": "x"}').reason
    'validation: Object missing required field `ticket_id`'
    >>> decode_line("{oops").reason
    'bad_json: ...'
    """
    raw = line.encode() if isinstance(line, str) else line
    try:
        return decode_any(raw)
    except msgspec.ValidationError as e:
        return Rejected(source, f"validation: {e}", raw)
    except msgspec.DecodeError as e:
        return Rejected(source, f"bad_json: {e}", raw)


def read_jsonl(path: str | Path, *, tz: str = "UTC") -> AdapterOutput:
    """Read a (plain or gzip) JSON-lines file of canonical events, in file order.

    ``tz`` is accepted for a uniform reader signature and ignored: canonical events are UTC.

    >>> import tempfile
    >>> from datetime import UTC, datetime
    >>> from opsintel.events import ChangeEvent, encode
    >>> ev = ChangeEvent(event_id="c1", source="demo", event_time=datetime(2024, 1, 1, tzinfo=UTC),
    ...                  change_id="CHG1")
    >>> with tempfile.NamedTemporaryFile("wb", suffix=".jsonl", delete=False) as f:
    ...     _ = f.write(encode(ev) + b"\\n\\n" + b"not json\\n")
    >>> [type(x).__name__ for x in read_jsonl(f.name)]
    ['ChangeEvent', 'Rejected']
    >>> Path(f.name).unlink()
    """
    name = Path(path).name
    with open_text(path) as f:
        for n, line in enumerate(f, 1):
            if line.strip():
                yield decode_line(line, source=f"{name}:{n}")
