"""The ClickHouse store: schema creation, batched columnar inserts, and parameterised reads.

One class serves the embedded engine (``chdb:///dir``) and a ClickHouse server (``http(s)://``):
clickhouse-connect picks the backend from the DSN, and the SQL is the same.

The client is synchronous (chDB has no async client) and chDB allows one process per data
folder; the worker therefore owns one :class:`ClickHouseStore` and calls it from a single
executor thread, and other processes read through the worker's HTTP API while it runs.
"""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from math import floor
from typing import Any

from opsintel.events import ChangeEvent, MonitoringEvent, TicketEvent
from sinks.clickhouse.analytics_store import AnalyticsWrites, LinkLedger, _columns
from sinks.clickhouse.native import ROW_TYPES, Encoding, NativeEncoder
from sinks.clickhouse.schema import TABLES_BY_NAME, Table, create_statements, quote_identifier
from sinks.deadletter import DeadLetter
from sinks.exceptions import SchemaError, SinkError, SinkRejected, SinkUnavailable

log = logging.getLogger(__name__)


#: Every table is a ``ReplacingMergeTree`` read with ``FINAL``. ``optimize_on_insert`` (on by
#: default) would also fold rows with the same key *within* an inserted batch before writing it;
#: FINAL and the background merges fold them all the same, as they already do across batches
#: (a replayed batch), so the pass only costs time: 30-40 % of chDB's share of an insert.
_INSERT_SETTINGS = {"optimize_on_insert": 0}

#: ClickHouse error codes that mean "this data cannot go into these columns" (a poison record,
#: isolated by the writer), not "try again later": CANNOT_PARSE_TEXT, CANNOT_PARSE_QUOTED_STRING,
#: CANNOT_PARSE_INPUT_ASSERTION_FAILED, CANNOT_READ_ALL_DATA, CANNOT_PARSE_DATE,
#: CANNOT_PARSE_DATETIME, TYPE_MISMATCH, ARGUMENT_OUT_OF_BOUND, CANNOT_CONVERT_TYPE,
#: CANNOT_PARSE_NUMBER, INCORRECT_DATA, TOO_LARGE_STRING_SIZE, VALUE_IS_OUT_OF_RANGE_OF_DATA_TYPE,
#: CANNOT_INSERT_NULL_IN_ORDINARY_COLUMN, CANNOT_PARSE_BOOL
_DATA_ERROR_CODES = frozenset({6, 26, 27, 33, 38, 41, 53, 69, 70, 72, 117, 131, 321, 349, 467})


class StoreLocked(SinkUnavailable):
    """The embedded store's folder is in use by another process (usually a running worker)."""


class ClickHouseStore(AnalyticsWrites):
    """Writes and reads the opsintel tables through clickhouse-connect.

    Parameters
    ----------
    dsn:
        ``chdb:///path`` for the embedded engine, ``http(s)://user@host:port`` for a server.
    database:
        Database holding the tables; created by :meth:`migrate`.
    password:
        Server password (kept out of the DSN so it never appears in logs).
    cluster:
        When set, :meth:`migrate` creates replicated tables ``ON CLUSTER``.
    """

    def __init__(self, dsn: str, database: str = "opsintel", *, password: str = "", cluster: str = "",
                 encoder: NativeEncoder | None = None) -> None:
        self.dsn = dsn
        self.database = database
        self.cluster = cluster
        self._password = password
        self._client: Any = None
        self._lock = threading.Lock()
        #: encodes batches of typed rows in a child process (the worker's); None: in this thread
        self.encoder = encoder
        self._links = LinkLedger()

    @classmethod
    def from_settings(cls, settings: Any, encoder: NativeEncoder | None = None) -> ClickHouseStore:
        return cls(
            settings.effective_clickhouse_dsn,
            settings.clickhouse_database,
            password=settings.clickhouse_password.get_secret_value(),
            cluster=settings.clickhouse_cluster,
            encoder=encoder,
        )

    def __repr__(self) -> str:
        from opsintel.settings import redact_dsn

        return f"ClickHouseStore({redact_dsn(self.dsn)!r}, database={self.database!r})"

    # --- connection ------------------------------------------------------------------------------
    @property
    def is_embedded(self) -> bool:
        return self.dsn.startswith("chdb:")

    def client(self) -> Any:
        if self._client is None:
            import clickhouse_connect

            if self.is_embedded:
                path = self.dsn[len("chdb://") :] or "memory"
                if path != "memory":
                    from pathlib import Path

                    Path(path).mkdir(parents=True, exist_ok=True)
            _no_array_library_probes()
            try:
                kwargs: dict[str, Any] = {"dsn": self.dsn}
                if self._password and not self.is_embedded:
                    kwargs["password"] = self._password
                self._client = clickhouse_connect.get_client(**kwargs)
            except Exception as e:
                text = str(e)
                if "Cannot lock file" in text or ("lock" in text.lower() and self.is_embedded):
                    raise StoreLocked(
                        f"the embedded store {self.dsn} is in use by another process "
                        "(a running worker?); read through the worker instead",
                        retry_after=5.0,
                    ) from e
                raise SinkUnavailable(f"cannot connect to ClickHouse: {_clean(text, self._password)}") from e
        return self._client

    def close(self) -> None:
        if self.encoder is not None:
            self.encoder.close()
        if self._client is not None:
            try:
                self._client.close()
            finally:
                self._client = None

    # --- schema ----------------------------------------------------------------------------------
    def migrate(self) -> list[str]:
        """Create the database and all tables if missing. Idempotent; returns the statements run."""
        statements = create_statements(self.database, cluster=self.cluster)
        for statement in statements:
            self._command(statement)
        return statements

    # --- writes ----------------------------------------------------------------------------------
    def insert_ticket_events(self, events: Sequence[TicketEvent], partitions: Sequence[int],
                             offsets: Sequence[int]) -> int:
        """Insert raw ticket events (ClickHouse folds them into ``incidents``). Returns rows inserted."""
        self._insert_events(TABLES_BY_NAME["ticket_events"], events, partitions, offsets)
        return len(events)

    def insert_monitoring_events(self, events: Sequence[MonitoringEvent], partitions: Sequence[int],
                                 offsets: Sequence[int]) -> int:
        self._insert_events(TABLES_BY_NAME["monitoring_events"], events, partitions, offsets)
        return len(events)

    def insert_change_events(self, events: Sequence[ChangeEvent], partitions: Sequence[int],
                             offsets: Sequence[int]) -> int:
        self._insert_events(TABLES_BY_NAME["change_events"], events, partitions, offsets)
        return len(events)

    def insert_rows(self, table: str, rows: Sequence[Any]) -> int:
        """Insert rows (mappings or objects with the table's column names) into one of our tables."""
        return self._insert_rows(table, rows)

    def insert_dead_letters(self, letters: Sequence[DeadLetter]) -> int:
        if not letters:
            return 0
        table = TABLES_BY_NAME["dead_letters"]
        self._insert(table, _columns(letters, table.column_names))
        return len(letters)

    def _insert_events(self, table: Table, events: Sequence[Any], partitions: Sequence[int],
                       offsets: Sequence[int]) -> None:
        if not events:
            return
        self._insert_objects(table, events, (partitions, offsets))  # the columns end with the Kafka position

    def insert_encoded(self, table_name: str, encodings: Sequence[Encoding]) -> None:
        """Batches the encoder's child has encoded (:meth:`NativeEncoder.submit`), in one insert.
        Raises :class:`~sinks.clickhouse.native.EncodingFailed` if one could not be encoded."""
        self._insert_native(TABLES_BY_NAME[table_name], b"".join(e.result() for e in encodings))

    def _insert_objects(self, table: Table, rows: Sequence[Any], extra: Sequence[Sequence[Any]] = ()) -> None:
        """``rows`` (objects or mappings with ``table``'s column names), then the ``extra`` columns
        that end the table; encoded by :attr:`encoder` where it takes the table's rows."""
        if self.encoder is not None and table.name in ROW_TYPES:
            try:
                block = self.encoder.encode(table, rows, extra)
            except Exception as e:
                raise _classify(e, self._password) from e
            self._insert_native(table, block)
            return
        columns = _columns(rows, table.column_names[: len(table.column_names) - len(extra)])
        self._insert(table, columns + [list(c) for c in extra])

    def _insert_native(self, table: Table, block: bytes) -> None:
        """One batch already in ClickHouse's Native format (:func:`sinks.clickhouse.native.encode`)."""
        try:
            with self._lock:
                self.client().raw_insert(
                    f"{quote_identifier(self.database)}.{quote_identifier(table.name)}",
                    table.column_names,
                    insert_block=block,
                    fmt="Native",
                    settings=_INSERT_SETTINGS,
                )
        except SinkError:
            raise
        except Exception as e:
            raise _classify(e, self._password) from e

    def _insert(self, table: Table, columns: list[list[Any]]) -> None:
        """Send one batch, one list per column of ``table`` in its order.

        The column types come from our schema (clickhouse-connect would otherwise ask the server
        with a ``DESCRIBE`` before every insert), and ``DateTime64(3)`` columns go as integer
        milliseconds (:func:`_epoch_ms`)."""
        columns = _sendable(table, columns)
        try:
            with self._lock:
                self.client().insert(
                    table.name,
                    columns,
                    column_names=table.column_names,
                    database=self.database,
                    column_type_names=table.column_types,
                    column_oriented=True,
                    settings=_INSERT_SETTINGS,
                )
        except SinkError:
            raise
        except Exception as e:
            raise _classify(e, self._password) from e

    # --- reads -----------------------------------------------------------------------------------
    def query(self, sql: str, parameters: dict[str, Any] | None = None) -> list[tuple[Any, ...]]:
        """Run a read query with server-side parameters (``{name:Type}`` placeholders).

        ``{db}`` in ``sql`` is replaced by the quoted database name before sending; every value
        must go through ``parameters``.
        """
        sql = sql.replace("{db}", quote_identifier(self.database))
        try:
            with self._lock:
                result = self.client().query(sql, parameters=parameters or {})
        except SinkError:
            raise
        except Exception as e:
            raise _classify(e, self._password) from e
        # every timestamp we store is UTC; the client returns some (Nullable) ones naive: make all aware
        return [tuple(_utc(v) for v in r) for r in result.result_rows]

    def _command(self, sql: str, parameters: dict[str, Any] | None = None) -> None:
        sql = sql.replace("{db}", quote_identifier(self.database))
        try:
            with self._lock:
                self.client().command(sql, parameters=parameters)
        except SinkError:
            raise
        except Exception as e:
            raise _classify(e, self._password) from e

    def tracked_memory(self) -> int:
        """Bytes of memory ClickHouse tracks for itself (``MemoryTracking``: queries, inserts,
        merges, caches); with the embedded engine, its share of this process's memory."""
        rows = self.query("SELECT value FROM system.metrics WHERE metric = 'MemoryTracking'")
        return int(rows[0][0]) if rows else 0

    def table_counts(self, tables: Iterable[str] | None = None) -> dict[str, int]:
        """Exact row counts (``FINAL``: replayed duplicates are not counted)."""
        out = {}
        for name in tables or TABLES_BY_NAME:
            # the table name is one of ours and quoted as an identifier; no value is interpolated
            rows = self.query(f"SELECT count() FROM {{db}}.{quote_identifier(name)} FINAL")  # noqa: S608
            out[name] = int(rows[0][0])
        return out


def _no_array_library_probes() -> None:
    """Keep clickhouse-connect from importing pandas and numpy just to rule them out.

    Its ``insert`` checks the data against ``pandas.DataFrame`` and ``numpy.ndarray``, importing
    either for that on the first insert if nothing has yet: pandas costs 0.2-0.4 s of the
    worker's first flush and ~66 MB of RSS, numpy ~30 MB in the insert encoder's child
    (:mod:`sinks.clickhouse.native`). The store only ever inserts lists of columns, so the client
    is told there is no such library where nothing else has imported it (a process that has keeps
    clickhouse-connect's support for it).
    """
    import sys

    from clickhouse_connect.driver import options

    known = vars(options)
    if "pandas" not in sys.modules and "pd" not in known:
        options.pd = None
        options.pd_time_test = None
    if "numpy" not in sys.modules and "np" not in known:
        options.np = None


def _sendable(table: Table, columns: list[list[Any]]) -> list[list[Any]]:
    """``columns`` of ``table`` as :meth:`ClickHouseStore._insert` hands them to clickhouse-connect."""
    return [_epoch_ms(c) if _is_ms_time(t) else c for c, t in zip(columns, table.column_types, strict=True)]


def _is_ms_time(ch_type: str) -> bool:
    return ch_type.removeprefix("Nullable(").startswith(("DateTime64(3,", "DateTime64(3)"))


def _epoch_ms(values: list[Any]) -> list[Any]:
    """A ``DateTime64(3)`` column's datetimes as integer milliseconds since the epoch (None stays None).

    clickhouse-connect writes a DateTime64 column whose first non-null value is an ``int`` as
    ticks unchanged; given datetimes, it converts them itself, one method call per value — about
    1.5× the time of this comprehension. The arithmetic is the client's own
    (``DateTime64._datetime64_ticks``): whole seconds of ``timestamp()`` floored, plus the
    milliseconds of ``microsecond`` (a naive datetime is local time, as there), so the stored
    values do not change. A column of anything else (strings, ints) is left to the client.
    """
    first = next((v for v in values if v is not None), None)
    if type(first) is not datetime:  # pandas.Timestamp (a subclass) carries nanoseconds: the client's path
        return values
    # a batch repeats its times (every event of a ticket carries its opened_at): each distinct
    # instant is converted once, half the time of converting every value
    memo: dict[datetime, int] = {}
    out: list[Any] = []
    for v in values:
        if v is None:
            out.append(None)
            continue
        ms = memo.get(v)
        if ms is None:
            ms = memo[v] = floor(v.timestamp()) * 1000 + v.microsecond // 1000
        out.append(ms)
    return out


def _utc(value: Any) -> Any:
    if isinstance(value, datetime) and value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value


def _clean(text: str, secret: str) -> str:
    return text.replace(secret, "***") if secret else text


def _classify(e: Exception, secret: str) -> SinkError:
    """Map a clickhouse-connect / chDB failure to: schema missing, bad data, or retry later."""
    from clickhouse_connect.driver import exceptions as ch

    text = _clean(str(e), secret)
    if "UNKNOWN_TABLE" in text or "UNKNOWN_DATABASE" in text or "doesn't exist" in text:
        return SchemaError(f"ClickHouse schema missing (run `opsintel migrate`): {text[:500]}")
    if isinstance(e, ch.DataError | ValueError | TypeError | OverflowError | UnicodeError | KeyError):
        return SinkRejected(f"ClickHouse refused the data: {type(e).__name__}: {text[:500]}")
    code = re.search(r"\bCode: (\d+)\.", text)
    if code and int(code.group(1)) in _DATA_ERROR_CODES:  # the server (or chDB) could not read a value
        return SinkRejected(f"ClickHouse refused the data: {text[:500]}")
    return SinkUnavailable(f"ClickHouse write/read failed: {text[:500]}", retry_after=1.0)
