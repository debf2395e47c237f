"""ClickHouse schema: the tables, their engines, and why.

Every table the worker writes is idempotent under replay, because the worker commits Kafka
offsets only after a successful insert, and a crash between insert and commit replays the batch:

* raw event tables (``ticket_events``, ``monitoring_events``, ``change_events``) are
  ``ReplacingMergeTree`` ordered by the deterministic ``event_id`` - a replayed event folds into
  the row it already wrote. Readers that need exact counts use ``FINAL``.
* ``incidents`` is the current state of each ticket: ``ReplacingMergeTree(version)`` ordered by
  ``(source, ticket_id)`` - the row with the highest lifecycle version wins, whatever order the
  events arrive in. ClickHouse fills it: the materialized view ``incidents_from_events`` copies
  every row inserted into ``ticket_events`` (its ``event_id`` as ``last_event_id``), so the worker
  writes each ticket event once, and the merges and ``FINAL`` keep the newest version per ticket.
* ``dead_letters`` is keyed by the dead letter's deterministic id (origin topic/partition/offset
  or input file/line), so a re-sent dead letter is counted once.

Column lists live here once (``TICKET_COLUMNS`` …); the writer builds its inserts from them, so
DDL and inserts cannot drift apart.

With ``cluster`` set, DDL runs ``ON CLUSTER`` with ``Replicated*`` engines and a ``Distributed``
table in front of each local table (``<name>_local`` holds the data).

>>> ddl = create_statements("opsintel")
>>> any("ReplacingMergeTree(version)" in s and "`opsintel`.`incidents`" in s for s in ddl)
True
>>> "ON CLUSTER" in " ".join(create_statements("opsintel", cluster="prod"))
True
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from sinks.clickhouse.analytics_schema import analytics_tables, view_statements

Column = tuple[str, str]

#: columns taken from :class:`opsintel.events.TicketEvent`, in insert order
TICKET_COLUMNS: tuple[Column, ...] = (
    ("event_id", "String"),
    ("source", "LowCardinality(String)"),
    ("ticket_id", "String"),
    ("kind", "LowCardinality(String)"),
    ("version", "UInt64"),
    ("event_time", "DateTime64(3, 'UTC')"),
    ("state", "LowCardinality(String)"),
    ("active", "Nullable(Bool)"),
    ("opened_at", "Nullable(DateTime64(3, 'UTC'))"),
    ("resolved_at", "Nullable(DateTime64(3, 'UTC'))"),
    ("closed_at", "Nullable(DateTime64(3, 'UTC'))"),
    ("reopened_at", "Nullable(DateTime64(3, 'UTC'))"),
    ("service", "LowCardinality(String)"),
    ("ci", "String"),
    ("ci_type", "LowCardinality(String)"),
    ("category", "LowCardinality(String)"),
    ("subcategory", "LowCardinality(String)"),
    ("symptom", "LowCardinality(String)"),
    ("description", "String"),
    ("priority", "LowCardinality(String)"),
    ("impact", "LowCardinality(String)"),
    ("urgency", "LowCardinality(String)"),
    ("assignment_group", "LowCardinality(String)"),
    ("assigned_to", "String"),
    ("channel", "LowCardinality(String)"),
    ("location", "LowCardinality(String)"),
    ("caller", "String"),
    ("knowledge_used", "Nullable(Bool)"),
    ("knowledge_article", "String"),
    ("related_change", "String"),
    ("related_incident", "String"),
    ("caused_by_ci", "String"),
    ("reassignment_count", "Nullable(UInt32)"),
    ("reopen_count", "Nullable(UInt32)"),
    ("sla_made", "Nullable(Bool)"),
    ("closure_code", "LowCardinality(String)"),
    ("handle_time_hours", "Nullable(Float64)"),
)

MONITORING_COLUMNS: tuple[Column, ...] = (
    ("event_id", "String"),
    ("source", "LowCardinality(String)"),
    ("event_time", "DateTime64(3, 'UTC')"),
    ("status", "LowCardinality(String)"),
    ("fingerprint", "String"),
    ("name", "LowCardinality(String)"),
    ("starts_at", "DateTime64(3, 'UTC')"),
    ("ends_at", "Nullable(DateTime64(3, 'UTC'))"),
    ("service", "LowCardinality(String)"),
    ("ci", "String"),
    ("severity", "LowCardinality(String)"),
    ("summary", "String"),
    ("generator_url", "String"),
    ("labels", "Map(String, String)"),
    ("annotations", "Map(String, String)"),
)

CHANGE_COLUMNS: tuple[Column, ...] = (
    ("event_id", "String"),
    ("source", "LowCardinality(String)"),
    ("event_time", "DateTime64(3, 'UTC')"),
    ("change_id", "String"),
    ("ci", "String"),
    ("ci_type", "LowCardinality(String)"),
    ("service", "LowCardinality(String)"),
    ("change_type", "LowCardinality(String)"),
    ("risk", "LowCardinality(String)"),
    ("emergency", "Nullable(Bool)"),
    ("cab_required", "Nullable(Bool)"),
    ("planned_start", "Nullable(DateTime64(3, 'UTC'))"),
    ("planned_end", "Nullable(DateTime64(3, 'UTC'))"),
    ("actual_start", "Nullable(DateTime64(3, 'UTC'))"),
    ("actual_end", "Nullable(DateTime64(3, 'UTC'))"),
    ("downtime_start", "Nullable(DateTime64(3, 'UTC'))"),
    ("downtime_end", "Nullable(DateTime64(3, 'UTC'))"),
    ("opened_at", "Nullable(DateTime64(3, 'UTC'))"),
    ("closed_at", "Nullable(DateTime64(3, 'UTC'))"),
    ("origin", "LowCardinality(String)"),
)

#: where an event came from in Kafka; written next to each raw event for traceability
KAFKA_COLUMNS: tuple[Column, ...] = (
    ("kafka_partition", "UInt16"),
    ("kafka_offset", "UInt64"),
)

#: ``incidents`` keeps every ticket attribute of the latest event plus the lifecycle summary
INCIDENT_COLUMNS: tuple[Column, ...] = (
    *(c for c in TICKET_COLUMNS if c[0] != "event_id"),
    ("last_event_id", "String"),
)

#: fills ``incidents`` from ``ticket_events`` (:func:`_incidents_view`)
INCIDENTS_VIEW = "incidents_from_events"

DEAD_LETTER_COLUMNS: tuple[Column, ...] = (
    ("dead_letter_id", "String"),
    ("received_at", "DateTime64(3, 'UTC')"),
    ("origin", "String"),
    ("origin_topic", "LowCardinality(String)"),
    ("reason_code", "LowCardinality(String)"),
    ("reason", "String"),
    ("payload", "String"),
    ("payload_bytes", "UInt64"),
)


#: one detector's state for one stream partition: restored on (re)assignment, so a restart or a
#: rebalance continues where the last committed batch left off (``positions``: topic -> next offset)
DETECTOR_STATE_COLUMNS: tuple[Column, ...] = (
    ("detector", "LowCardinality(String)"),
    ("partition", "UInt16"),
    ("version", "UInt64"),
    ("positions", "Map(String, UInt64)"),
    ("state", "String"),
    ("written_at", "DateTime64(3, 'UTC')"),
)


@dataclass(frozen=True)
class Table:
    name: str
    columns: tuple[Column, ...]
    engine: str  #: engine of a single-node table; "Replicated" is prefixed on a cluster
    order_by: str
    partition_by: str = ""
    comment: str = ""
    #: Distributed sharding expression: the row identity, so a replayed row lands on the shard
    #: holding its first copy and ReplacingMergeTree can fold it
    shard_key: str = "rand()"

    @property
    def column_names(self) -> list[str]:
        return [c[0] for c in self.columns]

    @property
    def column_types(self) -> list[str]:
        return [c[1] for c in self.columns]


_CORE_TABLES: tuple[Table, ...] = (
    Table(
        "ticket_events",
        TICKET_COLUMNS + KAFKA_COLUMNS,
        "ReplacingMergeTree",
        "(source, ticket_id, event_id)",
        "toYYYYMM(event_time)",
        "Raw ticket lifecycle events; a replayed event folds into its first copy (read with FINAL).",
        "cityHash64(ticket_id)",
    ),
    Table(
        "incidents",
        INCIDENT_COLUMNS,
        "ReplacingMergeTree(version)",
        "(source, ticket_id)",
        comment="Current state of each ticket: the highest lifecycle version wins.",
        shard_key="cityHash64(ticket_id)",
    ),
    Table(
        "monitoring_events",
        MONITORING_COLUMNS + KAFKA_COLUMNS,
        "ReplacingMergeTree",
        "(fingerprint, event_id)",
        "toYYYYMM(event_time)",
        "Alerts firing and resolving.",
        "cityHash64(fingerprint)",
    ),
    Table(
        "change_events",
        CHANGE_COLUMNS + KAFKA_COLUMNS,
        "ReplacingMergeTree",
        "(change_id, event_id)",
        comment="Changes (RFCs) per configuration item.",
        shard_key="cityHash64(change_id)",
    ),
    Table(
        "dead_letters",
        DEAD_LETTER_COLUMNS,
        "ReplacingMergeTree",
        "(dead_letter_id)",
        comment="Records that could not be decoded or validated, with the reason and original bytes.",
        shard_key="cityHash64(dead_letter_id)",
    ),
    Table(
        "detector_state",
        DETECTOR_STATE_COLUMNS,
        "ReplacingMergeTree(version)",
        "(detector, partition)",
        comment="Snapshots of each stream partition's detector state with the offsets they include.",
        shard_key="cityHash64(detector, partition)",
    ),
)

TABLES: tuple[Table, ...] = (*_CORE_TABLES, *analytics_tables())  # incident_impact, problems, anomalies …
TABLES_BY_NAME = {t.name: t for t in TABLES}


def quote_identifier(name: str) -> str:
    """Quote a ClickHouse identifier (database, table or column name).

    >>> quote_identifier("opsintel")
    '`opsintel`'
    >>> quote_identifier("a`b")
    '`a\\\\`b`'
    """
    return "`" + name.replace("\\", "\\\\").replace("`", "\\`") + "`"


def _create_table(database: str, table: Table, cluster: str) -> list[str]:
    db = quote_identifier(database)
    on_cluster = f" ON CLUSTER {quote_identifier(cluster)}" if cluster else ""
    columns = ",\n  ".join(f"{quote_identifier(n)} {t}" for n, t in table.columns)
    local_name = f"{table.name}_local" if cluster else table.name
    engine = f"Replicated{table.engine}" if cluster else table.engine
    if cluster and "(" in engine:
        # Replicated engines take the ZooKeeper path and replica first, then the version column
        base, arg = engine.split("(", 1)
        engine = f"{base}('/clickhouse/tables/{{shard}}/{database}/{local_name}', '{{replica}}', {arg}"
    elif cluster:
        engine = f"{engine}('/clickhouse/tables/{{shard}}/{database}/{local_name}', '{{replica}}')"
    parts = [
        f"CREATE TABLE IF NOT EXISTS {db}.{quote_identifier(local_name)}{on_cluster} (\n  {columns}\n)",
        f"ENGINE = {engine}",
    ]
    if table.partition_by:
        parts.append(f"PARTITION BY {table.partition_by}")
    parts.append(f"ORDER BY {table.order_by}")
    if table.comment:
        parts.append("COMMENT '" + table.comment.replace("\\", "\\\\").replace("'", "\\'") + "'")
    statements = ["\n".join(parts)]
    if cluster:
        statements.append(
            f"CREATE TABLE IF NOT EXISTS {db}.{quote_identifier(table.name)}{on_cluster} "
            f"AS {db}.{quote_identifier(local_name)} "
            f"ENGINE = Distributed({quote_identifier(cluster)}, {db}, {quote_identifier(local_name)}, "
            f"{table.shard_key})"
        )
    return statements


def create_statements(database: str, *, cluster: str = "", tables: Sequence[Table] = TABLES) -> list[str]:
    """All DDL, in order, to create the database and every table (idempotent: ``IF NOT EXISTS``)."""
    on_cluster = f" ON CLUSTER {quote_identifier(cluster)}" if cluster else ""
    statements = [f"CREATE DATABASE IF NOT EXISTS {quote_identifier(database)}{on_cluster}"]
    for table in tables:
        statements.extend(_create_table(database, table, cluster))
    if tables is TABLES:
        statements.append(_incidents_view(database, cluster))
        # the rollup views over the analytics tables (sinks/clickhouse/analytics_schema.py)
        statements.extend(view_statements(database, cluster=cluster))
    return statements


def _incidents_view(database: str, cluster: str) -> str:
    """The materialized view that folds every inserted ticket event into ``incidents``.

    On a cluster it joins the local tables: ``ticket_events`` and ``incidents`` share the sharding
    key (``cityHash64(ticket_id)``), so a ticket's events and its ``incidents`` row live on one
    shard. ``IF NOT EXISTS`` keeps an existing view: a change to the ticket columns must drop it
    (``DROP VIEW incidents_from_events``) before ``opsintel migrate`` recreates it.
    """
    db = quote_identifier(database)
    on_cluster = f" ON CLUSTER {quote_identifier(cluster)}" if cluster else ""
    local = "_local" if cluster else ""
    select = ", ".join(quote_identifier(n) for n, _ in INCIDENT_COLUMNS if n != "last_event_id")
    return (
        f"CREATE MATERIALIZED VIEW IF NOT EXISTS {db}.{quote_identifier(INCIDENTS_VIEW)}{on_cluster} "
        f"TO {db}.{quote_identifier('incidents' + local)} AS\n"
        f"SELECT {select}, `event_id` AS `last_event_id` FROM {db}.{quote_identifier('ticket_events' + local)}"
    )
