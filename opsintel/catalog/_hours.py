"""Business hours: how many minutes of an interval fall inside a service's working time."""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

#: weekday names as the catalogue spells them, Monday first (``datetime.weekday()`` order)
WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")

#: longest interval measured day by day; longer spans are capped (a ticket open for years is a
#: data defect, and the business-hours loop must stay cheap on the worker's hot path)
MAX_SPAN = timedelta(days=3 * 366)

#: days whose working window a calendar keeps (:meth:`BusinessHours._window`)
_MAX_WINDOWS = 4 * 366
#: a day's working window: start and end in the calendar's zone, the same in UTC, its minutes
_Window = tuple[datetime, datetime, datetime, datetime, float]
#: spans whose working minutes a calendar keeps (:meth:`BusinessHours.minutes_between`): at most
#: ~3.5 MB (2 MB of keys and values, measured, plus the datetimes once their incidents are gone)
_MAX_SPANS = 16_384


@dataclass(frozen=True)
class BusinessHours:
    """A working calendar: weekdays, daily window, time zone and holidays.

    ``always=True`` is the 24x7 calendar (every minute counts), the right one for a customer-facing
    service whose customers do not keep office hours.

    Examples
    --------
    >>> office = BusinessHours(timezone="Europe/Amsterdam", days=frozenset(range(5)),
    ...                        start=time(9), end=time(17))
    >>> fri_4pm = datetime(2016, 3, 4, 15, 0, tzinfo=UTC)  # 16:00 in Amsterdam
    >>> office.minutes_between(fri_4pm, fri_4pm + timedelta(days=3))  # 1 h Friday + 7 h Monday
    480.0
    >>> BusinessHours(always=True).minutes_between(fri_4pm, fri_4pm + timedelta(hours=2))
    120.0
    """

    timezone: str = "UTC"
    days: frozenset[int] = frozenset(range(5))
    start: time = time(0)
    end: time = time(0)  #: ``00:00`` as end means midnight (end of the day)
    holidays: frozenset[date] = field(default_factory=frozenset)
    always: bool = False
    #: working windows by day, filled as :meth:`_window` computes them
    _windows: dict[int, _Window | None] = field(
        default_factory=dict, init=False, repr=False, compare=False)
    #: working minutes by span ``(a, b)``, filled as :meth:`minutes_between` computes them
    _spans: dict[tuple[datetime, datetime], float] = field(
        default_factory=dict, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        ZoneInfo(self.timezone)  # raises for an unknown zone
        if not self.always and self.end != time(0) and self.end <= self.start:
            raise ValueError(f"business hours end {self.end} must be after start {self.start}")

    @property
    def minutes_per_week(self) -> float:
        """Working minutes in a week without holidays (for documentation and sanity checks)."""
        if self.always:
            return 7 * 24 * 60.0
        return len(self.days) * self._day_minutes()

    def _day_minutes(self) -> float:
        start = self.start.hour * 60 + self.start.minute
        end = self.end.hour * 60 + self.end.minute or 24 * 60
        return float(end - start)

    def minutes_between(self, a: datetime, b: datetime) -> float:
        """Working minutes in ``[a, b)`` (0 when ``b <= a``); both instants timezone-aware."""
        if b <= a:
            return 0.0
        b = min(b, a + MAX_SPAN)
        if self.always:
            return (b - a).total_seconds() / 60.0
        if a.tzinfo is not UTC or b.tzinfo is not UTC:
            # other zones (never from events, which are UTC): as ever, a difference of two times
            # of one zone is wall-clock time, so the answer may depend on the zone: not kept
            return self._walk(a, b, in_utc=False)
        # kept per calendar: an incident's row asks for the same span up to three times, and its
        # next rows again (opened to first response, the closed open periods); a bounded number of
        # spans, then it starts over
        spans = self._spans
        minutes = spans.get((a, b))
        if minutes is None:
            if len(spans) >= _MAX_SPANS:
                spans.clear()
            minutes = spans[(a, b)] = self._walk(a, b, in_utc=True)
        return minutes

    def _walk(self, a: datetime, b: datetime, *, in_utc: bool) -> float:
        """Working minutes in ``[a, b)``, ``a < b``, adding each day's share in order; the days'
        windows in the calendar's zone, or in UTC for UTC ``a`` and ``b`` (the same instants, and
        comparing two times of one zone skips the ``utcoffset`` calls)."""
        tz = self._zone
        total = 0.0
        for day in range(a.astimezone(tz).toordinal(), b.astimezone(tz).toordinal() + 1):
            window = self._window(day)
            if window is None:
                continue
            w0, w1 = (window[2], window[3]) if in_utc else (window[0], window[1])
            minutes = window[4]
            if a <= w0 and w1 <= b:  # the whole window (every day but the first and the last)
                total += minutes
            else:
                lo, hi = max(a, w0), min(b, w1)
                if hi > lo:
                    total += (hi - lo).total_seconds() / 60.0
        return total

    @functools.cached_property
    def _zone(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)

    def _window(self, day: int) -> _Window | None:
        """The working window of a day (a proleptic ordinal): its start and end in the calendar's
        zone, the same two instants in UTC, and its minutes; ``None`` on a day off.

        Kept per calendar (``minutes_between`` runs several times per incident row, and each call
        walks every day of its span); a few years of days at most, then it starts over.
        """
        windows = self._windows
        if day in windows:
            return windows[day]
        d = date.fromordinal(day)
        window = None
        if d.weekday() in self.days and d not in self.holidays:
            # local wall-clock window -> UTC instants (zoneinfo handles DST shifts)
            tz = self._zone
            w0 = datetime.combine(d, self.start, tz)
            w1 = (datetime.combine(d + timedelta(days=1), time(0), tz) if self.end == time(0)
                  else datetime.combine(d, self.end, tz))
            if w1 > w0:
                window = (w0, w1, w0.astimezone(UTC), w1.astimezone(UTC), (w1 - w0).total_seconds() / 60.0)
        if len(windows) >= _MAX_WINDOWS:
            windows.clear()
        windows[day] = window
        return window


ALWAYS = BusinessHours(always=True)


def utc(dt: datetime) -> datetime:
    """``dt`` as an aware UTC datetime (naive input is taken as UTC)."""
    return dt.replace(tzinfo=UTC) if dt.tzinfo is None else dt.astimezone(UTC)
