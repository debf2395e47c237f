"""A typed query for the ``grafana-clickhouse-datasource`` plugin (the SDK ships none).

The model follows the plugin's SQL-editor query (``src/types/sql.ts``: ``editorType: "sql"``,
``queryType``, ``rawSql``; the backend reads ``format``). :func:`register` teaches the SDK's
runtime to parse it back from dashboard JSON; :func:`expand_macros` does what the plugin's backend
does to ``$__timeFilter`` & co. (``pkg/macros/macros.go``), so tests can run every panel's SQL.

>>> q = ClickHouseQueryBuilder().ref_id("A").sql("SELECT 1").time_series().build()
>>> q.to_json()["queryType"], q.to_json()["format"]
('timeSeries', 0)
>>> ClickHouseQuery.from_json(q.to_json()).raw_sql
'SELECT 1'
"""

from __future__ import annotations

import re
import typing
from collections.abc import Mapping, Sequence
from datetime import datetime

from grafana_foundation_sdk.cog import builder as cogbuilder
from grafana_foundation_sdk.cog import runtime as cogruntime
from grafana_foundation_sdk.cog import variants as cogvariants
from grafana_foundation_sdk.models import dashboard

PLUGIN_ID = "grafana-clickhouse-datasource"
QueryType = typing.Literal["table", "timeSeries", "logs", "traces"]
#: the backend's result formats (grafana-plugin-sdk-go ``sqlutil.FormatQueryOption``)
FORMATS: dict[str, int] = {"timeSeries": 0, "table": 1, "logs": 2, "traces": 3}


class ClickHouseQuery(cogvariants.Dataquery):
    """One SQL query of a panel."""

    def __init__(self, ref_id: str = "", raw_sql: str = "", query_type: QueryType = "table",
                 datasource: dashboard.DataSourceRef | None = None, hide: bool | None = None) -> None:
        self.ref_id = ref_id
        self.raw_sql = raw_sql
        self.query_type: QueryType = query_type
        self.datasource = datasource
        self.hide = hide

    def to_json(self) -> dict[str, object]:
        payload: dict[str, object] = {
            "refId": self.ref_id, "editorType": "sql", "rawSql": self.raw_sql, "queryType": self.query_type,
            "format": FORMATS[self.query_type], "pluginVersion": "4.0.0",
        }  # fmt: skip
        if self.datasource is not None:
            payload["datasource"] = self.datasource.to_json()
        if self.hide is not None:
            payload["hide"] = self.hide
        return payload

    @classmethod
    def from_json(cls, data: dict[str, typing.Any]) -> ClickHouseQuery:
        ds = data.get("datasource")
        return cls(
            ref_id=data.get("refId", ""), raw_sql=data.get("rawSql", ""), query_type=data.get("queryType", "table"),
            datasource=dashboard.DataSourceRef.from_json(ds) if isinstance(ds, dict) else None,
            hide=data.get("hide"),
        )  # fmt: skip


class ClickHouseQueryBuilder(cogbuilder.Builder[ClickHouseQuery]):
    """Builder in the SDK's style: ``ClickHouseQueryBuilder().ref_id("A").sql("…").table()``."""

    def __init__(self) -> None:
        self._internal = ClickHouseQuery()

    def build(self) -> ClickHouseQuery:
        return self._internal

    def ref_id(self, ref_id: str) -> typing.Self:
        self._internal.ref_id = ref_id
        return self

    def sql(self, raw_sql: str) -> typing.Self:
        self._internal.raw_sql = raw_sql
        return self

    def table(self) -> typing.Self:
        self._internal.query_type = "table"
        return self

    def time_series(self) -> typing.Self:
        self._internal.query_type = "timeSeries"
        return self

    def datasource(self, ref: dashboard.DataSourceRef) -> typing.Self:
        self._internal.datasource = ref
        return self


def variant_config() -> cogruntime.DataqueryConfig:
    return cogruntime.DataqueryConfig(identifier=PLUGIN_ID, from_json_hook=ClickHouseQuery.from_json)


def register() -> None:
    """Register the query type (and the SDK's own plugins) so dashboards parse back typed."""
    from grafana_foundation_sdk.cog.plugins import register_default_plugins

    register_default_plugins()
    cogruntime.Runtime().register_dataquery_variant(variant_config())


_MACRO = re.compile(r"\$__(timeFilter_ms|timeFilter|dateFilter|timeInterval_ms|timeInterval)\(([^()]*)\)")
_VAR = re.compile(r"\$\{(\w+)(?::(\w+))?\}|\$(\w+)")


def expand_macros(sql: str, *, start: datetime, end: datetime, interval_s: int = 3600,
                  variables: Mapping[str, Sequence[str]] | None = None) -> str:
    """``sql`` as the ClickHouse plugin sends it: macros expanded, ``${var:singlequote}`` filled.

    >>> from datetime import timezone
    >>> t0, t1 = datetime(2016, 1, 1, tzinfo=timezone.utc), datetime(2016, 1, 2, tzinfo=timezone.utc)
    >>> print(expand_macros("SELECT $__timeInterval(t) WHERE $__timeFilter(t) AND s IN (${service:singlequote})",
    ...                     start=t0, end=t1, variables={"service": ["a", "b"]}))
    SELECT toStartOfInterval(toDateTime(t), INTERVAL 3600 second)
    WHERE t >= toDateTime(1451606400) AND t <= toDateTime(1451692800) AND s IN ('a','b')
    """
    f, t = int(start.timestamp()), int(end.timestamp())
    fms, tms = int(start.timestamp() * 1000), int(end.timestamp() * 1000)

    def macro(m: re.Match[str]) -> str:
        name, col = m.group(1), m.group(2).strip()
        if name == "timeFilter":
            return f"{col} >= toDateTime({f}) AND {col} <= toDateTime({t})"
        if name == "timeFilter_ms":
            return f"{col} >= fromUnixTimestamp64Milli({fms}) AND {col} <= fromUnixTimestamp64Milli({tms})"
        if name == "dateFilter":
            return f"{col} >= toDate('{start:%Y-%m-%d}') AND {col} <= toDate('{end:%Y-%m-%d}')"
        if name == "timeInterval_ms":
            return f"toStartOfInterval(toDateTime64({col}, 3), INTERVAL {interval_s * 1000} millisecond)"
        return f"toStartOfInterval(toDateTime({col}), INTERVAL {interval_s} second)"

    out = _MACRO.sub(macro, sql)
    out = out.replace("$__fromTime_ms", f"fromUnixTimestamp64Milli({fms})").replace(
        "$__toTime_ms", f"fromUnixTimestamp64Milli({tms})")
    out = out.replace("$__fromTime", f"toDateTime({f})").replace("$__toTime", f"toDateTime({t})")
    out = out.replace("$__interval_s", str(interval_s))
    values = variables or {}

    def var(m: re.Match[str]) -> str:
        name = m.group(1) or m.group(3)
        if name not in values:
            return m.group(0)
        vals = list(values[name])
        if m.group(2) == "singlequote":
            return ",".join("'" + v.replace("\\", "\\\\").replace("'", "\\'") + "'" for v in vals)
        return ",".join(vals)

    return _VAR.sub(var, out)
