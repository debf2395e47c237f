"""What every adapter shares: opening (gzip) files, and the shape of a rejected input record."""

from __future__ import annotations

import csv
import gzip
import io
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, tzinfo
from pathlib import Path
from typing import IO, NamedTuple
from zoneinfo import ZoneInfo

from opsintel.events import MAX_TIME, MIN_TIME, Event


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
    """Open a text file, transparently gunzipping any file that starts with a gzip header."""
    path = Path(path)
    with path.open("rb") as probe:
        magic = probe.read(3)
    # ID1 ID2 and CM = 8 (deflate, the only method RFC 1952 defines): a text file whose first
    # line happens to start with the two magic bytes is still read as text, line by line
    if magic == b"\x1f\x8b\x08":
        return io.TextIOWrapper(gzip.open(path, "rb"), encoding=encoding, errors="replace", newline="")
    return path.open("r", encoding=encoding, errors="replace", newline="")


class CsvRecord(NamedTuple):
    """One CSV record with where it came from (``line`` is the 1-based line it starts on)."""

    line: int
    fields: list[str]
    raw: str  #: the record's text exactly as read (all its physical lines, line endings included)
    error: str = ""  #: set (and ``fields`` empty) when the csv module could not parse the record


def csv_records(lines: Iterable[str], delimiter: str = ",") -> Iterator[CsvRecord]:
    """Parse CSV text record by record, keeping each record's raw text for dead-lettering.

    A line without a quote character is split directly (the same result as the csv module, about
    twice as fast); a quoted record, which may span lines, goes through :mod:`csv`. A malformed
    record comes out with ``error`` set instead of raising, so one bad line never stops an ingest.

    The first record (the header) sets the width. A quoted record that runs over several lines but
    does not parse into exactly that many fields is a stray quote, not a multi-line value: its first
    line comes out as an error and the lines after it are read again, so one bad quote cannot
    swallow the good rows that follow it.

    >>> [tuple(r) for r in csv_records(['a,"b\\n', 'c"\\n', 'd,e\\n'])]
    [(1, ['a', 'b\\nc'], 'a,"b\\nc"\\n', ''), (3, ['d', 'e'], 'd,e\\n', '')]
    >>> [(r.line, r.fields, r.error[:16]) for r in csv_records(['h,i\\n', 'x,"y\\n', 'd,e\\n'])]
    [(1, ['h', 'i'], ''), (2, [], 'unbalanced quote'), (3, ['d', 'e'], '')]
    """
    source = _Pushback(lines)
    width: int | None = None
    line = 0
    for text in source:
        line += 1
        if '"' not in text:
            body = text.rstrip("\r\n")
            fields = body.split(delimiter) if body else []
            width = len(fields) if width is None else width
            yield CsvRecord(line, fields, text)
            continue
        consumed = [text]
        reader = csv.reader(_continued(text, source, consumed), delimiter=delimiter)
        try:
            fields, error = next(reader), ""
        except csv.Error as e:
            fields, error = [], str(e)
        except StopIteration:  # the csv module saw no record at all (e.g. a lone quote at the end)
            fields, error = [], "unexpected end of data"
        if len(consumed) > 1 and width is not None and (error or len(fields) != width
                                                         or not _closed(consumed, delimiter)):
            source.push_back(consumed[1:])
            found = error or (f"{len(fields)} fields, expected {width}" if len(fields) != width
                              else "a quote is never closed")
            yield CsvRecord(line, [], text, f"unbalanced quote: the record ran on past its line ({found})")
            continue
        width = len(fields) if width is None else width
        yield CsvRecord(line, fields, "".join(consumed), error)
        line += len(consumed) - 1


def _closed(consumed: list[str], delimiter: str) -> bool:
    """Whether a multi-line record parses strictly (every quote closed before the end of its text)."""
    try:
        list(csv.reader(consumed, delimiter=delimiter, strict=True))
    except csv.Error:
        return False
    return True


class _Pushback(Iterator[str]):
    """An iterator of lines that takes lines back (to read them again after a stray quote)."""

    def __init__(self, lines: Iterable[str]) -> None:
        self._lines = iter(lines)
        self._back: list[str] = []

    def __next__(self) -> str:
        return self._back.pop() if self._back else next(self._lines)

    def push_back(self, lines: list[str]) -> None:
        self._back.extend(reversed(lines))


def _continued(first: str, rest: Iterator[str], consumed: list[str]) -> Iterator[str]:
    """``first``, then further lines as the csv reader asks for them, noting each one taken."""
    yield first
    for text in rest:
        consumed.append(text)
        yield text


class DayFirstClock:
    """Parse day-first local timestamps into aware UTC datetimes, caching repeated strings.

    Accepts ``d/m/yyyy H:MM``, ``dd/mm/yyyy HH:MM:SS`` and the same with ``-`` between the date
    parts (the ServiceNow and BPI 2014 exports). The text has no zone: it is read as wall-clock
    time in ``tz`` (an IANA name). Raises ``ValueError`` for unparsable text or an instant outside
    1970..2100.

    >>> clock = DayFirstClock("Europe/Amsterdam")
    >>> clock("29/2/2016 01:16").isoformat()
    '2016-02-29T00:16:00+00:00'
    >>> clock("9-9-2011 9:23:05").isoformat()
    '2011-09-09T07:23:05+00:00'
    """

    _MAX_CACHE = 500_000

    def __init__(self, tz: str = "UTC") -> None:
        self.zone: tzinfo = UTC if tz.upper() == "UTC" else ZoneInfo(tz)
        self._cache: dict[str, datetime] = {}

    def __call__(self, text: str) -> datetime:
        try:
            return self._cache[text]
        except KeyError:
            pass
        value = self._parse(text)
        if len(self._cache) >= self._MAX_CACHE:
            self._cache.clear()
        self._cache[text] = value
        return value

    def _parse(self, text: str) -> datetime:
        day_part, _, clock_part = text.strip().partition(" ")
        try:
            day, month, year = day_part.split("/" if "/" in day_part else "-")
            hms = [int(x) for x in clock_part.split(":")] if clock_part else [0, 0]
            if not 2 <= len(hms) <= 3:
                raise ValueError
            hour, minute, second = (*hms, 0)[:3]
            value = datetime(int(year), int(month), int(day), hour, minute, second, tzinfo=self.zone)
        except ValueError:
            raise ValueError(f"not a day-first timestamp: {text!r}") from None
        if self.zone is not UTC:
            value = value.astimezone(UTC)
        if not MIN_TIME <= value < MAX_TIME:
            raise ValueError(f"timestamp out of range 1970..2100: {text!r}")
        return value
