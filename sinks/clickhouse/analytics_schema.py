"""ClickHouse schema of the analytics: per-incident impact, problems, anomalies, and the rollups.

Why these engines (the rule of the backbone holds: every table is idempotent under replay):

* ``incident_impact`` - one row per incident, ``ReplacingMergeTree(version)`` ordered by
  ``(source, ticket_id)``. An incident *changes*: it is reassigned, re-prioritised, resolved,
  reopened. Each change writes the whole row again with a higher ``version``; the newest replaces
  the older ones, and a replayed batch writes rows that are already there. Read with ``FINAL``,
  each incident is counted once with its latest numbers.
* ``problems`` - ``ReplacingMergeTree(version)`` by ``problem_id`` (detectors keep the id stable
  and bump the version); ``problem_incidents`` - one row per (problem, incident) link,
  ``ReplacingMergeTree(version)``, ``linked = false`` when a split moves the incident out. A pair
  gets a new row only when its state changes, so its newest row carries the version (and
  ``linked_at`` the time) of that change.
* ``anomalies`` - ``ReplacingMergeTree`` ordered by ``(service, metric, interval_start, event_id)``:
  ``event_id`` is deterministic, the other key columns are functions of it, so a replay folds.

The rollups ``impact_hourly``, ``impact_daily`` and ``backlog_daily`` are plain **views** over
``FINAL``, deliberately *not* incremental materialized views. An incremental MV aggregates each
*inserted block*: every new version of an incident, and every replayed batch, would be summed
again, so re-prioritising or reopening an incident would double count its minutes and money. The
correct incremental alternatives need the previous row at write time (``sign = -1`` cancel rows in a
``VersionedCollapsingMergeTree``) and stop being idempotent under replay (a replayed cancel row
cancels twice). ITSM volumes are small (tens of thousands of incidents a month, one row each after
``FINAL``), so aggregating at read time is cheap and always exact. Should that stop being true, the
same SELECTs become ``REFRESH EVERY …`` materialized views (a full, atomic recompute: still exact)
without changing the dashboards, which read the view names.

Attribution (also in ``docs/impact.md``): counts of opened incidents, time to respond and the
business sums go to the bucket of ``opened_at`` (the incident's cohort: its bucket never moves as it
grows); counts of resolved incidents, time to resolve and the SLA rates go to the bucket of the
final ``resolved_at``; anomalies to their ``interval_start``.

>>> names = [t.name for t in analytics_tables()]
>>> names
['incident_impact', 'problems', 'problem_incidents', 'anomalies']
>>> any("CREATE OR REPLACE VIEW `opsintel`.`impact_hourly`" in s for s in view_statements("opsintel"))
True
"""

# ruff: noqa: S608 - fixed SQL assembled from constants in this module; no value is ever interpolated

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:  # schema.py imports this module to extend TABLES: no import cycle at runtime
    from sinks.clickhouse.schema import Column, Table

_TS = "DateTime64(3, 'UTC')"
_NTS = f"Nullable({_TS})"
_LC = "LowCardinality(String)"

#: one row per incident; names and order match :class:`opsintel.impact.ImpactRow`
INCIDENT_IMPACT_COLUMNS: tuple[Column, ...] = (
    ("source", _LC), ("ticket_id", "String"), ("version", "UInt64"), ("last_event_id", "String"),
    ("as_of", _TS),
    ("service", _LC), ("service_name", _LC), ("business_unit", _LC), ("criticality", _LC),
    ("mapped", "Bool"), ("mapping_rule", _LC), ("ticket_service", _LC), ("category", _LC),
    ("assignment_group", _LC),
    ("priority", _LC), ("priority_level", "UInt8"), ("state", _LC), ("is_open", "Bool"),
    ("opened_at", _TS), ("first_response_at", _NTS), ("resolved_at", _NTS),
    ("time_to_respond_min", "Nullable(Float64)"), ("time_to_respond_bh_min", "Nullable(Float64)"),
    ("time_to_resolve_min", "Nullable(Float64)"), ("time_to_resolve_bh_min", "Nullable(Float64)"),
    ("sla_response_target_min", "Nullable(Float64)"), ("sla_resolution_target_min", "Nullable(Float64)"),
    ("sla_response_met", "Nullable(Bool)"), ("sla_resolution_met", "Nullable(Bool)"), ("sla_made", "Nullable(Bool)"),
    ("sla_disagrees", "Bool"), ("sla_met_resolution_slow", "Bool"),
    ("reassignments", "UInt32"), ("reopens", "UInt32"), ("channel", _LC), ("self_service", "Bool"),
    ("knowledge_used", "Nullable(Bool)"),
    ("impact_share", "Float64"), ("users_affected", "Float64"), ("interruption_min", "Float64"),
    ("interruption_bh_min", "Float64"), ("weighted_interruption_min", "Float64"),
    ("productivity_loss", "Float64"), ("customer_impact", "Float64"), ("currency", _LC),
)  # fmt: skip

#: flattened :class:`opsintel.problems.ProblemRecord` (the evidence kept whole as JSON)
PROBLEM_COLUMNS: tuple[Column, ...] = (
    ("problem_id", "String"), ("kind", _LC), ("version", "UInt64"), ("status", _LC), ("title", "String"),
    ("first_seen", _TS), ("last_seen", _TS), ("raised_at", _TS), ("updated_at", _TS),
    ("source", _LC), ("service", _LC), ("ci", "String"), ("category", _LC),
    ("incident_count", "UInt32"), ("why_rule", "String"), ("shared_attributes", "Map(String, String)"),
    ("similarity", "Float64"), ("rate_vs_baseline", "Float64"),
    ("suspect_change", "String"), ("suspect_change_match", _LC), ("suspect_change_delta_hours", "Nullable(Float64)"),
    ("monitoring_alert", "String"), ("monitoring_lead_hours", "Nullable(Float64)"),
    ("suggested_article", "String"), ("suggested_article_share", "Nullable(Float64)"),
    ("mean_reassignments", "Nullable(Float64)"), ("reopen_rate", "Nullable(Float64)"),
    ("sla_response_met_rate", "Nullable(Float64)"), ("sla_resolution_met_rate", "Nullable(Float64)"),
    ("merged_into", "String"), ("feedback_action", _LC), ("evidence_json", "String"),
)  # fmt: skip

PROBLEM_INCIDENT_COLUMNS: tuple[Column, ...] = (
    ("problem_id", "String"), ("source", _LC), ("ticket_id", "String"), ("version", "UInt64"),
    ("linked", "Bool"), ("linked_at", _TS),
)  # fmt: skip

ANOMALY_COLUMNS: tuple[Column, ...] = (
    ("event_id", "String"), ("service", _LC), ("metric", _LC), ("interval_start", _TS),
    ("observed", "Float64"), ("expected", "Float64"), ("lower", "Float64"), ("upper", "Float64"),
    ("score", "Float64"), ("direction", _LC), ("kind", _LC), ("detector", _LC),
)  # fmt: skip


def analytics_tables() -> tuple[Table, ...]:
    """The analytics tables, appended to :data:`sinks.clickhouse.schema.TABLES`."""
    from sinks.clickhouse.schema import Table

    return (
        Table("incident_impact", INCIDENT_IMPACT_COLUMNS, "ReplacingMergeTree(version)", "(source, ticket_id)",
              comment="Per-incident IT and business impact; the newest version of an incident wins (FINAL).",
              shard_key="cityHash64(ticket_id)"),
        Table("problems", PROBLEM_COLUMNS, "ReplacingMergeTree(version)", "(problem_id)",
              comment="Problem records raised by the detectors; the newest version wins (FINAL).",
              shard_key="cityHash64(problem_id)"),
        Table("problem_incidents", PROBLEM_INCIDENT_COLUMNS, "ReplacingMergeTree(version)",
              "(problem_id, source, ticket_id)",
              comment="Incident-to-problem links; linked = false once split out.",
              shard_key="cityHash64(problem_id)"),
        Table("anomalies", ANOMALY_COLUMNS, "ReplacingMergeTree", "(service, metric, interval_start, event_id)",
              "toYYYYMM(interval_start)",
              comment="Trend anomalies (spike, drop, bypass) per service and metric.",
              shard_key="cityHash64(event_id)"),
    )  # fmt: skip


def _rollup_sql(db: str, bucket: str) -> str:
    """Per ``bucket`` (a ClickHouse function such as ``toStartOfHour``), service and business unit."""
    recurring = (
        f"(source, ticket_id) IN (SELECT source, ticket_id FROM {db}.problem_incidents FINAL WHERE linked "
        f"AND problem_id IN (SELECT problem_id FROM {db}.problems FINAL WHERE status NOT IN ('rejected')))"
    )
    # anomalies name either a catalogue service or a ticket's own service field: map the latter
    service_map = (
        f"SELECT ticket_service, topKWeighted(1)(service, 1)[1] AS svc, "
        f"topKWeighted(1)(business_unit, 1)[1] AS bu "
        f"FROM {db}.incident_impact FINAL GROUP BY ticket_service"
    )
    return f"""SELECT bucket, service, business_unit,
  sum(opened) AS opened, sum(resolved) AS resolved, sum(still_open) AS still_open,
  max(ttrespond_mean_min) AS ttrespond_mean_min, max(ttrespond_p90_min) AS ttrespond_p90_min,
  max(ttresolve_mean_min) AS ttresolve_mean_min, max(ttresolve_p90_min) AS ttresolve_p90_min,
  max(ttresolve_bh_mean_min) AS ttresolve_bh_mean_min, max(ttresolve_bh_p90_min) AS ttresolve_bh_p90_min,
  max(sla_response_met_rate) AS sla_response_met_rate, max(sla_resolution_met_rate) AS sla_resolution_met_rate,
  max(sla_made_rate) AS sla_made_rate, sum(sla_met_resolution_slow) AS sla_met_resolution_slow,
  max(reassignments_mean) AS reassignments_mean, max(reassignments_p90) AS reassignments_p90,
  sum(reopens) AS reopens, sum(self_service) AS self_service, sum(knowledge_used) AS knowledge_used,
  sum(unmapped) AS unmapped, sum(recurring) AS recurring,
  if(opened = 0, NULL, recurring / opened) AS recurrence_share,
  sum(interruption_min) AS interruption_min, sum(interruption_bh_min) AS interruption_bh_min,
  sum(weighted_interruption_min) AS weighted_interruption_min,
  sum(productivity_loss) AS productivity_loss, sum(customer_impact) AS customer_impact,
  sum(anomalies) AS anomalies
FROM (
  SELECT {bucket}(ts) AS bucket, service, business_unit,
    countIf(side = 'opened') AS opened, countIf(side = 'resolved') AS resolved,
    countIf(side = 'opened' AND is_open) AS still_open,
    avgIf(time_to_respond_min, side = 'opened') AS ttrespond_mean_min,
    quantileIf(0.9)(time_to_respond_min, side = 'opened') AS ttrespond_p90_min,
    avgIf(time_to_resolve_min, side = 'resolved') AS ttresolve_mean_min,
    quantileIf(0.9)(time_to_resolve_min, side = 'resolved') AS ttresolve_p90_min,
    avgIf(time_to_resolve_bh_min, side = 'resolved') AS ttresolve_bh_mean_min,
    quantileIf(0.9)(time_to_resolve_bh_min, side = 'resolved') AS ttresolve_bh_p90_min,
    avgIf(toFloat64(sla_response_met), side = 'resolved' AND sla_response_met IS NOT NULL) AS sla_response_met_rate,
    avgIf(toFloat64(sla_resolution_met), side = 'resolved' AND sla_resolution_met IS NOT NULL)
      AS sla_resolution_met_rate,
    avgIf(toFloat64(sla_made), side = 'resolved' AND sla_made IS NOT NULL) AS sla_made_rate,
    countIf(side = 'resolved' AND sla_met_resolution_slow) AS sla_met_resolution_slow,
    avgIf(reassignments, side = 'resolved') AS reassignments_mean,
    quantileIf(0.9)(reassignments, side = 'resolved') AS reassignments_p90,
    sumIf(reopens, side = 'resolved') AS reopens,
    countIf(side = 'opened' AND self_service) AS self_service,
    countIf(side = 'opened' AND knowledge_used) AS knowledge_used,
    countIf(side = 'opened' AND NOT mapped) AS unmapped,
    countIf(side = 'opened' AND {recurring}) AS recurring,
    sumIf(interruption_min, side = 'opened') AS interruption_min,
    sumIf(interruption_bh_min, side = 'opened') AS interruption_bh_min,
    sumIf(weighted_interruption_min, side = 'opened') AS weighted_interruption_min,
    sumIf(productivity_loss, side = 'opened') AS productivity_loss,
    sumIf(customer_impact, side = 'opened') AS customer_impact,
    toUInt64(0) AS anomalies
  FROM (
    SELECT *, 'opened' AS side, opened_at AS ts FROM {db}.incident_impact FINAL
    UNION ALL
    SELECT *, 'resolved' AS side, assumeNotNull(resolved_at) AS ts FROM {db}.incident_impact FINAL
    WHERE resolved_at IS NOT NULL
  )
  GROUP BY bucket, service, business_unit
  UNION ALL
  SELECT {bucket}(a.interval_start) AS bucket, if(m.svc = '', a.service, m.svc) AS service,
    m.bu AS business_unit,
    0, 0, 0,  -- opened, resolved, still_open
    NULL, NULL, NULL, NULL, NULL, NULL,  -- time to respond / resolve
    NULL, NULL, NULL, 0,  -- SLA rates, met-but-slow
    NULL, NULL, 0, 0, 0, 0, 0,  -- reassignments, reopens, self-service, knowledge, unmapped, recurring
    0, 0, 0, 0, 0,  -- business sums
    count() AS anomalies
  FROM {db}.anomalies AS a FINAL LEFT JOIN ({service_map}) AS m ON a.service = m.ticket_service
  GROUP BY bucket, service, business_unit
)
GROUP BY bucket, service, business_unit"""


def _backlog_sql(db: str) -> str:
    """Open incidents at the end of each day (an open incident counts up to its newest event)."""
    return f"""SELECT day, service, business_unit, count() AS open_incidents
FROM (
  SELECT arrayJoin(arrayMap(i -> toStartOfDay(opened_at) + toIntervalDay(i),
           range(toUInt32(least(dateDiff('day', toStartOfDay(opened_at), toStartOfDay(ifNull(resolved_at, as_of)))
                                + (resolved_at IS NULL), 1000))))) AS day,
         service, business_unit
  FROM {db}.incident_impact FINAL
)
GROUP BY day, service, business_unit"""


def view_statements(database: str, *, cluster: str = "") -> list[str]:
    """``CREATE OR REPLACE VIEW`` for the rollups (idempotent, and updates an older definition)."""
    from sinks.clickhouse.schema import quote_identifier

    db = quote_identifier(database)
    on_cluster = f" ON CLUSTER {quote_identifier(cluster)}" if cluster else ""
    views = {
        "impact_hourly": _rollup_sql(db, "toStartOfHour"),
        "impact_daily": _rollup_sql(db, "toStartOfDay"),
        "backlog_daily": _backlog_sql(db),
    }
    return [f"CREATE OR REPLACE VIEW {db}.{quote_identifier(name)}{on_cluster} AS\n{sql}"
            for name, sql in views.items()]


#: the rollup views, for readers that list them (the summary, the tests)
VIEWS = ("impact_hourly", "impact_daily", "backlog_daily")
