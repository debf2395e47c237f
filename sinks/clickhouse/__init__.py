"""ClickHouse: the schema (:mod:`sinks.clickhouse.schema`) and the store that writes and reads it."""

from sinks.clickhouse.schema import TABLES, TABLES_BY_NAME, Table, create_statements, quote_identifier
from sinks.clickhouse.store import ClickHouseStore, StoreLocked

__all__ = [
    "TABLES",
    "TABLES_BY_NAME",
    "ClickHouseStore",
    "StoreLocked",
    "Table",
    "create_statements",
    "quote_identifier",
]
