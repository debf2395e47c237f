"""The service catalogue: the shipped example, rule mapping, validation errors with file and line,
business hours, and reload without restart."""

from __future__ import annotations

import os
from datetime import UTC, datetime, time, timedelta
from pathlib import Path
from types import SimpleNamespace

import pytest

from opsintel.catalog import BusinessHours, Catalog, CatalogError, CatalogFile
from tests.support import ROOT

EXAMPLE = ROOT / "deploy" / "catalog" / "services.example.yaml"


def ticket(**kw: str) -> SimpleNamespace:
    base = dict(source="servicenow", service="", ci="", ci_type="", category="", subcategory="", symptom="",
                priority="3 - Moderate", impact="2 - Medium", urgency="2 - Medium", assignment_group="",
                channel="Phone", location="", caller="", closure_code="")
    return SimpleNamespace(**{**base, **kw})


def test_the_example_catalogue_loads_and_maps_the_demo_fields() -> None:
    cat = Catalog.load(EXAMPLE)
    assert len(cat.services) >= 5 and len({s.business_unit for s in cat.services.values()}) >= 4
    assert cat.map(ticket(category="Category 53")).service.id == "web-store"
    # rule order: the site rule wins over the category rule
    assert cat.map(ticket(category="Category 24", location="Location 51")).service.id == "field-operations"
    # several fields in one rule must all hold
    assert cat.map(ticket(category="Category 34", assignment_group="Group 70")).service.id == "network-access"
    assert not cat.map(ticket(category="Category 34", assignment_group="Group 1")).mapped
    # source-specific rule on BPI's Service Component WBS
    assert cat.map(ticket(source="bpic2014", service="WBS000073")).service.id == "erp-finance"
    assert not cat.map(ticket(source="servicenow", service="WBS000073")).mapped


def test_unmapped_tickets_fall_back_with_impact_from_the_ticket() -> None:
    cat = Catalog.load(EXAMPLE)
    p1 = cat.map(ticket(category="Category 999", priority="1 - Critical"))
    p4 = cat.map(ticket(category="Category 999", priority="4 - Low"))
    assert (p1.mapped, p1.rule, p1.service.id) == (False, "", "unmapped")
    assert (p1.service.criticality, p4.service.criticality) == ("critical", "low")
    assert cat.impact_share(ticket(impact="1 - High")) > cat.impact_share(ticket(impact="3 - Low"))
    # no impact: urgency, then priority stand in
    assert cat.impact_share(ticket(impact="", urgency="1 - High")) == cat.impact_share(ticket(impact="1 - High"))
    assert cat.sla_target(p1.service, "1 - Critical") is not None


def test_no_catalogue_maps_everything_to_the_default_service() -> None:
    cat = Catalog.from_settings(SimpleNamespace(service_catalog=None))
    assert cat.map(ticket(category="Category 53")).service.id == "unmapped"


@pytest.mark.parametrize(("yaml_text", "line", "words"), [
    ("services:\n  - id: a\n    business_unit: X\n    users: -5\n", 4, "services.0.users"),
    ("services:\n  - {id: a, business_unit: X, users: 1}\nrules:\n  - service: b\n    match: {category: C}\n", 4,
     "unknown service 'b'"),
    ("services:\n  - {id: a, business_unit: X, users: 1}\nrules:\n  - service: a\n    match: {colour: red}\n", 5,
     "unknown ticket field"),
    ("sla_targets:\n  1: {response: soon, resolution: 4h}\n", 2, "not a duration"),
    ("services:\n  - {id: a, business_unit: X, users: 1, business_hours: office}\n", 2, "unknown calendar"),
    ("calendars:\n  office: {timezone: Mars/Olympus}\n", 2, "unknown time zone"),
    ("services:\n  - {id: a, business_unit: X, users: 1}\n  - {id: a, business_unit: Y, users: 2}\n", 3,
     "duplicate service id"),
    ("services: [\n  {id: a\n", 3, "not valid YAML"),
    ("services:\n  - {id: a, business_unit: X, users: 1, colour: red}\n", 2, "colour"),
])  # fmt: skip
def test_invalid_catalogues_name_file_and_line(tmp_path: Path, yaml_text: str, line: int, words: str) -> None:
    path = tmp_path / "services.yaml"
    path.write_text(yaml_text)
    with pytest.raises(CatalogError) as info:
        Catalog.load(path)
    assert info.value.path == str(path)
    assert info.value.line == line, str(info.value)
    assert words in str(info.value)
    assert str(info.value).startswith(f"{path}:{line}: ")


def test_a_missing_file_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(CatalogError, match="cannot read the catalogue"):
        Catalog.load(tmp_path / "nope.yaml")


def test_catalogue_reloads_on_change_and_keeps_the_last_good_one(tmp_path: Path) -> None:
    path = tmp_path / "services.yaml"
    one = "services: [{id: a, business_unit: X, users: 1}]\nrules: [{service: a, match: {category: C1}}]\n"
    path.write_text(one)
    watched = CatalogFile(path, interval=0.0)
    assert watched.current().map(ticket(category="C1")).service.id == "a"
    path.write_text(one.replace("C1", "C2") + "# changed\n")
    os.utime(path, ns=(10**18, 10**18))
    assert watched.current().map(ticket(category="C2")).service.id == "a"
    assert not watched.current().map(ticket(category="C1")).mapped  # no answer of the old catalogue kept
    path.write_text("services: [{id: a}]\n")  # invalid edit
    os.utime(path, ns=(2 * 10**18, 2 * 10**18))
    assert watched.current().map(ticket(category="C2")).service.id == "a"
    assert watched.last_error is not None and watched.last_error.line == 1


def test_business_hours_respect_time_zone_weekends_holidays_and_dst() -> None:
    office = BusinessHours("Europe/Amsterdam", frozenset(range(5)), time(9), time(17),
                           frozenset({datetime(2016, 3, 28).date()}))  # Easter Monday
    fri = datetime(2016, 3, 25, 7, 0, tzinfo=UTC)  # 08:00 CET
    # Friday 9-17 (8 h), weekend and Easter Monday off, Tuesday 9-17 CEST (8 h, DST began on Sunday)
    assert office.minutes_between(fri, fri + timedelta(days=5)) == 16 * 60
    tue = datetime(2016, 3, 29, 7, 0, tzinfo=UTC)  # 09:00 CEST
    assert office.minutes_between(tue, tue + timedelta(hours=1)) == 60
    assert office.minutes_between(tue, tue) == 0
    assert office.minutes_per_week == 40 * 60


def _minutes_between_reference(hours: BusinessHours, a: datetime, b: datetime) -> float:
    """``BusinessHours.minutes_between`` as cf72026 wrote it (before the windows were kept per day)."""
    from zoneinfo import ZoneInfo

    from opsintel.catalog._hours import MAX_SPAN

    if b <= a:
        return 0.0
    b = min(b, a + MAX_SPAN)
    tz = ZoneInfo(hours.timezone)
    total = 0.0
    day = a.astimezone(tz).date()
    last = b.astimezone(tz).date()
    while day <= last:
        if day.weekday() in hours.days and day not in hours.holidays:
            w0 = datetime.combine(day, hours.start, tz)
            w1 = (datetime.combine(day + timedelta(days=1), time(0), tz) if hours.end == time(0)
                  else datetime.combine(day, hours.end, tz))
            lo, hi = max(a, w0), min(b, w1)
            if hi > lo:
                total += (hi - lo).total_seconds() / 60.0
        day += timedelta(days=1)
    return total


def test_business_minutes_are_bit_identical_to_the_day_by_day_reference() -> None:
    """Random spans (microsecond times, up to 40 days, some up to 4 years) in zones with DST at
    midnight, half-hour DST and none, windows ending at midnight: the same float, bit for bit;
    also when asked again (kept), and for times given in the calendar's own zone."""
    import dataclasses
    import random
    from zoneinfo import ZoneInfo

    rng = random.Random(8)
    calendars = [
        BusinessHours("America/Sao_Paulo", frozenset(range(5)), time(8), time(18),
                      frozenset({datetime(2016, 10, 12).date()})),
        BusinessHours("America/Sao_Paulo", frozenset(range(7)), time(0), time(0)),
        BusinessHours("Europe/Amsterdam", frozenset(range(6)), time(7, 30), time(22, 15)),
        BusinessHours("Australia/Lord_Howe", frozenset(range(5)), time(1), time(0)),
        BusinessHours("UTC", frozenset({0, 2, 4}), time(9), time(17)),
    ]
    t0 = datetime(2015, 12, 1, tzinfo=UTC)
    for hours in calendars:
        fresh, local = dataclasses.replace(hours), ZoneInfo(hours.timezone)  # nothing kept yet
        for _ in range(400):
            a = t0 + timedelta(seconds=rng.uniform(0, 500 * 86_400))
            days = rng.choices([1, 40, 4 * 366], weights=[9, 9, 1])[0]  # the last: over MAX_SPAN
            span = rng.uniform(0, days * 86_400)
            b = a + timedelta(seconds=span)
            got, want = hours.minutes_between(a, b), _minutes_between_reference(hours, a, b)
            assert got.hex() == want.hex(), (hours.timezone, a, b, got, want)
            assert hours.minutes_between(a, b).hex() == want.hex()
            a_local, b_local = a.astimezone(local), b.astimezone(local)  # not kept: may differ
            want = _minutes_between_reference(hours, a_local, b_local)
            assert fresh.minutes_between(a_local, b_local).hex() == want.hex()
