"""Trends & anomalies: volume, backlog and time to resolve per service, and the anomalies the
trend detector flagged (spikes, drops, and the "users bypass the desk" signal)."""

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
    table_panel,
    timeseries_panel,
)

UID = "opsintel-trends"


def build() -> dash.Dashboard:
    board = new_dashboard(
        UID, "opsintel · Trends & anomalies",
        "Ticket volume, backlog and resolution time per service, with the anomalies the detectors raised.",
        tags=["trends", "anomalies"], variables=[service_variable(), business_unit_variable()],
    )  # fmt: skip
    volume = timeseries_panel("Incidents opened", "Per service, per dashboard interval.", [ch(f"""
SELECT $__timeInterval(opened_at) AS time, service, count() AS opened FROM incident_impact FINAL
WHERE $__timeFilter(opened_at) AND {SERVICE_FILTER} GROUP BY time, service ORDER BY time""", series=True)])
    backlog = timeseries_panel("Backlog (open at end of day)", "Incidents still open at the end of each day.", [
        ch(f"""SELECT day AS time, service, open_incidents FROM backlog_daily
WHERE $__timeFilter(day) AND {SERVICE_FILTER} ORDER BY time""", series=True)])
    mttr = timeseries_panel("Time to resolve, mean vs p90 (business hours)", "Of incidents resolved per day.", [
        ch(f"""SELECT bucket AS time,
  avgIf(ttresolve_bh_mean_min, resolved > 0) / 60 AS mean_h, maxIf(ttresolve_bh_p90_min, resolved > 0) / 60 AS p90_h
FROM impact_daily WHERE $__timeFilter(bucket) AND {SERVICE_FILTER} GROUP BY time ORDER BY time""",
           series=True)], unit="h")
    bounces = timeseries_panel("Bounces and reopens", "Mean reassignments and reopens of incidents resolved "
                               "per day.", [ch(f"""
SELECT bucket AS time, avgIf(reassignments_mean, resolved > 0) AS bounces_mean, sum(reopens) AS reopens_total
FROM impact_daily WHERE $__timeFilter(bucket) AND {SERVICE_FILTER} GROUP BY time ORDER BY time""",
                                                   series=True)])
    anomaly_counts = timeseries_panel("Anomalies per day", "By kind: spike, drop, bypass.", [ch("""
SELECT toStartOfDay(interval_start) AS time, kind, count() AS anomalies FROM anomalies FINAL
WHERE $__timeFilter(interval_start) GROUP BY time, kind ORDER BY time""", series=True)], bars=True)
    anomalies = table_panel("Anomalies", "Newest first: what was observed, what the baseline expected, the "
                            "normal band and the score.", ch("""
SELECT interval_start, service, metric, kind, direction, round(observed, 2) AS observed_value,
  round(expected, 2) AS expected_value, round(lower, 2) AS band_low, round(upper, 2) AS band_high,
  round(score, 3) AS anomaly_score,
  detector
FROM anomalies FINAL WHERE $__timeFilter(interval_start) ORDER BY interval_start DESC, service LIMIT 500"""))
    return layout(board, [
        [(volume, 12, 8), (backlog, 12, 8)], [(mttr, 12, 8), (bounces, 12, 8)],
        [(anomaly_counts, 24, 7)], [(anomalies, 24, 10)],
    ])  # fmt: skip
