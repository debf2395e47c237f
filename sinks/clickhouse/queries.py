"""Named read queries over the opsintel tables (the CLI and the worker's HTTP API share them).

Only these fixed queries are exposed over HTTP - never SQL from a request. Values always travel
as server-side parameters.
"""

from __future__ import annotations

from typing import Any

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
    return {
        "rows": counts,
        "incidents_by_state": [{"state": s, "incidents": int(n)} for s, n in by_state],
        "incidents_by_priority": [{"priority": p, "incidents": int(n)} for p, n in by_priority],
        "top_services_by_open_incidents": [{"service": s, "open": int(n)} for s, n in top_open],
        "dead_letters": [{"topic": t, "reason": r, "count": int(n)} for t, r, n in dead],
    }
