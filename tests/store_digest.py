"""Read what a stopped worker left in its embedded store, to compare two runs exactly.

chDB admits one data folder per process, so the tests run this module as a child process::

    python -m tests.store_digest digest <folder> <database>          # JSON digest on stdout
    python -m tests.store_digest dump <folder> <database> <out-dir>   # every table, Native format
    python -m tests.store_digest merge <folder> <database> <dump-dir>…  # load dumps, then digest

A digest covers every table and view in the database, found at run time in ``system.tables``
(so tables added later are covered without touching the tests):

* a table: its row count and the wrapping sum of ``cityHash64`` over each row's columns, read
  with ``FINAL`` - exact equality of content, independent of insert order and replays;
* a view (the rollups): its rows, sorted, with floats rounded to 9 significant digits, because
  ClickHouse sums floats in whatever order its threads meet the rows.

:data:`VOLATILE` names what legitimately differs between two runs of the same input.
"""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path
from typing import Any

#: columns that record *when* this run did something, not what the data is
VOLATILE: dict[str, set[str]] = {
    "dead_letters": {"received_at"},  # wall-clock time the worker first saw the bad record
}
#: tables that are the worker's own bookkeeping, not results: detector checkpoints carry a
#: wall-clock version and a snapshot taken wherever a batch happened to end
INTERNAL = {"detector_state"}


def _store(folder: str, database: str) -> Any:
    from sinks.clickhouse import ClickHouseStore

    return ClickHouseStore(f"chdb://{folder}", database)


def _normal(value: Any) -> Any:
    if isinstance(value, float):
        return None if math.isnan(value) else float(f"{value:.9g}")
    if isinstance(value, dict):
        return sorted((k, _normal(v)) for k, v in value.items())
    if isinstance(value, list | tuple):
        return [_normal(v) for v in value]
    return value if isinstance(value, int | str | bool) or value is None else str(value)


def digest(folder: str, database: str) -> dict[str, Any]:
    from sinks.clickhouse import quote_identifier

    store = _store(folder, database)
    out: dict[str, Any] = {}
    objects = store.query("SELECT name, engine FROM system.tables WHERE database = {d:String} ORDER BY name",
                          {"d": database})
    for name, engine in objects:
        if name in INTERNAL or engine == "MaterializedView":
            continue  # a materialized view's rows are its target table's, digested as that table
        columns = [c for (c,) in store.query(
            "SELECT name FROM system.columns WHERE database = {d:String} AND table = {t:String} ORDER BY position",
            {"d": database, "t": name}) if c not in VOLATILE.get(name, set())]
        table = f"{{db}}.{quote_identifier(name)}"
        if engine == "View":
            rows = store.query(f"SELECT * FROM {table}")
            out[name] = sorted(json.dumps(_normal(list(r)), default=str) for r in rows)
            continue
        final = " FINAL" if "MergeTree" in engine else ""
        row = ", ".join(quote_identifier(c) for c in columns)
        per_column = ", ".join(f"sum(cityHash64({quote_identifier(c)}))" for c in columns)
        count, checksum, *sums = store.query(
            f"SELECT count(), sum(cityHash64(tuple({row}))), {per_column} FROM {table}{final}"
        )[0]
        # the per-column sums only say *which* columns differ when two digests do not match
        out[name] = [int(count), str(checksum), {c: str(v) for c, v in zip(columns, sums, strict=True)}]
    store.close()
    return out


def dump(folder: str, database: str, target: str) -> None:
    from sinks.clickhouse import TABLES, quote_identifier

    store = _store(folder, database)
    Path(target).mkdir(parents=True, exist_ok=True)
    for table in TABLES:
        sql = f"SELECT * FROM {quote_identifier(database)}.{quote_identifier(table.name)}"
        (Path(target) / f"{table.name}.native").write_bytes(store.client().raw_query(sql, fmt="Native"))
    store.close()


def merge(folder: str, database: str, sources: list[str]) -> dict[str, Any]:
    """Load several stores' rows into one fresh store: what one shared server would hold."""
    from sinks.clickhouse import TABLES, quote_identifier

    store = _store(folder, database)
    store.migrate()
    for source in sources:
        for table in TABLES:
            data = (Path(source) / f"{table.name}.native").read_bytes()
            if data:
                store.client().raw_insert(f"{quote_identifier(database)}.{quote_identifier(table.name)}",
                                          insert_block=data, fmt="Native")
    store.close()
    return digest(folder, database)


def main(argv: list[str]) -> None:
    command, folder, database, *rest = argv
    if command == "digest":
        print(json.dumps(digest(folder, database)))
    elif command == "dump":
        dump(folder, database, rest[0])
    elif command == "merge":
        print(json.dumps(merge(folder, database, rest)))
    else:
        raise SystemExit(f"unknown command {command!r}")


if __name__ == "__main__":
    main(sys.argv[1:])
