"""The Grafana dashboards: every ClickHouse panel query runs on the demo data, the JSON is golden
and deterministic, it parses back with the SDK, and the Helm chart carries the same files."""

from __future__ import annotations

import json
import os
import re
import tempfile
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from dashboards import DASHBOARDS, build_all, write_all
from dashboards.clickhouse_query import ClickHouseQuery, expand_macros, register
from dashboards.common import clickhouse_queries, to_json
from tests.support import ROOT

GOLDEN = Path(__file__).parent / "golden" / "dashboards"
DEMO = ROOT / "deploy" / "demo-data" / "servicenow_slice.csv.gz"
CATALOG = ROOT / "deploy" / "catalog" / "services.example.yaml"
START, END = datetime(2016, 1, 1, tzinfo=UTC), datetime(2017, 12, 31, tzinfo=UTC)


def boards() -> dict[str, dict[str, Any]]:
    return {name: json.loads(to_json(b)) for name, b in build_all().items()}


#: panels whose honest value on the demo is zero: the log's channels are Phone / Email only,
#: and no problem manager has rejected anything
ZERO_ON_THE_DEMO = {"Self-service share", "Rejected (false positives)"}
QUERIES = [(name, title, sql) for name, board in boards().items() for title, sql in clickhouse_queries(board)]


@pytest.fixture(scope="module")
def demo_store() -> Iterator[Any]:
    """The demo slice replayed offline through the worker's pure code into an embedded store:
    ticket events, impact rows, problems from the recurring detector, anomalies from the seasonal one."""
    from detectors import SeasonalAnomalyDetector
    from opsintel.catalog import Catalog
    from opsintel.events import TicketEvent
    from opsintel.impact import ImpactModel
    from sinks.clickhouse import ClickHouseStore
    from streams.adapters import read_events

    events = sorted((e for e in read_events("servicenow-csv", DEMO) if isinstance(e, TicketEvent)),
                    key=lambda e: (e.event_time, e.version))
    with tempfile.TemporaryDirectory() as tmp:
        store = ClickHouseStore(f"chdb://{tmp}/ch", "opsintel")
        store.migrate()
        model = ImpactModel(Catalog.load(CATALOG))
        for i in range(0, len(events), 5000):
            batch = events[i:i + 5000]
            store.insert_ticket_events(batch, [0] * len(batch), list(range(i, i + len(batch))))
            store.insert_incident_impact(model.rows_for(batch))
        store.insert_problems(_problems(events), source="servicenow")
        store.insert_anomalies(_anomalies(events, SeasonalAnomalyDetector))
        store.client().command("USE opsintel")  # the Grafana datasource's defaultDatabase
        yield store
        store.close()


def _anomalies(events: list[Any], detector_cls: Any) -> list[dict[str, Any]]:
    """Daily ticket counts per service scored by the seasonal detector, plus one bypass row: the
    demo has no monitoring overlapping the tickets, so the bypass panel gets a labelled fixture row."""
    from collections import Counter

    counts = Counter((e.service, e.event_time.replace(hour=0, minute=0, second=0, microsecond=0))
                     for e in events if e.kind == "created")
    rows = []
    for service in sorted({s for s, _ in counts})[:8]:
        det = detector_cls()
        days = sorted(d for s, d in counts if s == service)
        day = days[0]
        while day <= days[-1]:
            x = float(counts.get((service, day), 0))
            v = det.verdict_one(x, day.timestamp())
            det.learn_one(x, day.timestamp())
            if v is not None and v.is_anomaly:
                rows.append(dict(event_id=f"seasonal:{service}:{day:%Y%m%d}", service=service, metric="tickets",
                                 interval_start=day, observed=v.observed, expected=v.expected, lower=v.band[0],
                                 upper=v.band[1], score=v.score, direction=v.direction, kind=v.direction,
                                 detector="seasonal"))
            day += timedelta(days=1)
    rows.append(dict(event_id="fixture:bypass", service="Category 45", metric="tickets",
                     interval_start=datetime(2016, 3, 20, tzinfo=UTC), observed=2.0, expected=20.0, lower=8.0,
                     upper=32.0, score=0.99, direction="drop", kind="bypass", detector="test-fixture"))
    return rows


def _problems(events: list[Any]) -> list[Any]:
    """Problem records over the demo's most repeated (category, symptom) groups, shaped like the
    recurring detector's output. A fixture: the dashboards test reads the table, not the detector
    (whose raise rule is tuned and tested in tests/test_recurring_detector.py)."""
    from collections import defaultdict

    from opsintel.problems import Evidence, KnowledgeSuggestion, ProblemRecord, ProblemStatus

    groups: dict[tuple[str, str], list[Any]] = defaultdict(list)
    for e in events:
        if e.kind == "created" and e.symptom:
            groups[(e.category, e.symptom)].append(e)
    top = sorted(groups.items(), key=lambda kv: (-len(kv[1]), kv[0]))[:6]
    statuses = [ProblemStatus.CANDIDATE, ProblemStatus.OPEN, ProblemStatus.CONFIRMED, ProblemStatus.REJECTED,
                ProblemStatus.CANDIDATE, ProblemStatus.RESOLVED]
    out = []
    for i, ((category, symptom), evs) in enumerate(top):
        first, third = evs[0].event_time, evs[min(2, len(evs) - 1)].event_time
        out.append(ProblemRecord(
            problem_id=f"PRB-demo-{i}", kind="recurring", version=1, status=statuses[i],
            title=f"{len(evs)} incidents: {category} / {symptom}", first_seen=first, last_seen=evs[-1].event_time,
            raised_at=third, updated_at=evs[-1].event_time, source="servicenow", service=evs[0].service,
            category=category, incident_ids=[e.ticket_id for e in evs], incident_count=len(evs),
            why=Evidence(shared_attributes={"category": category, "symptom": symptom}, similarity=0.9,
                         count_in_window=3, rule="3 similar incidents within 168 h"),
            suggested_knowledge=KnowledgeSuggestion(article=f"KB{1000 + i}", used_by=len(evs) // 2, share=0.5),
        ))  # fmt: skip
    return out


def _variables(store: Any) -> dict[str, list[str]]:
    return {
        "service": [r[0] for r in store.query("SELECT DISTINCT service FROM {db}.incident_impact")],
        "business_unit": [r[0] for r in store.query("SELECT DISTINCT business_unit FROM {db}.incident_impact")],
    }


@pytest.mark.parametrize(("board", "title", "sql"), QUERIES, ids=[f"{b}:{t}" for b, t, _ in QUERIES])
def test_every_clickhouse_query_returns_rows_on_the_demo_data(demo_store: Any, board: str, title: str,
                                                              sql: str) -> None:
    expanded = expand_macros(sql, start=START, end=END, interval_s=86400, variables=_variables(demo_store))
    assert "$" not in expanded, f"unexpanded macro or variable in {title}: {expanded}"
    rows = demo_store.client().query(expanded).result_rows
    assert rows, f"{board} / {title}: no rows"
    if title not in ZERO_ON_THE_DEMO:
        assert any(v not in (None, 0, 0.0, "") for row in rows for v in row), f"{board} / {title}: only empty values"


def test_a_narrow_variable_selection_filters(demo_store: Any) -> None:
    (_, _, sql), = [q for q in QUERIES if q[1] == "Incidents opened" and q[0] == "business-impact.json"]
    variables = _variables(demo_store)
    total = demo_store.client().query(expand_macros(sql, start=START, end=END, variables=variables)).result_rows
    one = demo_store.client().query(expand_macros(
        sql, start=START, end=END, variables={**variables, "service": ["web-store"]})).result_rows
    assert 0 < one[0][0] < total[0][0]


def test_impact_rollups_count_each_incident_once(demo_store: Any) -> None:
    (n,) = demo_store.query("SELECT uniqExact(ticket_id) FROM {db}.ticket_events")[0]
    (opened, resolved) = demo_store.query("SELECT sum(opened), sum(resolved) FROM {db}.impact_hourly")[0]
    (daily,) = demo_store.query("SELECT sum(opened) FROM {db}.impact_daily")[0]
    (still_open,) = demo_store.query("SELECT countIf(is_open) FROM {db}.incident_impact FINAL")[0]
    assert opened == daily == n
    assert resolved == n - still_open


@pytest.mark.parametrize("name", sorted(DASHBOARDS))
def test_dashboards_match_the_golden_json(name: str) -> None:
    text = to_json(build_all()[name])
    golden = GOLDEN / name
    if os.environ.get("UPDATE_GOLDEN"):
        golden.write_text(text)
    assert golden.read_text() == text, f"dashboard changed; if intended: UPDATE_GOLDEN=1 pytest {__file__}"


def test_dashboards_parse_back_with_the_sdk() -> None:
    from grafana_foundation_sdk.models.dashboard import Dashboard

    register()
    for name, data in boards().items():
        parsed = Dashboard.from_json(data)
        assert json.loads(to_json(parsed)) == data, name
        targets = [t for p in parsed.panels or [] for t in getattr(p, "targets", None) or []]
        if name != "pipeline-health.json":
            assert targets and any(isinstance(t, ClickHouseQuery) for t in targets)


def test_dashboard_shape() -> None:
    uids = set()
    for name, board in boards().items():
        uids.add(board["uid"])
        assert board["uid"].startswith("opsintel-") and board["title"].startswith("opsintel")
        ids = [p["id"] for p in board["panels"]]
        assert len(ids) == len(set(ids)), name
        for p in board["panels"]:
            assert p["gridPos"]["x"] + p["gridPos"]["w"] <= 24, (name, p["title"])
        names = {v["name"] for v in board["templating"]["list"]}
        uses_clickhouse = bool(clickhouse_queries(board))
        assert ({"service", "business_unit"} <= names) == uses_clickhouse, name
    assert len(uids) == len(DASHBOARDS)


def test_prometheus_panels_use_the_worker_metrics_and_a_datasource_variable() -> None:
    from streams.metrics import WorkerMetrics

    known = {m.name for m in WorkerMetrics().registry.collect()}
    board = boards()["pipeline-health.json"]
    assert board["templating"]["list"][0]["type"] == "datasource"
    for panel in board["panels"]:
        assert panel["datasource"]["uid"] == "${prometheus}"
        for target in panel["targets"]:
            for metric in re.findall(r"opsintel_[a-z_]+", target["expr"]):
                base = re.sub(r"_(bucket|total)$", "", metric)
                assert base in known, metric


def test_write_all_is_deterministic_and_writes_provisioning(tmp_path: Path) -> None:
    first = write_all(tmp_path / "a")
    write_all(tmp_path / "b")
    for path in first:
        rel = path.relative_to(tmp_path / "a")
        assert path.read_bytes() == (tmp_path / "b" / rel).read_bytes()
    import yaml

    ds = yaml.safe_load((tmp_path / "a" / "provisioning" / "datasources" / "opsintel.yaml").read_text())
    assert {d["uid"] for d in ds["datasources"]} == {"opsintel-clickhouse", "opsintel-prometheus"}
    provider = yaml.safe_load((tmp_path / "a" / "provisioning" / "dashboards" / "opsintel.yaml").read_text())
    assert provider["providers"][0]["type"] == "file"


def test_helm_chart_carries_the_generated_dashboards() -> None:
    chart = ROOT / "helm" / "opsintel" / "dashboards"
    assert sorted(p.name for p in chart.iterdir()) == sorted(DASHBOARDS)
    for name, board in build_all().items():
        assert (chart / name).read_text() == to_json(board), f"regenerate: opsintel dashboards --out {chart} " \
                                                             "--no-provisioning"


def test_cli_writes_and_prints_where(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from opsintel.cli import main

    assert main(["dashboards", "--out", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert str(tmp_path) in out and (tmp_path / "business-impact.json").exists()
    assert main(["dashboards"]) == 2
