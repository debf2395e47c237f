"""``opsintel problems``: the problem queue for a problem manager at a terminal.

``opsintel problems [--status S] [--service X]`` lists problem records with their why;
``opsintel problems show ID`` prints one with its incidents and evidence;
``opsintel problems confirm|reject|resolve|reopen ID``, ``merge ID --into ID2`` and
``split ID --incidents INC1,INC2`` publish the decision to the feedback topic, where the worker
that owns the problem's partition applies it (the message is keyed like the problem's tickets).
"""

from __future__ import annotations

import argparse
import json
from datetime import UTC, datetime
from typing import Any

DECISIONS = ("confirm", "reject", "resolve", "reopen", "merge", "split")


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("problems", help="list, show and decide on auto-raised problem records")
    parser.add_argument("--status", default="", help="only this status (candidate, open, confirmed, …)")
    parser.add_argument("--service", default="", help="only this service")
    parser.add_argument("--limit", type=int, default=50)
    parser.add_argument("--json", action="store_true", help="print JSON")
    parser.set_defaults(func=run_list)
    actions = parser.add_subparsers(dest="action", metavar="ACTION")
    show = actions.add_parser("show", help="one problem with its incidents and evidence")
    show.add_argument("problem_id")
    show.add_argument("--json", action="store_true")
    show.set_defaults(func=run_show)
    for name in DECISIONS:
        p = actions.add_parser(name, help=f"{name} a problem (published to the feedback topic)")
        p.add_argument("problem_id")
        p.add_argument("--by", default="", help="who decided")
        p.add_argument("--note", default="", help="why")
        if name == "merge":
            p.add_argument("--into", required=True, help="the surviving problem id")
        if name == "split":
            p.add_argument("--incidents", required=True, help="comma-separated incident ids to move out")
        p.set_defaults(func=run_decision, decision=name)


def _fetch_problem(problem_id: str) -> dict[str, Any]:
    from opsintel.cli import CommandError
    from opsintel.cli._read import NotFound, read
    from opsintel.settings import load_settings
    from sinks.clickhouse import queries

    try:
        row = read(load_settings(), f"/api/problems/{problem_id}", None,
                   lambda store: queries.problem(store, problem_id))
    except NotFound:
        row = None
    if not row:
        raise CommandError(f"no problem {problem_id!r}")
    return dict(row)


def run_list(args: argparse.Namespace) -> int:
    from opsintel.cli._read import read
    from opsintel.settings import load_settings
    from sinks.clickhouse import queries

    params = {"status": args.status, "service": args.service, "limit": args.limit}
    rows = read(load_settings(), "/api/problems", params, lambda store: queries.problems(store, **params))
    if args.json:
        print(json.dumps(rows, indent=2, sort_keys=True))
        return 0
    if not rows:
        print("no problem records")
    for r in rows:
        print(f"{r['problem_id']}  {r['status']:<9} v{r['version']:<3} {r['incident_count']:>4} incidents  "
              f"{r['service'] or '-'}  {r['title']}")
        why = [r["why_rule"]]
        if r.get("suspect_change"):
            why.append(f"suspect change {r['suspect_change']}")
        if r.get("monitoring_alert"):
            why.append(f"monitoring saw it first: {r['monitoring_alert']}")
        if r.get("suggested_article"):
            why.append(f"knowledge: {r['suggested_article']}")
        print("      why: " + "; ".join(w for w in why if w))
    return 0


def run_show(args: argparse.Namespace) -> int:
    row = _fetch_problem(args.problem_id)
    if args.json:
        print(json.dumps(row, indent=2, sort_keys=True))
        return 0
    incidents = row.pop("incidents", [])
    evidence = json.loads(row.pop("evidence_json", "{}") or "{}")
    for key in sorted(row):
        if row[key] not in ("", None, {}, []):
            print(f"{key:>26}: {row[key]}")
    print(f"{'evidence':>26}: {json.dumps(evidence, sort_keys=True)}")
    print(f"linked incidents ({len(incidents)}):")
    for inc in incidents:
        print(f"  {inc['ticket_id']}  {inc['state']:<12} {inc['priority']:<14} opened {inc['opened_at']}")
    return 0


def run_decision(args: argparse.Namespace) -> int:
    from kafka import KafkaProducer

    from opsintel.problems import Feedback, FeedbackAction, encode_feedback
    from opsintel.settings import load_settings
    from streams.ingest import ensure_topics

    row = _fetch_problem(args.problem_id)
    fb = Feedback(
        problem_id=args.problem_id, action=FeedbackAction(args.decision), into=getattr(args, "into", ""),
        incident_ids=[i.strip() for i in getattr(args, "incidents", "").split(",") if i.strip()],
        by=args.by, at=datetime.now(UTC), note=args.note,
    )
    settings = load_settings()
    ensure_topics(settings, ["feedback"])
    # keyed like the problem's tickets, so it reaches the partition (and worker) holding the group
    key = (row.get("service") or row.get("ci") or args.problem_id).encode()
    producer = KafkaProducer(**settings.kafka_client_options(), acks="all")
    try:
        producer.send(settings.topic("feedback"), key=key, value=encode_feedback(fb)).get(timeout=30)
    finally:
        producer.close()
    print(f"{args.decision} {args.problem_id}: published to {settings.topic('feedback')}")
    return 0
