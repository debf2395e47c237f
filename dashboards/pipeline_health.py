"""Pipeline health: the worker's Prometheus metrics (``streams/metrics.py``) - throughput, lag,
batch writes, failures, dead letters."""

from __future__ import annotations

from grafana_foundation_sdk.builders import dashboard as dash

from dashboards.common import PROMETHEUS, layout, new_dashboard, prom, prometheus_variable, timeseries_panel

UID = "opsintel-pipeline-health"


def _ts(title: str, description: str, expr: str, legend: str, unit: str = "short") -> object:
    return timeseries_panel(title, description, [prom(expr, legend)], unit=unit, datasource=PROMETHEUS)


def build() -> dash.Dashboard:
    board = new_dashboard(
        UID, "opsintel · Pipeline health",
        "The worker: messages consumed, rows written, lag, batch latency, retries and dead letters.",
        tags=["pipeline"], variables=[prometheus_variable()],
    )  # fmt: skip
    board = board.time("now-6h", "now").refresh("30s")
    panels = [
        _ts("Events consumed /s", "Kafka messages consumed, per topic.",
            "sum by (topic) (rate(opsintel_events_consumed_total[$__rate_interval]))", "{{topic}}", "ops"),
        _ts("Rows written /s", "ClickHouse rows written, per table.",
            "sum by (table) (rate(opsintel_rows_written_total[$__rate_interval]))", "{{table}}", "rowsps"),
        _ts("Consumer lag", "Messages not yet processed, per topic.",
            "sum by (topic) (opsintel_consumer_lag_messages)", "{{topic}}"),
        _ts("Flush latency p95", "Time to write one batch to ClickHouse, per table.",
            "histogram_quantile(0.95, sum by (le, table) "
            "(rate(opsintel_flush_duration_seconds_bucket[$__rate_interval])))",
            "{{table}}", "s"),
        _ts("Batch size p50", "Events per processed batch, per topic.",
            "histogram_quantile(0.5, sum by (le, topic) (rate(opsintel_batch_size_events_bucket[$__rate_interval])))",
            "{{topic}}"),
        _ts("Retried writes /s", "ClickHouse writes that failed and were retried, per table.",
            "sum by (table) (rate(opsintel_sink_failures_total[$__rate_interval]))", "{{table}}", "ops"),
        _ts("Dead letters /s", "Records sent to the dead-letter topic, per origin topic and reason.",
            "sum by (topic, reason) (rate(opsintel_events_dead_lettered_total[$__rate_interval]))",
            "{{topic}} {{reason}}", "ops"),
        _ts("Worker ready / webhook", "1 when the worker serves; Alertmanager webhook requests per status code.",
            "max(opsintel_worker_ready)", "ready"),
    ]
    # the process collector's metric, kept to the instances that are opsintel workers
    memory = _ts("Worker memory", "Resident memory of each worker process, and how much of it the embedded "
                 "ClickHouse engine (chDB) tracks (none with a ClickHouse server).",
                 "max by (instance) (process_resident_memory_bytes and on (instance) opsintel_worker_ready)",
                 "{{instance}} resident", "bytes")
    memory.with_target(prom("max by (instance) (opsintel_clickhouse_embedded_memory_bytes)",  # type: ignore[attr-defined]
                            "{{instance}} embedded ClickHouse", ref="B"))
    panels.insert(len(panels) - 1, memory)
    webhook = prom("sum by (code) (rate(opsintel_webhook_requests_total[$__rate_interval]))", "webhook {{code}}",
                   ref="B")
    panels[-1].with_target(webhook)  # type: ignore[attr-defined]
    rows = [[(p, 12, 8) for p in panels[i:i + 2]] for i in range(0, len(panels), 2)]
    return layout(board, rows)  # type: ignore[arg-type]
