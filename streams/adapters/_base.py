"""What every adapter shares: opening (gzip) files, and the shape of a rejected input record."""

from __future__ import annotations

import gzip
import io
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from opsintel.events import Event


@dataclass(frozen=True, slots=True)
class Rejected:
    """An input record an adapter could not turn into a canonical event.

    It is not dropped: ingest sends it to the dead-letter topic with ``reason`` and the original
    bytes, so nothing is lost and the operator can see why.
    """

    source: str  #: the input, e.g. ``"incident_event_log.csv.gz:1234"`` (file and 1-based line)
    reason: str  #: machine-readable reason code followed by a human message, e.g. ``"bad_timestamp: …"``
    raw: bytes  #: the original record as read


AdapterOutput = Iterator[Event | Rejected]


def open_text(path: str | Path, encoding: str = "utf-8") -> IO[str]:
    """Open a text file, transparently gunzipping ``*.gz`` (or any file starting with the gzip magic)."""
    path = Path(path)
    with path.open("rb") as probe:
        magic = probe.read(2)
    if magic == b"\x1f\x8b":
        return io.TextIOWrapper(gzip.open(path, "rb"), encoding=encoding, errors="replace", newline="")
    return path.open("r", encoding=encoding, errors="replace", newline="")
