"""Shared pieces of the opsintel dashboards: datasources, variables, pre-styled panels, layout.

One function per panel kind returns an SDK builder; the dashboard modules place them with
:func:`layout`. JSON is produced only by :func:`to_json` (``sort_keys=True, indent=2``) so the
output is deterministic and diffs cleanly.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from grafana_foundation_sdk.builders import dashboard as dash
from grafana_foundation_sdk.builders import prometheus, stat, table, text, timeseries
from grafana_foundation_sdk.cog import builder as cogbuilder
from grafana_foundation_sdk.cog.encoder import JSONEncoder
from grafana_foundation_sdk.models import dashboard as model
from grafana_foundation_sdk.models.common import TableCellHeight

from dashboards.clickhouse_query import PLUGIN_ID, ClickHouseQueryBuilder

CLICKHOUSE_UID = "opsintel-clickhouse"
PROMETHEUS_UID = "opsintel-prometheus"
CLICKHOUSE = model.DataSourceRef(type_val=PLUGIN_ID, uid=CLICKHOUSE_UID)
#: Prometheus panels use the ``prometheus`` datasource variable (compose provisions
#: ``opsintel-prometheus``; in Kubernetes it is whatever Prometheus Grafana already has)
PROMETHEUS = model.DataSourceRef(type_val="prometheus", uid="${prometheus}")

#: the dashboard-variable filter every ClickHouse panel over services applies
SERVICE_FILTER = "service IN (${service:singlequote}) AND business_unit IN (${business_unit:singlequote})"

Panel = cogbuilder.Builder[model.Panel]


def service_variable() -> dash.QueryVariable:
    return (
        dash.QueryVariable("service").label("Service").datasource(CLICKHOUSE)
        .query("SELECT DISTINCT service FROM incident_impact ORDER BY service")
        .multi(True).include_all(True).refresh(model.VariableRefresh.ON_DASHBOARD_LOAD)
        .current(model.VariableOption(selected=True, text=["All"], value=["$__all"]))
    )  # fmt: skip


def business_unit_variable() -> dash.QueryVariable:
    return (
        dash.QueryVariable("business_unit").label("Business unit").datasource(CLICKHOUSE)
        .query("SELECT DISTINCT business_unit FROM incident_impact ORDER BY business_unit")
        .multi(True).include_all(True).refresh(model.VariableRefresh.ON_DASHBOARD_LOAD)
        .current(model.VariableOption(selected=True, text=["All"], value=["$__all"]))
    )  # fmt: skip


def prometheus_variable() -> dash.DatasourceVariable:
    return (
        dash.DatasourceVariable("prometheus").label("Prometheus").type("prometheus")
        .current(model.VariableOption(selected=True, text="Prometheus", value=PROMETHEUS_UID))
    )  # fmt: skip


def ch(sql: str, *, series: bool = False, ref: str = "A") -> ClickHouseQueryBuilder:
    q = ClickHouseQueryBuilder().ref_id(ref).sql(sql.strip()).datasource(CLICKHOUSE)
    return q.time_series() if series else q.table()


def prom(expr: str, legend: str, ref: str = "A") -> prometheus.Dataquery:
    return prometheus.Dataquery().expr(expr).legend_format(legend).range().ref_id(ref).datasource(PROMETHEUS)


def timeseries_panel(title: str, description: str, queries: Sequence[cogbuilder.Builder[Any]], *,
                     unit: str = "short", datasource: model.DataSourceRef = CLICKHOUSE,
                     bars: bool = False) -> timeseries.Panel:
    from grafana_foundation_sdk.builders.common import VizLegendOptions, VizTooltipOptions
    from grafana_foundation_sdk.models.common import LegendDisplayMode, LegendPlacement, SortOrder, TooltipDisplayMode

    p = (timeseries.Panel().title(title).description(description).datasource(datasource).unit(unit)
         .line_width(1).fill_opacity(15).span(12).height(8)
         .legend(VizLegendOptions().show_legend(True).display_mode(LegendDisplayMode.LIST)
                 .placement(LegendPlacement.BOTTOM))
         .tooltip(VizTooltipOptions().mode(TooltipDisplayMode.MULTI).sort(SortOrder.DESCENDING)))
    if bars:
        from grafana_foundation_sdk.models.common import GraphDrawStyle

        p = p.draw_style(GraphDrawStyle.BARS).fill_opacity(60)
    for q in queries:
        p = p.with_target(q)
    return p


def stat_panel(title: str, description: str, query: cogbuilder.Builder[Any], *, unit: str = "short",
               decimals: int = 0) -> stat.Panel:
    from grafana_foundation_sdk.builders.common import ReduceDataOptions

    return (stat.Panel().title(title).description(description).datasource(CLICKHOUSE).unit(unit)
            .decimals(decimals).with_target(query).span(4).height(4)
            .reduce_options(ReduceDataOptions().calcs(["lastNotNull"]).values(False)))


def table_panel(title: str, description: str, query: cogbuilder.Builder[Any]) -> table.Panel:
    return (table.Panel().title(title).description(description).datasource(CLICKHOUSE).with_target(query)
            .show_header(True).cell_height(TableCellHeight.SM).span(24).height(9))


def text_panel(title: str, markdown: str) -> text.Panel:
    from grafana_foundation_sdk.models.text import TextMode

    return text.Panel().title(title).mode(TextMode.MARKDOWN).content(markdown.strip()).span(24).height(3)


def layout(board: dash.Dashboard, rows: Sequence[Sequence[tuple[Panel, int, int]]]) -> dash.Dashboard:
    """Place panels row by row: each item is ``(panel, width, height)`` on the 24-column grid.

    Panel ids follow placement order, so the JSON is stable.
    """
    y, pid = 0, 1
    for row in rows:
        x, tallest = 0, 0
        for panel, w, h in row:
            panel_builder: Any = panel
            panel_builder.id(pid).grid_pos(model.GridPos(h=h, w=w, x=x, y=y))
            board.with_panel(panel)
            x, tallest, pid = x + w, max(tallest, h), pid + 1
        y += tallest
    return board


def new_dashboard(uid: str, title: str, description: str, *, tags: Sequence[str] = (),
                  variables: Sequence[cogbuilder.Builder[model.VariableModel]] = ()) -> dash.Dashboard:
    board = (
        dash.Dashboard(title).uid(uid).description(description).tags(["opsintel", *tags])
        .timezone("utc").time("now-30d", "now").refresh("5m").readonly()
        .tooltip(model.DashboardCursorSync.CROSSHAIR)
    )  # fmt: skip
    for v in variables:
        board = board.with_variable(v)
    return board


def to_json(board: model.Dashboard) -> str:
    """Deterministic dashboard JSON (sorted keys, 2-space indent, trailing newline)."""
    return json.dumps(board, cls=JSONEncoder, sort_keys=True, indent=2) + "\n"


def clickhouse_queries(board: dict[str, Any]) -> list[tuple[str, str]]:
    """``(panel title, rawSql)`` of every ClickHouse query in a dashboard's JSON, variables included."""
    out = []
    for panel in board.get("panels", []):
        for target in panel.get("targets") or []:
            if (target.get("datasource") or {}).get("type") == PLUGIN_ID:
                out.append((panel.get("title", ""), target["rawSql"]))
    for var in (board.get("templating") or {}).get("list", []):
        if (var.get("datasource") or {}).get("type") == PLUGIN_ID and isinstance(var.get("query"), str):
            out.append((f"variable {var['name']}", var["query"]))
    return out
