"""Problem management: auto-raised problems, their evidence and status, recurrence, lead time,
suggested knowledge. Reads ``problems`` / ``problem_incidents`` (``FINAL``: newest version)."""

# ruff: noqa: S608 - fixed SQL assembled from constants in this module; no value is ever interpolated

from __future__ import annotations

from grafana_foundation_sdk.builders import dashboard as dash

from dashboards.common import (
    SERVICE_FILTER,
    business_unit_variable,
    ch,
    layout,
    new_dashboard,
    service_variable,
    stat_panel,
    table_panel,
    timeseries_panel,
)

UID = "opsintel-problem-management"
_PROBLEMS = "FROM problems FINAL WHERE $__timeFilter(raised_at)"


def build() -> dash.Dashboard:
    board = new_dashboard(
        UID, "opsintel · Problem management",
        "Problems raised by the detectors: why they were raised, what they link, what to read first.",
        tags=["problems"], variables=[service_variable(), business_unit_variable()],
    )  # fmt: skip
    stats = [
        (stat_panel("Open problems", "Candidates, open and confirmed problems raised in the range.",
                    ch(f"SELECT countIf(status IN ('candidate', 'open', 'confirmed')) {_PROBLEMS}")), 6, 4),
        (stat_panel("Incidents linked", "Incidents linked to the problems raised in the range.",
                    ch(f"SELECT sum(incident_count) {_PROBLEMS}")), 6, 4),
        (stat_panel("Median lead time to raise (h)", "First incident of the group → problem raised.",
                    ch(f"SELECT median(dateDiff('second', first_seen, raised_at)) / 3600 {_PROBLEMS}"),
                    unit="h", decimals=1), 6, 4),
        (stat_panel("Rejected (false positives)", "Problems a problem manager rejected.",
                    ch(f"SELECT countIf(status = 'rejected') {_PROBLEMS}")), 6, 4),
    ]
    queue = table_panel("Problem queue", "Newest first; lead times in hours (monitoring lead: the first alert "
                        "before the first incident).", ch(f"""
SELECT problem_id, status, kind, title, service, incident_count,
  raised_at, round(dateDiff('second', first_seen, raised_at) / 3600, 1) AS lead_time_h,
  suspect_change, suspect_change_delta_hours AS change_before_h, monitoring_alert,
  monitoring_lead_hours AS monitoring_lead_h, suggested_article, why_rule
{_PROBLEMS} ORDER BY raised_at DESC LIMIT 200"""))
    evidence = table_panel("Evidence", "Why the incidents were grouped: shared attributes, similarity, rate "
                           "against the service's usual, ticket signals.", ch(f"""
SELECT problem_id, toString(shared_attributes) AS shared_attributes, round(similarity, 2) AS similarity,
  round(rate_vs_baseline, 1) AS rate_vs_baseline, round(mean_reassignments, 2) AS mean_bounces,
  round(reopen_rate, 2) AS reopen_rate, round(sla_response_met_rate, 2) AS sla_response_met,
  round(sla_resolution_met_rate, 2) AS sla_resolution_met
{_PROBLEMS} ORDER BY incident_count DESC LIMIT 100"""))
    raised = timeseries_panel("Problems raised per day", "By detector kind.", [ch(f"""
SELECT toStartOfDay(raised_at) AS time, kind, count() AS problems {_PROBLEMS} GROUP BY time, kind
ORDER BY time""", series=True)], bars=True)
    recurrence = timeseries_panel("Recurrence share", "Share of incidents opened per day that are linked to a "
                                  "(not rejected) problem.", [ch(f"""
SELECT bucket AS time, sum(recurring) / sum(opened) AS recurrence_share FROM impact_daily
WHERE $__timeFilter(bucket) AND {SERVICE_FILTER} AND opened > 0 GROUP BY time ORDER BY time""",
                                                                   series=True)], unit="percentunit")
    knowledge = table_panel("Suggested knowledge", "The article most used to resolve each problem's incidents.",
                            ch(f"""
SELECT suggested_article AS article, count() AS problems, sum(incident_count) AS incidents,
  round(avg(suggested_article_share), 2) AS mean_share
{_PROBLEMS} AND suggested_article != '' GROUP BY article ORDER BY incidents DESC LIMIT 50"""))
    status = table_panel("Status", "Problems by status and kind.", ch(f"""
SELECT status, kind, count() AS problems {_PROBLEMS} GROUP BY status, kind ORDER BY problems DESC"""))
    return layout(board, [
        stats, [(queue, 24, 10)], [(evidence, 24, 8)],
        [(raised, 12, 8), (recurrence, 12, 8)], [(knowledge, 12, 8), (status, 12, 8)],
    ])  # fmt: skip
