"""``opsintel summary``: what is in ClickHouse - rows, incidents by state, dead letters, top services."""

from __future__ import annotations

import argparse
import json
from typing import Any


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("summary", help="print a summary of what the pipeline stored")
    parser.add_argument("--json", action="store_true", help="print JSON")
    parser.set_defaults(func=run)


def fetch_summary() -> dict[str, Any]:
    """The summary from the running worker if there is one, else from the store directly."""
    from opsintel.cli._read import read
    from opsintel.settings import load_settings
    from sinks.clickhouse import queries

    return dict(read(load_settings(), "/api/summary", None, queries.summary))


def format_summary(data: dict[str, Any]) -> str:
    lines = ["Rows per table (exact, replays folded):"]
    lines += [f"  {name:<20} {n:>10,}" for name, n in data["rows"].items()]
    lines.append("Incidents by state:")
    lines += [f"  {r['state'] or '(empty)':<20} {r['incidents']:>10,}" for r in data["incidents_by_state"]]
    dead = data["dead_letters"]
    lines.append(f"Dead letters: {sum(r['count'] for r in dead):,}")
    lines += [f"  {r['topic']:<28} {r['reason']:<16} {r['count']:>8,}" for r in dead]
    lines.append("Top services by open incidents:")
    top = data["top_services_by_open_incidents"]
    lines += [f"  {r['service'] or '(none)':<20} {r['open']:>10,}" for r in top] or ["  (no open incidents)"]
    problems = data.get("problems_by_status", [])
    lines.append(f"Problem records: {sum(r['problems'] for r in problems):,}")
    lines += [f"  {r['kind']:<10} {r['status']:<12} {r['problems']:>8,}" for r in problems]
    anomalies = data.get("anomalies_by_kind", [])
    lines.append(f"Anomalies: {sum(r['anomalies'] for r in anomalies):,}")
    lines += [f"  {r['metric']:<20} {r['kind']:<8} {r['anomalies']:>8,}" for r in anomalies]
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    data = fetch_summary()
    print(json.dumps(data, indent=2, sort_keys=True) if args.json else format_summary(data))
    return 0
