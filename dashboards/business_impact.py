"""Business impact: IT metrics and business metrics side by side, per service.

Reads ``incident_impact`` (one row per incident, ``FINAL``) for totals over the time range (exact
means and p90s) and the ``impact_daily`` rollup for the trends. Formulas: ``docs/impact.md``.
"""



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
    text_panel,
    timeseries_panel,
)

UID = "opsintel-business-impact"
_IMPACT = f"FROM incident_impact FINAL WHERE $__timeFilter(opened_at) AND {SERVICE_FILTER}"
_DAILY = f"FROM impact_daily WHERE $__timeFilter(bucket) AND {SERVICE_FILTER}"


def build() -> dash.Dashboard:
    board = new_dashboard(
        UID, "opsintel · Business impact",
        "IT metrics (respond, resolve, SLA, bounces, reopens) next to business metrics (interruption, "
        "productivity loss, customer impact) per catalogue service.",
        tags=["business-impact"], variables=[service_variable(), business_unit_variable()],
    )  # fmt: skip
    intro = text_panel("How to read this", """
Left: what the desk measures. Right: what the business feels. Only when both move together is the service
getting better. *SLA met, resolution slow* counts tickets the source marks `made_sla` although the
resolution target of their priority was missed. Formulas and units: `docs/impact.md`.""")
    stats = [
        (stat_panel("Incidents opened", "Incidents opened in the range.", ch(f"SELECT count() {_IMPACT}")), 4, 4),
        (stat_panel("SLA response met (source)", "Share of incidents the source marks made_sla.",
                    ch(f"SELECT avgIf(toFloat64(sla_made), sla_made IS NOT NULL) {_IMPACT}"), unit="percentunit",
                    decimals=1), 4, 4),
        (stat_panel("SLA resolution met", "Share of resolved incidents within the resolution target of "
                    "their priority (business hours).",
                    ch(f"SELECT avgIf(toFloat64(sla_resolution_met), sla_resolution_met IS NOT NULL) {_IMPACT}"),
                    unit="percentunit", decimals=1), 4, 4),
        (stat_panel("SLA met, resolution slow", "made_sla = true, but resolved after the resolution target.",
                    ch(f"SELECT countIf(sla_met_resolution_slow) {_IMPACT}")), 4, 4),
        (stat_panel("Productivity loss", "Σ users affected × business hours interrupted × cost per user-hour.",
                    ch(f"SELECT sum(productivity_loss) {_IMPACT}"), unit="currencyEUR"), 4, 4),
        (stat_panel("Customer impact", "Σ customer-facing share × business hours × revenue per hour.",
                    ch(f"SELECT sum(customer_impact) {_IMPACT}"), unit="currencyEUR"), 4, 4),
    ]
    per_service = table_panel("IT metrics and business metrics per service", "One row per catalogue service; "
                              "IT layer on the left, business layer on the right.", ch(f"""
SELECT service, any(business_unit) AS unit, count() AS opened, countIf(is_open) AS still_open,
  round(avg(time_to_respond_min) / 60, 1) AS respond_mean_h,
  round(quantile(0.9)(time_to_resolve_min) / 60, 1) AS resolve_p90_h,
  round(avg(time_to_resolve_bh_min) / 60, 1) AS resolve_bh_mean_h,
  round(avgIf(toFloat64(sla_made), sla_made IS NOT NULL), 3) AS sla_made_share,
  round(avgIf(toFloat64(sla_resolution_met), sla_resolution_met IS NOT NULL), 3) AS sla_resolution_met_share,
  round(avg(reassignments), 2) AS bounces_mean, sum(reopens) AS reopens_total,
  round(avg(toFloat64(self_service)), 3) AS self_service_share,
  round(avgIf(toFloat64(knowledge_used), knowledge_used IS NOT NULL), 3) AS knowledge_share,
  round(sum(interruption_bh_min) / 60, 1) AS interruption_bh_h,
  round(sum(productivity_loss)) AS productivity_loss_eur, round(sum(customer_impact)) AS customer_impact_eur
{_IMPACT}
GROUP BY service ORDER BY productivity_loss_eur DESC"""))
    resolve_trend = timeseries_panel("Time to resolve p90 (h) — IT layer", "p90 of wall-clock time to resolve of "
                                     "incidents resolved per day.", [ch(f"""
SELECT bucket AS time, service, ttresolve_p90_min / 60 AS p90_hours {_DAILY} AND resolved > 0
ORDER BY time""", series=True)], unit="h")
    loss_trend = timeseries_panel("Productivity loss per day — business layer", "Σ productivity loss of incidents "
                                  "opened per day.", [ch(f"""
SELECT bucket AS time, service, productivity_loss {_DAILY} AND opened > 0 ORDER BY time""", series=True)],
                                  unit="currencyEUR", bars=True)
    gap = timeseries_panel("SLA gap: made_sla vs resolution met", "When the first line stays high and the second "
                           "drops, the SLA is measuring the desk, not the service.", [ch(f"""
SELECT bucket AS time, avgIf(sla_made_rate, sla_made_rate IS NOT NULL) AS made_sla,
  avgIf(sla_resolution_met_rate, sla_resolution_met_rate IS NOT NULL) AS resolution_met
{_DAILY} AND resolved > 0 GROUP BY time ORDER BY time""", series=True)], unit="percentunit")
    gap_tickets = table_panel("SLA met but resolution slow: the incidents", "Tickets marked made_sla although "
                              "resolved after the resolution target, slowest first.", ch(f"""
SELECT ticket_id, service, priority, round(time_to_resolve_bh_min / 60, 1) AS resolve_bh_h,
  round(sla_resolution_target_min / 60, 1) AS target_bh_h, reassignments, reopens,
  round(productivity_loss) AS productivity_loss_eur
{_IMPACT} AND sla_met_resolution_slow ORDER BY time_to_resolve_bh_min DESC LIMIT 50"""))
    volume = timeseries_panel("Volume vs bypass signal", "Tickets opened per day next to 'bypass' anomalies "
                              "(tickets dropped while monitoring alerts did not): fewer tickets is not always "
                              "better.", [
        ch(f"SELECT bucket AS time, sum(opened) AS tickets_opened {_DAILY} GROUP BY time ORDER BY time",
           series=True),
        ch("""SELECT toStartOfDay(interval_start) AS time, count() AS bypass_anomalies FROM anomalies FINAL
WHERE $__timeFilter(interval_start) AND kind = 'bypass' GROUP BY time ORDER BY time""", series=True, ref="B"),
    ])
    unmapped = stat_panel("Unmapped tickets", "Share of incidents no catalogue rule maps (default service).",
                          ch("SELECT avg(toFloat64(NOT mapped)) FROM incident_impact FINAL "
                             "WHERE $__timeFilter(opened_at)"), unit="percentunit", decimals=1)
    channel = stat_panel("Self-service share", "Share of incidents opened through a self-service channel.",
                         ch(f"SELECT avg(toFloat64(self_service)) {_IMPACT}"), unit="percentunit", decimals=1)
    return layout(board, [
        [(intro, 24, 3)], stats, [(per_service, 24, 9)],
        [(resolve_trend, 12, 8), (loss_trend, 12, 8)], [(gap, 12, 8), (gap_tickets, 12, 8)],
        [(volume, 16, 8), (unmapped, 4, 8), (channel, 4, 8)],
    ])  # fmt: skip
