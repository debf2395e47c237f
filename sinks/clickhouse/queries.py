"""Named read queries over the opsintel tables (the CLI and the worker's HTTP API share them).

Only these fixed queries are exposed over HTTP - never SQL from a request. Values always travel
as server-side parameters.

A lookup by key reads ``FINAL`` with the key in ``PREWHERE``: a ``WHERE`` is applied only after
``FINAL`` has merged the whole table, so its cost would grow with the history. Only sorting-key
columns go there (every version of a row shares them, so filtering first cannot pick an older
version); conditions on other columns stay in ``WHERE``, after the newest version is chosen.
"""

from __future__ import annotations

from typing import Any

from sinks.clickhouse.schema import TABLES_BY_NAME
from sinks.clickhouse.store import ClickHouseStore

#: states in which an incident is no longer open (ServiceNow and BPI spellings)
CLOSED_STATES = ("Resolved", "Closed", "Canceled", "Cancelled")


def summary(store: ClickHouseStore, *, top: int = 10) -> dict[str, Any]:
    """What the main job prints: rows per table, incidents by state, dead letters, top services.

    Counts are exact under replays (``FINAL`` folds re-delivered events).
    """
    counts = store.table_counts()
    by_state = store.query(
        "SELECT state, count() AS n FROM {db}.incidents FINAL GROUP BY state ORDER BY n DESC, state"
    )
    by_priority = store.query(
        "SELECT priority, count() AS n FROM {db}.incidents FINAL GROUP BY priority ORDER BY priority"
    )
    top_open = store.query(
        "SELECT service, count() AS n FROM {db}.incidents FINAL "
        "WHERE state NOT IN {closed:Array(String)} GROUP BY service ORDER BY n DESC, service "
        "LIMIT {top:UInt32}",
        {"closed": list(CLOSED_STATES), "top": top},
    )
    dead = store.query(
        "SELECT origin_topic, reason_code, count() AS n FROM {db}.dead_letters FINAL "
        "GROUP BY origin_topic, reason_code ORDER BY n DESC, origin_topic, reason_code"
    )
    problems_by_status = store.query(
        "SELECT kind, status, count() AS n FROM {db}.problems FINAL GROUP BY kind, status ORDER BY kind, n DESC"
    )
    anomalies_by_kind = store.query(
        "SELECT metric, kind, count() AS n FROM {db}.anomalies FINAL GROUP BY metric, kind ORDER BY n DESC, metric"
    )
    return {
        "rows": counts,
        "problems_by_status": [{"kind": k, "status": s, "problems": int(n)} for k, s, n in problems_by_status],
        "anomalies_by_kind": [{"metric": m, "kind": k, "anomalies": int(n)} for m, k, n in anomalies_by_kind],
        "incidents_by_state": [{"state": s, "incidents": int(n)} for s, n in by_state],
        "incidents_by_priority": [{"priority": p, "incidents": int(n)} for p, n in by_priority],
        "top_services_by_open_incidents": [{"service": s, "open": int(n)} for s, n in top_open],
        "dead_letters": [{"topic": t, "reason": r, "count": int(n)} for t, r, n in dead],
    }


_PROBLEM_LIST_COLUMNS = (
    "problem_id", "kind", "version", "status", "title", "service", "ci", "category", "incident_count",
    "first_seen", "last_seen", "raised_at", "updated_at", "why_rule", "rate_vs_baseline", "suspect_change",
    "suspect_change_delta_hours", "monitoring_alert", "monitoring_lead_hours", "suggested_article",
)


def problems(store: ClickHouseStore, *, status: str = "", service: str = "", limit: int = 50) -> list[dict[str, Any]]:
    """Latest version of each problem record, newest activity first, optionally filtered."""
    cols = ", ".join(_PROBLEM_LIST_COLUMNS)
    rows = store.query(
        f"SELECT {cols} FROM {{db}}.problems FINAL "  # noqa: S608 - fixed column list, values are parameters
        "WHERE ({status:String} = '' OR status = {status:String}) "
        "AND ({service:String} = '' OR service = {service:String}) "
        "ORDER BY last_seen DESC, problem_id LIMIT {limit:UInt32}",
        {"status": status, "service": service, "limit": limit},
    )
    return [_jsonable(dict(zip(_PROBLEM_LIST_COLUMNS, r, strict=True))) for r in rows]


def problem(store: ClickHouseStore, problem_id: str) -> dict[str, Any] | None:
    """One problem with its evidence and linked incidents (their current state)."""
    table = TABLES_BY_NAME["problems"]
    rows = store.query(
        f"SELECT {', '.join(table.column_names)} FROM {{db}}.problems FINAL "  # noqa: S608 - our column list
        "PREWHERE problem_id = {id:String}",
        {"id": problem_id},
    )
    if not rows:
        return None
    out = _jsonable(dict(zip(table.column_names, rows[0], strict=True)))
    out["incidents"] = [
        _jsonable({"ticket_id": t, "state": s, "priority": p, "opened_at": o, "category": c})
        for t, s, p, o, c in store.query(
            "SELECT ticket_id, state, priority, opened_at, category FROM {db}.incidents FINAL "
            "PREWHERE (source, ticket_id) IN (SELECT source, ticket_id FROM {db}.problem_incidents FINAL "
            "PREWHERE problem_id = {id:String} WHERE linked) ORDER BY opened_at, ticket_id",
            {"id": problem_id},
        )
    ]
    return out


def _jsonable(row: dict[str, Any]) -> dict[str, Any]:
    """Datetimes as ISO strings, so the same dict goes out over HTTP and to the terminal."""
    return {k: (v.isoformat() if hasattr(v, "isoformat") else v) for k, v in row.items()}
