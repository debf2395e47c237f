"""Source adapters: pure readers from real ITSM / monitoring formats to the canonical events.

Contract every reader keeps:

* it yields :class:`~opsintel.events.TicketEvent`, :class:`~opsintel.events.MonitoringEvent`,
  :class:`~opsintel.events.ChangeEvent` or :class:`Rejected`, in file order, lazily;
* a record it cannot map becomes a ``Rejected`` with a reason code (``bad_timestamp:``,
  ``missing_field:``, ``bad_number:``, ``bad_bool:``, ``bad_json:``, ``bad_csv:``, ``bad_row:``,
  ``validation:``) and the record's original text; bad data never raises out of the iterator
  (a file that cannot be opened, or is not the format at all, does raise);
* plain and gzip files are both accepted; a value the source lacks stays empty;
* the same input always gives the same ``event_id`` s, so a replay is idempotent.

========================  =================================================================
format                    reader
========================  =================================================================
``servicenow-csv``        :func:`~streams.adapters.servicenow.read_servicenow`
``bpic2014-incident``     :func:`~streams.adapters.bpic2014.read_bpic2014_incidents`
``bpic2014-interaction``  :func:`~streams.adapters.bpic2014.read_bpic2014_interactions`
``bpic2014-change``       :func:`~streams.adapters.bpic2014.read_bpic2014_changes`
``alertmanager``          :func:`~streams.adapters.alertmanager.read_alertmanager`
``jsonl``                 :func:`~streams.adapters.jsonl.read_jsonl`
========================  =================================================================

Every reader takes ``tz`` (the IANA zone of zone-less source timestamps, default ``"UTC"``);
``servicenow-csv`` also takes ``service_field``.

>>> from pathlib import Path
>>> sample = Path(__file__).parents[2] / "tests" / "data" / "bpic2014_Detail_Change.csv.gz"
>>> first = next(read_events("bpic2014-change", sample))
>>> first.change_id, first.ci, first.emergency
('C00000003', 'HMD000002', False)
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from ._base import AdapterOutput, Rejected
from .alertmanager import parse_alertmanager_payload, read_alertmanager
from .bpic2014 import read_bpic2014_changes, read_bpic2014_incidents, read_bpic2014_interactions
from .jsonl import read_jsonl
from .servicenow import read_servicenow

__all__ = [
    "FORMATS",
    "AdapterOutput",
    "Rejected",
    "parse_alertmanager_payload",
    "read_alertmanager",
    "read_bpic2014_changes",
    "read_bpic2014_incidents",
    "read_bpic2014_interactions",
    "read_events",
    "read_jsonl",
    "read_servicenow",
]

FORMATS: dict[str, Callable[..., AdapterOutput]] = {
    "servicenow-csv": read_servicenow,
    "bpic2014-incident": read_bpic2014_incidents,
    "bpic2014-interaction": read_bpic2014_interactions,
    "bpic2014-change": read_bpic2014_changes,
    "alertmanager": read_alertmanager,
    "jsonl": read_jsonl,
}


def read_events(fmt: str, path: str | Path, **options: Any) -> AdapterOutput:
    """Read ``path`` in format ``fmt`` (a key of :data:`FORMATS`); options go to the reader.

    Raises ``ValueError`` for an unknown format (before touching the file).

    >>> read_events("csv", "x.csv")
    Traceback (most recent call last):
    ...
    ValueError: unknown format 'csv'; known: servicenow-csv, bpic2014-incident, ...
    """
    try:
        reader = FORMATS[fmt]
    except KeyError:
        raise ValueError(f"unknown format {fmt!r}; known: {', '.join(FORMATS)}") from None
    return reader(path, **options)
