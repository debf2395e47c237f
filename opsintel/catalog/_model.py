"""The catalogue's shape (validated with pydantic) and the resolved, ready-to-use objects."""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass
from datetime import date, time
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, field_validator

from opsintel.catalog._hours import WEEKDAYS, BusinessHours

Criticality = Literal["critical", "high", "medium", "low"]
Weekday = Literal["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
_WORKWEEK: tuple[Weekday, ...] = ("mon", "tue", "wed", "thu", "fri")

#: ticket fields a rule may match on (string fields of :class:`opsintel.events.TicketEvent`)
MATCHABLE_FIELDS = frozenset({
    "source", "service", "ci", "ci_type", "category", "subcategory", "symptom", "priority", "impact",
    "urgency", "assignment_group", "channel", "location", "caller", "closure_code",
})  # fmt: skip

_DURATION = re.compile(r"^\s*(?:(\d+(?:\.\d+)?)\s*d)?\s*(?:(\d+(?:\.\d+)?)\s*h)?\s*(?:(\d+(?:\.\d+)?)\s*m)?\s*$")


def parse_minutes(value: Any) -> float:
    """A duration as minutes: a number (minutes) or text such as ``"30m"``, ``"4h"``, ``"1d 2h"``.

    >>> parse_minutes("1h30m"), parse_minutes("2d"), parse_minutes(45)
    (90.0, 2880.0, 45.0)
    """
    if isinstance(value, bool):
        raise ValueError("a duration, e.g. 30m, 4h or 2d")
    if isinstance(value, int | float):
        minutes = float(value)
    else:
        m = _DURATION.match(str(value))
        if not m or not any(m.groups()):
            raise ValueError(f"{value!r} is not a duration (e.g. 30m, 4h, 2d)")
        d, h, mi = (float(g) if g else 0.0 for g in m.groups())
        minutes = d * 1440 + h * 60 + mi
    if minutes <= 0:
        raise ValueError("a duration must be positive")
    return minutes


Minutes = Annotated[float, BeforeValidator(parse_minutes)]


@functools.lru_cache(maxsize=256)  # a handful of spellings, several look-ups per incident row
def level(value: str) -> int:
    """Leading number of a priority / impact / urgency (``"3 - Moderate"`` -> 3); 0 when unknown.

    >>> level("3 - Moderate"), level("4"), level(""), level("High")
    (3, 4, 0, 0)
    """
    m = re.match(r"\s*(\d+)", value)
    return int(m.group(1)) if m else 0


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class SlaTarget(_Strict):
    """Targets of one priority, as durations on the service's business-hours clock."""

    response: Minutes
    resolution: Minutes


class CalendarSpec(_Strict):
    timezone: str = "UTC"
    days: list[Weekday] = Field(default_factory=lambda: list(_WORKWEEK))
    start: time = time(8)
    end: time = time(18)
    holidays: list[date] = Field(default_factory=list)

    @field_validator("timezone")
    @classmethod
    def _zone(cls, v: str) -> str:
        from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

        try:
            ZoneInfo(v)
        except (ZoneInfoNotFoundError, ValueError) as e:
            raise ValueError(f"unknown time zone {v!r}") from e
        return v

    def build(self) -> BusinessHours:
        if self.end != time(0) and self.end <= self.start:
            raise ValueError(f"end {self.end} must be after start {self.start}")
        return BusinessHours(self.timezone, frozenset(WEEKDAYS.index(d) for d in self.days), self.start,
                             self.end, frozenset(self.holidays))


class ServiceSpec(_Strict):
    id: str = Field(min_length=1, pattern=r"^[A-Za-z0-9_.-]+$")
    name: str = ""
    business_unit: str = Field(min_length=1)
    criticality: Criticality = "medium"
    users: int = Field(ge=0, description="users who cannot work when the service is down")
    business_hours: str = Field("24x7", description="a calendar name, or 24x7")
    cost_per_user_hour: float = Field(0.0, ge=0)
    customer_facing: bool = False
    revenue_per_hour: float = Field(0.0, ge=0)
    sla: dict[int, SlaTarget] = Field(default_factory=dict, description="per priority; falls back to sla_targets")


class RuleSpec(_Strict):
    """Map tickets to a service: every field in ``match`` / ``match_regex`` must hold (AND);
    a list in ``match`` is any of its values (OR). Rules are tried in order; the first wins."""

    service: str
    source: str = ""
    match: dict[str, str | list[str]] = Field(default_factory=dict)
    match_regex: dict[str, str] = Field(default_factory=dict)

    @field_validator("match", "match_regex")
    @classmethod
    def _fields(cls, v: dict[str, Any]) -> dict[str, Any]:
        unknown = sorted(set(v) - MATCHABLE_FIELDS)
        if unknown:
            raise ValueError(f"unknown ticket field(s) {unknown}; use one of {sorted(MATCHABLE_FIELDS)}")
        return v

    @field_validator("match_regex")
    @classmethod
    def _regex(cls, v: dict[str, str]) -> dict[str, str]:
        for name, pattern in v.items():
            try:
                re.compile(pattern)
            except re.error as e:
                raise ValueError(f"{name}: invalid regular expression {pattern!r}: {e}") from e
        return v


class CatalogSpec(_Strict):
    version: Literal[1] = 1
    currency: str = "EUR"
    impact_share: dict[int, float] = Field(
        default_factory=lambda: {1: 1.0, 2: 0.3, 3: 0.1, 4: 0.03, 5: 0.01},
        description="share of a service's users an incident affects, by the ticket's impact level",
    )
    calendars: dict[str, CalendarSpec] = Field(default_factory=dict)
    sla_targets: dict[int, SlaTarget] = Field(default_factory=dict)
    services: list[ServiceSpec] = Field(default_factory=list)
    rules: list[RuleSpec] = Field(default_factory=list)
    default_service: ServiceSpec = ServiceSpec(
        id="unmapped", name="Unmapped (no catalogue rule)", business_unit="Unassigned", users=10,
        business_hours="24x7", cost_per_user_hour=50.0, revenue_per_hour=0.0,
    )

    @field_validator("impact_share")
    @classmethod
    def _shares(cls, v: dict[int, float]) -> dict[int, float]:
        for k, share in v.items():
            if not 0.0 <= share <= 1.0:
                raise ValueError(f"impact_share[{k}] must be within 0..1, got {share}")
        return v


@dataclass(frozen=True)
class Service:
    """A catalogue service, resolved: its calendar object and SLA targets per priority."""

    id: str
    name: str
    business_unit: str
    criticality: str
    users: int
    hours: BusinessHours
    cost_per_user_hour: float
    customer_facing: bool
    revenue_per_hour: float
    sla: dict[int, SlaTarget]


@dataclass(frozen=True)
class Rule:
    index: int
    service: Service
    source: str
    equals: tuple[tuple[str, frozenset[str]], ...]
    regex: tuple[tuple[str, re.Pattern[str]], ...]

    def matches(self, ticket: Any) -> bool:
        if self.source and ticket.source != self.source:
            return False
        return all(getattr(ticket, f) in values for f, values in self.equals) and all(
            p.search(getattr(ticket, f)) for f, p in self.regex
        )


@dataclass(frozen=True)
class Mapping:
    """Where a ticket landed: the service, whether a rule matched, and which one (``""`` = default)."""

    service: Service
    mapped: bool
    rule: str
