"""TrendMonitor: event-time buckets, spikes / drops / bypass rows, trend problems, snapshots."""

from __future__ import annotations

import math
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import msgspec
import numpy as np
import pytest

from detectors import (
    SPARSE_COUNTS,
    AnomalyRow,
    AnomalyVerdict,
    RecordBreakDetector,
    SeasonalAnomalyDetector,
    TrendMonitor,
)
from opsintel.events import AlertStatus, Event, MonitoringEvent, TicketEvent, TicketEventKind
from opsintel.problems import Feedback, FeedbackAction, ProblemRecord
from sinks.clickhouse.analytics_schema import ANOMALY_COLUMNS

T0 = datetime(2016, 3, 7, tzinfo=UTC)  # a Monday
DAYS = 21
DEMO = Path(__file__).resolve().parents[1] / "deploy" / "demo-data" / "servicenow_slice.csv.gz"


def _tickets_per_hour(hour: int, rng: np.random.Generator) -> int:
    daily = 12 + 9 * math.sin(2 * math.pi * ((hour % 24) - 6) / 24)
    return max(0, round(daily + rng.normal(0, 1.5)))


def synthetic(*, drops: tuple[tuple[int, int], ...] = (), spikes: tuple[int, ...] = (), alerts_drop: bool = False,
              days: int = DAYS + 3, service: str = "payroll") -> list[list[Event]]:
    """Per ticket (and per alert), its events: a daily ticket pattern and steady alerts.

    ``drops``: (first hour, hours) with no tickets; ``spikes``: hours with 60 tickets more;
    ``alerts_drop``: alerts stop during the drops too. Returned as groups: one ticket's lifecycle
    (created, reassigned, resolved) or one alert; flatten in group order for the ticket-grouped
    log, or sort by time for a time-ordered stream.
    """
    rng = np.random.default_rng(7)
    groups: list[list[Event]] = []
    dropped = {h for first, n in drops for h in range(first, first + n)}
    n = 0
    for hour in range(days * 24):
        start = T0 + timedelta(hours=hour)
        count = 0 if hour in dropped else _tickets_per_hour(hour, rng) + (60 if hour in spikes else 0)
        for i in range(count):
            n += 1
            opened = start + timedelta(minutes=(i * 53) % 60)
            tid = f"INC{n}"

            def ticket(kind: TicketEventKind, at: datetime, version: int, sla: bool | None = None,
                       tid: str = tid, opened: datetime = opened) -> TicketEvent:
                return TicketEvent(event_id=f"{tid}:{version}", source="synthetic", ticket_id=tid, kind=kind,
                                   event_time=at, version=version, opened_at=opened, service=service,
                                   sla_made=sla)

            resolved = opened + timedelta(hours=2 + (n % 5))
            groups.append([ticket(TicketEventKind.CREATED, opened, 0),
                           ticket(TicketEventKind.REASSIGNED, opened + timedelta(minutes=20), 1),
                           ticket(TicketEventKind.RESOLVED, resolved, 2, sla=n % 7 != 0)])
        if not (alerts_drop and hour in dropped):
            for a in range(3):
                groups.append([MonitoringEvent(event_id=f"al{hour}:{a}", source="alertmanager",
                                               status=AlertStatus.FIRING,
                                               fingerprint=f"fp{a}", name="HighLatency",
                                               starts_at=start + timedelta(minutes=10 + 15 * a),
                                               event_time=start + timedelta(minutes=10 + 15 * a), service=service)])
    return groups


def grouped(groups: list[list[Event]]) -> list[Event]:
    """The ServiceNow shape: all events of one ticket, then the next ticket (alerts in time order)."""
    return [e for g in groups for e in g]


def time_sorted(groups: list[list[Event]]) -> list[Event]:
    return sorted(grouped(groups), key=_event_time)


def _event_time(e: Event) -> datetime:
    if isinstance(e, MonitoringEvent):
        return e.starts_at
    assert isinstance(e, TicketEvent)
    return (e.opened_at or e.event_time) if e.kind == "created" else e.event_time


def run(events: list[Event], **params: object) -> tuple[TrendMonitor, list[AnomalyRow], dict[str, ProblemRecord]]:
    mon = TrendMonitor(**params)  # type: ignore[arg-type]
    mon.learn_many(events)
    return mon, mon.pop_anomalies(), latest(mon.pop_updates())


def latest(records: list[ProblemRecord]) -> dict[str, ProblemRecord]:
    out: dict[str, ProblemRecord] = {}
    for r in records:
        if r.problem_id not in out or r.version > out[r.problem_id].version:
            out[r.problem_id] = r
    return out


DROP_HOUR = DAYS * 24 + 11  # a weekday late morning, after three weeks of history
SPIKE_HOUR = DAYS * 24 + 15


@pytest.fixture(scope="module")
def drop_groups() -> list[list[Event]]:
    return synthetic(drops=((DROP_HOUR, 6),))


def test_row_fields_are_the_anomalies_table_columns() -> None:
    assert AnomalyRow.__struct_fields__ == tuple(name for name, _ in ANOMALY_COLUMNS)


def test_ticket_drop_with_steady_alerts_is_a_drop_and_a_bypass(drop_groups: list[list[Event]]) -> None:
    _, rows, _ = run(grouped(drop_groups))
    at = T0 + timedelta(hours=DROP_HOUR)
    opened = [r for r in rows if r.metric == "tickets_opened" and r.interval_start == at]
    assert {r.kind for r in opened} == {"drop", "bypass"}
    drop = next(r for r in opened if r.kind == "drop")
    assert drop.observed == 0.0 and drop.expected > 5 and drop.lower > 0 and drop.direction == "drop"
    assert drop.detector == "record_break" and drop.score >= 0.02 / 1.02
    # nothing on the steady alerts; no ticket-volume row in the days before (records settle)
    assert not [r for r in rows if r.metric == "alerts"]
    assert not [r for r in rows if r.metric == "tickets_opened" and at - timedelta(days=4) <= r.interval_start < at]
    ids = [r.event_id for r in rows]
    assert len(ids) == len(set(ids))


def test_drop_with_alerts_dropping_too_is_not_a_bypass() -> None:
    _, rows, _ = run(grouped(synthetic(drops=((DROP_HOUR, 6),), alerts_drop=True)))
    at = T0 + timedelta(hours=DROP_HOUR)
    assert {(r.metric, r.kind) for r in rows if r.interval_start == at} >= {("tickets_opened", "drop")}
    assert not [r for r in rows if r.kind == "bypass"]


def test_spike_is_a_spike() -> None:
    _, rows, _ = run(grouped(synthetic(spikes=(SPIKE_HOUR,))))
    at = T0 + timedelta(hours=SPIKE_HOUR)
    spike = [r for r in rows if r.metric == "tickets_opened" and r.interval_start == at]
    assert [r.kind for r in spike] == ["spike"] and spike[0].observed > spike[0].upper
    assert not [r for r in rows if r.kind == "bypass"]


def test_cold_start_flags_nothing() -> None:
    # 60 hours (< the detector's warmup of 100 points), including a spike: no rows
    _, rows, records = run(grouped(synthetic(spikes=(40,), days=3)))
    assert rows == [] and records == {}


def test_sustained_drop_raises_one_trend_problem_updated_with_versions(drop_groups: list[list[Event]]) -> None:
    mon = TrendMonitor()
    mon.learn_many(grouped(drop_groups))
    records = [r for r in mon.pop_updates() if r.details["metric"] == "tickets_opened"]
    assert len(records) == 1  # one record per problem per pop: the latest version
    rec = records[0]
    assert rec.kind == "trend" and rec.status == "candidate" and rec.service == "payroll"
    assert rec.details["metric"] == "tickets_opened" and rec.details["direction"] == "drop"
    assert rec.first_seen == T0 + timedelta(hours=DROP_HOUR)
    assert rec.last_seen == T0 + timedelta(hours=DROP_HOUR + 6)  # six hours without tickets
    assert rec.details["intervals"] == 6 and rec.version == 6 - 3 + 1  # raised at 3, +1 per hour after
    assert "below the normal band for 6 consecutive 60-minute intervals" in rec.why.rule
    assert rec.title == "Sustained drop in tickets opened: payroll"

    # feedback: confirm bumps the version; an unknown id is not ours
    assert mon.apply_feedback(Feedback(problem_id=rec.problem_id, action=FeedbackAction.CONFIRM))
    confirmed = mon.pop_updates()
    assert [(r.problem_id, r.version, r.status) for r in confirmed] == [(rec.problem_id, rec.version + 1, "confirmed")]
    assert not mon.apply_feedback(Feedback(problem_id="PRB-unknown", action=FeedbackAction.REJECT))


class Threshold:
    """A test detector: a value below ``floor`` in office hours is a drop (expected 10, band 5..15)."""

    def __init__(self, floor: float = 1.0) -> None:
        self.floor = floor

    def learn_one(self, x: float, t: float | None = None) -> None:
        pass

    def learn_many(self, x: object, t: object = None) -> None:
        pass

    def verdict_one(self, x: float, t: float | None = None) -> AnomalyVerdict:
        flagged = x < self.floor and 8 <= (t or 0.0) % 86_400 / 3600 < 18
        return AnomalyVerdict(x, 10.0, (5.0, 15.0), float(flagged), flagged, "drop")

    def snapshot(self) -> dict[str, float]:
        return {}

    def restore(self, state: dict[str, float]) -> Threshold:
        return self


def test_new_episode_gets_a_new_id_and_reject_mutes_the_next() -> None:
    # the band of the first dropped hour (5..15 around 10) is what a "still dropped" hour stays below
    drops = ((DROP_HOUR, 4), (DROP_HOUR + 24, 4), (DROP_HOUR + 48, 4))
    events = grouped(synthetic(drops=drops, days=DAYS + 4))
    mon = TrendMonitor(detector_factory=Threshold, detector_name="threshold")
    mon.learn_many(events)
    recs = latest(mon.pop_updates())
    opened = sorted((r for r in recs.values() if r.details["metric"] == "tickets_opened"), key=lambda r: r.first_seen)
    assert [r.first_seen for r in opened] == [T0 + timedelta(hours=h) for h, _ in drops]
    assert len({r.problem_id for r in opened}) == 3 and {r.version for r in opened} == {2}

    # rejecting the first episode mutes the same service x metric x direction for a while
    cut = next(i for i, e in enumerate(events) if _event_time(e) >= T0 + timedelta(hours=DROP_HOUR + 12))
    mon = TrendMonitor(detector_factory=Threshold, detector_name="threshold", reject_quiet_intervals=30)
    mon.learn_many(events[:cut])
    first = [r for r in latest(mon.pop_updates()).values() if r.details["metric"] == "tickets_opened"]
    assert len(first) == 1
    assert mon.apply_feedback(Feedback(problem_id=first[0].problem_id, action=FeedbackAction.REJECT))
    assert [r.status for r in mon.pop_updates()] == ["rejected"]
    mon.learn_many(events[cut:])
    again = [r for r in latest(mon.pop_updates()).values() if r.details["metric"] == "tickets_opened"]
    assert [r.first_seen for r in again] == [T0 + timedelta(hours=DROP_HOUR + 48)]  # the second was muted
    assert len([r for r in mon.pop_anomalies() if r.metric == "tickets_opened" and r.kind == "drop"]) == 12


def test_a_level_verdict_detector_plugs_in() -> None:
    _, rows, recs = run(grouped(synthetic(drops=((DROP_HOUR, 5),))), detector_factory=SeasonalAnomalyDetector,
                        detector_name="seasonal")
    assert {(r.kind, r.detector) for r in rows if r.interval_start == T0 + timedelta(hours=DROP_HOUR)} >= {
        ("drop", "seasonal"), ("bypass", "seasonal")}
    assert [r.details["intervals"] for r in recs.values() if r.details["metric"] == "tickets_opened"] == [5]


def test_ticket_grouped_input_gives_the_time_sorted_result(drop_groups: list[list[Event]]) -> None:
    mon_g, rows_g, recs_g = run(grouped(drop_groups))
    mon_s, rows_s, recs_s = run(time_sorted(drop_groups))
    assert rows_g == rows_s and recs_g == recs_s
    assert mon_g.counters["dropped_late"] == mon_s.counters["dropped_late"] == 0


def test_snapshot_restore_mid_stream_continues_identically(drop_groups: list[list[Event]]) -> None:
    events = grouped(drop_groups)
    _, rows_all, recs_all = run(events)
    cut = next(i for i, e in enumerate(events) if _event_time(e) >= T0 + timedelta(hours=DROP_HOUR + 2))
    first = TrendMonitor()
    first.learn_many(events[:cut])
    rows, records = first.pop_anomalies(), first.pop_updates()
    restored = TrendMonitor.from_snapshot(first.snapshot())
    assert restored.snapshot() == first.snapshot()
    restored.learn_many(events[cut:])
    first.learn_many(events[cut:])
    assert restored.snapshot() == first.snapshot()
    assert rows + restored.pop_anomalies() == rows_all
    assert latest(records + restored.pop_updates()) == recs_all


GOLDEN_CHECKPOINT = Path(__file__).resolve().parent / "golden" / "trend_monitor_checkpoint.msgpack"


def test_a_checkpoint_of_the_earlier_code_restores_and_continues_identically(drop_groups: list[list[Event]]) -> None:
    # written by the code of commit edfe097 (before the trend stage was made faster) after the
    # events before DROP_HOUR + 7: mid-drop, three series in a run, two trend problems open. This
    # code must write the same bytes there and continue from them as from its own state (if a
    # change to the detectors is meant to change results, regenerate the file with the new code).
    events = grouped(drop_groups)
    cut = next(i for i, e in enumerate(events) if _event_time(e) >= T0 + timedelta(hours=DROP_HOUR + 7))
    golden = GOLDEN_CHECKPOINT.read_bytes()
    live = TrendMonitor()
    live.learn_many(events[:cut])
    live.pop_anomalies(), live.pop_updates()
    assert live.snapshot() == golden
    restored = TrendMonitor.from_snapshot(golden)
    assert [s.run for svc in restored._services.values() for s in svc.series if s].count("drop") == 3
    restored.learn_many(events[cut:])
    live.learn_many(events[cut:])
    rows = live.pop_anomalies()
    assert rows and restored.pop_anomalies() == rows
    assert restored.pop_updates() == live.pop_updates()
    assert restored.snapshot() == live.snapshot()


def test_learn_one_and_the_verdict_per_point_path_agree_with_learn_many(drop_groups: list[list[Event]]) -> None:
    events = grouped(drop_groups)
    _, rows_many, recs_many = run(events)
    one = TrendMonitor()
    for e in events:
        one.learn_one(e)
    assert sorted(one.pop_anomalies(), key=_key) == sorted(rows_many, key=_key)
    assert latest(one.pop_updates()) == recs_many

    class PerPoint(RecordBreakDetector):  # not the batched fast path: a verdict per point
        __slots__ = ()

    _, rows_slow, recs_slow = run(events, detector_factory=lambda: PerPoint(**SPARSE_COUNTS))
    assert rows_slow == rows_many and recs_slow == recs_many


def test_a_record_finished_and_forgotten_inside_one_call_still_goes_out(drop_groups: list[list[Event]]) -> None:
    # one learn_many over the whole stream: the drop's record is raised, ends, and is past
    # retain_intervals before the only pop - it must come out all the same, as it does event by event
    events = grouped(drop_groups) + grouped(synthetic(days=DAYS + 30))[-2000:]
    _, _, at_once = run(events, retain_intervals=2)
    one = TrendMonitor(retain_intervals=2)
    per_event: list[ProblemRecord] = []
    for e in events:
        one.learn_one(e)
        per_event += one.pop_updates()
    assert at_once == latest(per_event)
    assert any(r.details["metric"] == "tickets_opened" and r.details["direction"] == "drop" for r in at_once.values())


def test_events_count_for_the_series_they_are_given(drop_groups: list[list[Event]]) -> None:
    events = grouped(drop_groups)
    renamed = [msgspec.structs.replace(e, service="billing") for e in events]
    _, rows, _ = run(events)
    mon = TrendMonitor()
    mon.learn_many(renamed, ["payroll"] * len(renamed))  # e.g. the service a ticket was opened against
    assert mon.pop_anomalies() == rows


def _key(r: AnomalyRow) -> str:
    return r.event_id


def test_late_and_far_future_events_are_dropped_and_counted() -> None:
    mon = TrendMonitor()
    base = T0 + timedelta(days=10)

    def ticket(i: int, kind: TicketEventKind, at: datetime) -> TicketEvent:
        return TicketEvent(event_id=f"e{i}", source="s", ticket_id=f"T{i}", kind=kind, event_time=at,
                           version=0, service="svc")

    mon.learn_one(ticket(1, TicketEventKind.CREATED, base))
    mon.learn_one(ticket(2, TicketEventKind.CREATED, base + timedelta(hours=5)))
    assert mon.watermark == base + timedelta(hours=3)  # newest creation minus 2 intervals of lateness
    mon.learn_one(ticket(3, TicketEventKind.CREATED, base + timedelta(hours=2)))  # its interval has closed
    mon.learn_one(ticket(4, TicketEventKind.RESOLVED, base + timedelta(hours=3)))  # still open: kept
    mon.learn_one(ticket(5, TicketEventKind.RESOLVED, base + timedelta(days=46)))  # beyond the 45-day horizon
    mon.learn_one(ticket(6, TicketEventKind.UPDATED, base - timedelta(days=60)))  # not a metric: ignored
    assert mon.counters["dropped_late"] == 1 and mon.counters["dropped_beyond"] == 1
    assert mon.counters["events"] == 5


def test_services_are_capped_least_recently_active_first() -> None:
    mon = TrendMonitor(max_services=2)
    for i, svc in enumerate(["a", "b", "a", "c"]):
        mon.learn_one(TicketEvent(event_id=f"e{i}", source="s", ticket_id=f"T{i}", kind=TicketEventKind.CREATED,
                                  version=0,
                                  event_time=T0 + timedelta(minutes=i), service=svc))
    assert list(mon._services) == ["a", "c"] and mon.counters["evicted_services"] == 1


def _demo_events() -> Iterator[Event]:
    from streams.adapters import Rejected, read_events

    for e in read_events("servicenow-csv", DEMO):
        if not isinstance(e, Rejected):
            yield e


def test_servicenow_demo_slice_builds_per_service_series() -> None:
    mon = TrendMonitor()
    mon.learn_many(_demo_events())
    rows = mon.pop_anomalies()
    assert mon.series_count > 40 and len(mon._services) > 10
    assert mon.counters["intervals_closed"] > 24 * 7
    assert all(r.kind in ("spike", "drop", "bypass") for r in rows)
    assert not [r for r in rows if r.kind == "bypass"]  # no monitoring in the log: no bypass claims
    assert TrendMonitor.from_snapshot(mon.snapshot()).snapshot() == mon.snapshot()
