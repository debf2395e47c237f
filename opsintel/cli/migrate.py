"""``opsintel migrate``: create the ClickHouse database and tables (idempotent)."""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("migrate", help="create the ClickHouse schema (idempotent)")
    parser.add_argument("--print", action="store_true", dest="print_only", help="print the DDL, run nothing")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from opsintel.settings import load_settings
    from sinks.clickhouse import ClickHouseStore, create_statements

    settings = load_settings()
    if args.print_only:
        for statement in create_statements(settings.clickhouse_database, cluster=settings.clickhouse_cluster):
            print(statement + ";\n")
        return 0
    store = ClickHouseStore.from_settings(settings)
    try:
        statements = store.migrate()
    finally:
        store.close()
    print(f"schema ready: {len(statements)} statements applied to {store!r}")
    return 0
