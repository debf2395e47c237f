"""The ClickHouse store on the embedded chDB engine: schema, idempotent writes, current state."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import msgspec
import pytest

from opsintel.events import ChangeEvent, MonitoringEvent, TicketEvent
from opsintel.problems import ProblemRecord
from sinks.clickhouse import TABLES, ClickHouseStore, create_statements, queries
from sinks.clickhouse.queries import summary
from sinks.clickhouse.schema import INCIDENT_COLUMNS
from sinks.clickhouse.store import _classify
from sinks.deadletter import DeadLetter
from sinks.exceptions import SinkRejected, SinkUnavailable

T0 = datetime(2016, 3, 1, 9, 0, tzinfo=UTC)


def ticket(ticket_id: str, version: int, state: str, **kw: object) -> TicketEvent:
    return TicketEvent(
        event_id=f"test:{ticket_id}:{version}", source="test", ticket_id=ticket_id,
        kind="created" if version == 0 else "state_changed", version=version, state=state,
        event_time=T0 + timedelta(minutes=version), **kw,  # type: ignore[arg-type]
    )


def test_migrate_is_idempotent_and_creates_every_table(chdb_store: ClickHouseStore) -> None:
    chdb_store.migrate()
    names = {r[0] for r in chdb_store.query("SELECT name FROM system.tables WHERE database = {d:String}",
                                             {"d": chdb_store.database})}
    assert {t.name for t in TABLES} <= names


def test_replayed_batch_is_not_counted_twice(chdb_store: ClickHouseStore) -> None:
    events = [ticket("INC1", 0, "New"), ticket("INC1", 1, "Active"), ticket("INC2", 0, "New")]
    chdb_store.insert_ticket_events(events, [0, 0, 1], [10, 11, 12])
    chdb_store.insert_ticket_events(events, [0, 0, 1], [10, 11, 12])  # a crash before commit replays it
    counts = chdb_store.table_counts(["ticket_events", "incidents"])
    assert counts == {"ticket_events": 3, "incidents": 2}


def test_incident_keeps_latest_version_whatever_the_arrival_order(chdb_store: ClickHouseStore) -> None:
    chdb_store.insert_ticket_events([ticket("INC9", 2, "Resolved", priority="3 - Moderate")], [0], [5])
    chdb_store.insert_ticket_events([ticket("INC9", 0, "New"), ticket("INC9", 1, "Active")], [0, 0], [3, 4])
    rows = chdb_store.query("SELECT state, version, priority FROM {db}.incidents FINAL WHERE ticket_id = {t:String}",
                            {"t": "INC9"})
    assert rows == [("Resolved", 2, "3 - Moderate")]


def test_incidents_row_is_the_newest_event_column_for_column(chdb_store: ClickHouseStore) -> None:
    # ClickHouse fills `incidents` (materialized view over ticket_events): every attribute set
    every = {"active": True, "opened_at": T0, "resolved_at": T0 + timedelta(hours=2),
             "closed_at": T0 + timedelta(hours=3), "reopened_at": T0 + timedelta(hours=1), "service": "Payments",
             "ci": "CI7", "ci_type": "app", "category": "Network", "subcategory": "VPN", "symptom": "slow",
             "description": "VPN drops", "priority": "2 - High", "impact": "1 - High", "urgency": "2 - Medium",
             "assignment_group": "Net", "assigned_to": "Ana", "channel": "Phone", "location": "Utrecht",
             "caller": "Bo", "knowledge_used": False, "knowledge_article": "KB1", "related_change": "CHG1",
             "related_incident": "INC4", "caused_by_ci": "CI8", "reassignment_count": 3, "reopen_count": 1,
             "sla_made": True, "closure_code": "fixed", "handle_time_hours": 1.25}
    events = [ticket("INC5", 1, "Resolved", **every), ticket("INC5", 0, "New", **{**every, "ci": "old"})]
    chdb_store.insert_ticket_events(events, [0, 0], [8, 7])
    names = [name for name, _ in INCIDENT_COLUMNS]
    assert {n for n in names if n != "last_event_id"} | {"event_id"} == set(TicketEvent.__struct_fields__) - {
        "schema_version"}
    rows = chdb_store.query(f"SELECT {', '.join(names)} FROM {{db}}.incidents FINAL")
    assert rows == [tuple(getattr(events[0], "event_id" if n == "last_event_id" else n) for n in names)]


def test_monitoring_change_and_dead_letters_round_trip(chdb_store: ClickHouseStore) -> None:
    alert = MonitoringEvent(event_id="am:f1:firing", source="alertmanager", event_time=T0, status="firing",
                            fingerprint="f1", name="InstanceDown", starts_at=T0, labels={"job": "node"})
    change = ChangeEvent(event_id="c:C1:CI1", source="bpic2014", event_time=T0, change_id="C1", ci="CI1",
                         emergency=True)
    letter = DeadLetter.for_record(b"\x00\xffnot json", reason="bad_json: truncated", origin="x/0/1",
                                   origin_topic="x")
    chdb_store.insert_monitoring_events([alert], [2], [7])
    chdb_store.insert_change_events([change], [1], [0])
    chdb_store.insert_dead_letters([letter, letter])
    assert chdb_store.query("SELECT labels['job'], kafka_partition, kafka_offset FROM {db}.monitoring_events") == [
        ("node", 2, 7)
    ]
    assert chdb_store.query("SELECT emergency FROM {db}.change_events") == [(True,)]
    assert chdb_store.table_counts(["dead_letters"]) == {"dead_letters": 1}


def test_sql_looking_values_are_stored_verbatim(chdb_store: ClickHouseStore) -> None:
    nasty = "x'); DROP TABLE incidents; --"
    chdb_store.insert_ticket_events([ticket("INC7", 0, "New", service=nasty)], [0], [0])
    data = summary(chdb_store)
    assert data["top_services_by_open_incidents"] == [{"service": nasty, "open": 1}]
    assert chdb_store.table_counts(["incidents"]) == {"incidents": 1}


def test_summary_reports_open_incidents_per_service(chdb_store: ClickHouseStore) -> None:
    chdb_store.insert_ticket_events(
        [ticket("A", 0, "New", service="mail"), ticket("B", 0, "Active", service="mail"),
         ticket("C", 0, "Closed", service="erp"), ticket("D", 0, "New", service="erp")],
        [0] * 4, [0, 1, 2, 3],
    )
    data = summary(chdb_store)
    assert data["top_services_by_open_incidents"] == [{"service": "mail", "open": 2}, {"service": "erp", "open": 1}]
    assert {r["state"]: r["incidents"] for r in data["incidents_by_state"]} == {"New": 2, "Active": 1, "Closed": 1}


def test_cluster_ddl_uses_replicated_engines_and_distributed_tables() -> None:
    ddl = create_statements("ops", cluster="main")
    assert ddl[0] == "CREATE DATABASE IF NOT EXISTS `ops` ON CLUSTER `main`"
    incidents = next(s for s in ddl if "`incidents_local`" in s and "ENGINE = Replicated" in s)
    engine = "ReplicatedReplacingMergeTree('/clickhouse/tables/{shard}/ops/incidents_local', '{replica}', version)"
    assert engine in incidents
    assert any("ENGINE = Distributed(`main`, `ops`, `incidents_local`, cityHash64(ticket_id))" in s for s in ddl)


def test_locked_embedded_store_raises_a_clear_error(tmp_path: object) -> None:
    """chDB admits one process per folder: a second process gets StoreLocked, not a crash."""
    import subprocess
    import sys

    path = f"{tmp_path}/ch"
    holder = subprocess.Popen(
        [sys.executable, "-c",
         "import sys, clickhouse_connect; c = clickhouse_connect.get_client(dsn=sys.argv[1]); "
         "c.command('SELECT 1'); print('ready', flush=True); sys.stdin.read()", f"chdb://{path}"],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == b"ready"
        probe = subprocess.run(
            [sys.executable, "-c",
             "import sys\nfrom sinks.clickhouse import ClickHouseStore, StoreLocked\n"
             "try:\n    ClickHouseStore(sys.argv[1]).migrate()\nexcept StoreLocked as e:\n    print('LOCKED', e)\n",
             f"chdb://{path}"],
            capture_output=True, text=True, timeout=120,
        )
        assert "LOCKED" in probe.stdout, probe.stdout + probe.stderr
    finally:
        holder.kill()
        holder.wait()


@pytest.mark.parametrize("password", ["s3cr3t-pa55"])
def test_password_never_in_repr_or_errors(password: str) -> None:
    store = ClickHouseStore("http://default@127.0.0.1:1", password=password)
    assert password not in repr(store)
    with pytest.raises(Exception) as err:
        store.query("SELECT 1")
    assert password not in str(err.value)


def test_incidents_split_out_of_a_problem_are_marked_unlinked(chdb_store: ClickHouseStore) -> None:
    raised = ProblemRecord(problem_id="PRB-1", kind="recurring", version=1, status="candidate", title="t",
                           first_seen=T0, last_seen=T0, raised_at=T0, updated_at=T0, source="test",
                           incident_ids=["INC1", "INC2", "INC3"], incident_count=3)
    split = msgspec.structs.replace(raised, version=2, incident_ids=["INC1", "INC3"], incident_count=2,
                                    unlinked_incident_ids=["INC2"], updated_at=T0 + timedelta(hours=1))
    chdb_store.insert_problems([raised])
    chdb_store.insert_problems([split])
    rows = chdb_store.query("SELECT ticket_id, linked, version FROM {db}.problem_incidents FINAL ORDER BY ticket_id")
    # each pair's newest row is the version that last changed it
    assert [tuple(r) for r in rows] == [("INC1", True, 1), ("INC2", False, 2), ("INC3", True, 1)]


def test_a_problem_is_shown_with_the_current_state_of_its_linked_incidents_only(
    chdb_store: ClickHouseStore,
) -> None:
    """`problems show` / the HTTP API: the newest version of the problem; its incidents as they are
    now, in order of opening; not the incident a split moved out, nor another problem's."""
    chdb_store._command("SYSTEM STOP MERGES {db}.problem_incidents")  # the older link rows stay unfolded
    chdb_store.insert_ticket_events(
        [ticket("INC1", 0, "New", opened_at=T0 + timedelta(hours=2)), ticket("INC1", 1, "Resolved"),
         ticket("INC2", 0, "New", opened_at=T0 + timedelta(hours=1)),
         ticket("INC3", 0, "Active", opened_at=T0), ticket("INC4", 0, "New", opened_at=T0)],
        [0] * 5, range(5))  # fmt: skip
    raised = ProblemRecord(problem_id="PRB-1", kind="recurring", version=1, status="candidate", title="t",
                           first_seen=T0, last_seen=T0, raised_at=T0, updated_at=T0, source="test",
                           incident_ids=["INC1", "INC2", "INC3"], incident_count=3)
    split = msgspec.structs.replace(raised, version=2, incident_ids=["INC1", "INC2"], incident_count=2,
                                    unlinked_incident_ids=["INC3"], status="confirmed")
    other = msgspec.structs.replace(raised, problem_id="PRB-2", incident_ids=["INC4"], incident_count=1)
    chdb_store.insert_problems([raised, other])
    chdb_store.insert_problems([split])

    shown = queries.problem(chdb_store, "PRB-1")

    assert shown is not None and (shown["version"], shown["status"]) == (2, "confirmed")
    assert [(i["ticket_id"], i["state"]) for i in shown["incidents"]] == [("INC2", "New"), ("INC1", "Resolved")]
    assert queries.problem(chdb_store, "PRB-3") is None


def _links(store: ClickHouseStore) -> list[tuple[str, bool, int]]:
    """Every link row written (not folded), in order."""
    return [tuple(r) for r in store.query(  # type: ignore[misc]
        "SELECT ticket_id, linked, version FROM {db}.problem_incidents ORDER BY version, ticket_id, linked")]


def test_a_new_version_of_a_problem_writes_only_the_links_that_changed(chdb_store: ClickHouseStore) -> None:
    v1 = ProblemRecord(problem_id="PRB-1", kind="recurring", version=1, status="candidate", title="t",
                       first_seen=T0, last_seen=T0, raised_at=T0, updated_at=T0, source="test",
                       incident_ids=["INC1", "INC2"], incident_count=2)
    v2 = msgspec.structs.replace(v1, version=2, incident_ids=["INC1", "INC2", "INC3"], incident_count=3)
    v3 = msgspec.structs.replace(v2, version=3, incident_ids=["INC1", "INC2", "INC3", "INC4"], incident_count=4)
    chdb_store.insert_problems([v1])
    chdb_store.insert_problems([v2, v3])  # two versions in one flush: the newest problem row only
    assert _links(chdb_store) == [("INC1", True, 1), ("INC2", True, 1), ("INC3", True, 2), ("INC4", True, 3)]
    assert chdb_store.query("SELECT count(), max(version) FROM {db}.problems")[0] == (2, 3)
    # a merge unlinks every incident: every pair changes
    merged = msgspec.structs.replace(v3, version=4, merged_into="PRB-2")
    chdb_store.insert_problems([merged])
    assert [r for r in _links(chdb_store) if r[2] == 4] == [(t, False, 4) for t in ("INC1", "INC2", "INC3", "INC4")]


def test_links_are_read_back_when_the_previous_version_was_not_written_here(chdb_store: ClickHouseStore) -> None:
    """A version that does not follow the last one this store wrote (the problem's partition was
    on another worker meanwhile, or a restart): what the ledger remembers may be stale, so the
    links are compared with what the table holds."""
    v1 = ProblemRecord(problem_id="PRB-1", kind="recurring", version=1, status="candidate", title="t",
                       first_seen=T0, last_seen=T0, raised_at=T0, updated_at=T0, source="test",
                       incident_ids=["INC1", "INC2"], incident_count=2)
    chdb_store.insert_problems([v1])
    # version 2, written by another worker, moved INC1 out of the problem
    chdb_store._command("INSERT INTO {db}.problem_incidents (problem_id, source, ticket_id, version, linked, "
                        "linked_at) VALUES ('PRB-1', 'test', 'INC1', 2, false, now64(3))")
    v3 = msgspec.structs.replace(v1, version=3)  # and version 3 links it again
    chdb_store.insert_problems([v3])
    rows = chdb_store.query("SELECT ticket_id, linked, version FROM {db}.problem_incidents FINAL ORDER BY ticket_id")
    assert [tuple(r) for r in rows] == [("INC1", True, 3), ("INC2", True, 1)]


def test_a_replay_after_a_restart_leaves_the_links_as_they_were(chdb_store: ClickHouseStore) -> None:
    """A crashed worker replays versions from its last checkpoint, some of which it had already
    stored: the links end up as without the crash (the tables are compared after FINAL)."""
    v1 = ProblemRecord(problem_id="PRB-1", kind="recurring", version=1, status="candidate", title="t",
                       first_seen=T0, last_seen=T0, raised_at=T0, updated_at=T0, source="test",
                       incident_ids=["INC1", "INC2"], incident_count=2)
    v2 = msgspec.structs.replace(v1, version=2, incident_ids=["INC1", "INC2", "INC3"], incident_count=3,
                                 updated_at=T0 + timedelta(hours=1))
    v3 = msgspec.structs.replace(v2, version=3, incident_ids=["INC1", "INC3"], unlinked_incident_ids=["INC2"],
                                 incident_count=2, updated_at=T0 + timedelta(hours=2))
    chdb_store.insert_problems([v1])
    chdb_store.insert_problems([v2, v3])
    final = "SELECT ticket_id, linked, version, linked_at FROM {db}.problem_incidents FINAL ORDER BY ticket_id"
    undisturbed = chdb_store.query(final)
    # a restarted worker (a new store: it remembers nothing) replays from its checkpoint at version 1
    restarted = ClickHouseStore(chdb_store.dsn, chdb_store.database)
    restarted._client = chdb_store._client
    restarted.insert_problems([v2])
    restarted.insert_problems([v3])
    assert chdb_store.query(final) == undisturbed
    # v2 now lists INC2 as linked where the table holds v3's unlinked row: v2's row is older, it loses
    assert ("INC2", True, 2) in _links(chdb_store)


def test_a_value_clickhouse_cannot_read_is_refused_not_retried(chdb_store: ClickHouseStore) -> None:
    """A value the server cannot read is a poison batch (SinkRejected: the writer isolates the
    record and dead-letters it), not an outage to retry for ever."""
    for column, value in (("version", "'many'"), ("as_of", "'noon'")):
        with pytest.raises(SinkRejected, match="refused the data"):
            chdb_store._command(f"INSERT INTO {{db}}.incident_impact (source, ticket_id, {column}) "
                                f"VALUES ('s', 't', {value})")
    assert chdb_store.table_counts(["incident_impact"]) == {"incident_impact": 0}
    assert isinstance(_classify(RuntimeError("Code: 210. DB::NetException: Connection refused"), ""),
                      SinkUnavailable)  # anything else is still worth retrying


PANDAS_PROBE = """
import sys
sys.path.insert(0, {root!r})
from datetime import UTC, datetime
from opsintel.events import TicketEvent
from sinks.clickhouse import ClickHouseStore
store = ClickHouseStore("chdb://{path}", "probe")
store.migrate()
ev = TicketEvent(event_id="p:1", source="test", ticket_id="INC1", kind="created", version=0, state="New",
                 event_time=datetime(2016, 3, 1, tzinfo=UTC))
store.insert_ticket_events([ev], [0], [1])
assert store.table_counts(["ticket_events"]) == {{"ticket_events": 1}}
print("pandas" in sys.modules)
"""


def test_inserting_does_not_import_pandas(tmp_path: object) -> None:
    """clickhouse-connect would import pandas (~66 MB) on the first insert just to rule DataFrames out."""
    import subprocess
    import sys

    from tests.support import ROOT

    out = subprocess.run([sys.executable, "-c", PANDAS_PROBE.format(root=str(ROOT), path=f"{tmp_path}/ch")],
                         capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
