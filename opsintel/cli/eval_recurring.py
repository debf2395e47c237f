"""``opsintel eval recurring``: replay incidents through the recurring-incident detector.

The events of ``--events`` (plus ``--changes`` / ``--alerts`` when given) are merged in time order
and fed to the same :class:`~detectors.RecurringIncidentDetector` the worker runs. Outputs:

* ``DIR/assignments.csv``: ``incident_id,problem_id,raised_at,linked_at`` for every incident
  linked to a raised problem (``linked_at`` = when the replay linked it; incidents grouped before
  the raise are linked at ``raised_at``);
* ``DIR/problems.jsonl``: the latest version of every raised problem record.

With ``--labels LABELS.csv`` (``incident_id,group_id``; an empty ``group_id`` = in no group) it
prints JSON metrics computed over the labelled incidents only:

* pairwise precision / recall / F1 over incident pairs (a predicted pair = two labelled
  incidents linked to the same problem; a true pair = two with the same ``group_id``);
* ``coverage``: share of label groups with >= 3 incidents of which one raised problem holds at
  least half;
* ``median_lead``: over the covered groups, the median number of the group's incidents opened
  after that problem was raised (``median_lead_share``: the same as a share of the group).
"""

from __future__ import annotations

import argparse
import csv
import json
import statistics
from collections import Counter, defaultdict
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from opsintel.cli import CommandError

INCIDENT_FORMATS = ("servicenow-csv", "bpic2014-incident")


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("recurring", help="replay incidents through the recurring-incident detector")
    p.add_argument("--format", required=True, choices=INCIDENT_FORMATS, help="format of --events")
    p.add_argument("--events", required=True, type=Path, help="incident events file (plain or .gz)")
    p.add_argument("--changes", type=Path, help="change records (bpic2014-change or jsonl)")
    p.add_argument("--changes-format", default="", help="default: bpic2014-change for BPI, else jsonl")
    p.add_argument("--alerts", type=Path, help="monitoring alerts (alertmanager JSON or jsonl)")
    p.add_argument("--alerts-format", default="alertmanager")
    p.add_argument("--labels", type=Path, help="incident_id,group_id CSV: print metrics against it")
    p.add_argument("--out", required=True, type=Path, help="output directory")
    p.add_argument("--tz", default="UTC", help="IANA zone of zone-less source timestamps")
    p.add_argument("--window-hours", type=float, default=168.0, help="sliding window (default one week)")
    p.add_argument("--threshold", type=float, default=0.7, help="similarity to join a group")
    p.add_argument("--min-count", type=int, default=3, help="incidents in window to raise")
    p.add_argument("--baseline-factor", type=float, default=2.0, help="x the expected count to raise")
    p.add_argument("--alpha", type=float, default=0.001, help="chance a raised burst may have (default 0.001)")
    p.add_argument(
        "--max-expected",
        type=float,
        default=10.0,
        help="signatures usually busier than this per window are never raised (default 10)",
    )
    p.add_argument(
        "--burst-hours",
        type=float,
        default=48.0,
        help="also raise a burst within this many hours (0 = off; default 48)",
    )
    p.add_argument("--burst-alpha", type=float, default=None, help="chance a short burst may have (default alpha / 10)")
    p.add_argument("--max-episode-links", type=int, default=25, help="incidents one episode links at most (default 25)")
    p.add_argument(
        "--warmup-hours",
        type=float,
        default=None,
        help="watch a signature this long before raising it (default two windows)",
    )
    p.add_argument("--emit-every", type=int, default=1000, help="collect record updates every N events")
    p.set_defaults(func=run)


def _read(fmt: str, path: Path, tz: str, kinds: tuple[type, ...]) -> tuple[list[Any], int]:
    from streams.adapters import Rejected, read_events

    if not path.exists():
        raise CommandError(f"no such file: {path}")
    events, rejected = [], 0
    try:
        for item in read_events(fmt, path, tz=tz):
            if isinstance(item, Rejected):
                rejected += 1
            elif isinstance(item, kinds):
                events.append(item)
    except (ValueError, OSError) as e:
        raise CommandError(f"cannot read {path} as {fmt}: {e}") from e
    return events, rejected


def read_labels(path: Path) -> dict[str, str]:
    """``incident_id -> group_id`` from a labels CSV (header ``incident_id,group_id``)."""
    if not path.exists():
        raise CommandError(f"no such labels file: {path}")
    with path.open(newline="") as f:
        reader = csv.DictReader(f)
        if not reader.fieldnames or not {"incident_id", "group_id"} <= set(reader.fieldnames):
            raise CommandError(f"{path}: expected a header with incident_id,group_id")
        return {row["incident_id"].strip(): (row["group_id"] or "").strip() for row in reader}


def run(args: argparse.Namespace) -> int:
    from detectors import RecurringIncidentDetector
    from opsintel.events import ChangeEvent, MonitoringEvent, TicketEvent
    from opsintel.problems import encode_problem

    events, rejected = _read(args.format, args.events, args.tz, (TicketEvent,))
    if not events:
        raise CommandError(f"{args.events}: no incident events could be read ({rejected} rejected)")
    if args.changes:
        fmt = args.changes_format or ("bpic2014-change" if args.format.startswith("bpic") else "jsonl")
        events += _read(fmt, args.changes, args.tz, (ChangeEvent,))[0]
    if args.alerts:
        events += _read(args.alerts_format, args.alerts, args.tz, (MonitoringEvent,))[0]
    events.sort(key=lambda e: (e.event_time, getattr(e, "version", 0)))
    try:
        det = RecurringIncidentDetector(
            window_hours=args.window_hours, similarity_threshold=args.threshold, min_count=args.min_count,
            baseline_factor=args.baseline_factor, alpha=args.alpha, max_expected=args.max_expected,
            warmup_hours=args.warmup_hours, burst_hours=args.burst_hours, burst_alpha=args.burst_alpha,
            max_episode_links=args.max_episode_links, record_links=True,
        )  # fmt: skip
    except ValueError as e:
        raise CommandError(str(e)) from e

    opened: dict[str, float] = {}
    latest: dict[str, Any] = {}
    assigned: dict[str, tuple[str, float]] = {}
    for i, ev in enumerate(events, 1):
        if isinstance(ev, TicketEvent) and ev.ticket_id not in opened:
            opened[ev.ticket_id] = (ev.opened_at or ev.event_time).timestamp()
        det.learn_one(ev)
        if i % args.emit_every == 0 or i == len(events):
            for rec in det.pop_updates():
                latest[rec.problem_id] = rec
            for incident, problem, at in det.pop_links():
                if problem:
                    assigned[incident] = (problem, at)
                else:
                    assigned.pop(incident, None)

    args.out.mkdir(parents=True, exist_ok=True)
    raised = {pid: rec.raised_at.timestamp() for pid, rec in latest.items()}
    with (args.out / "assignments.csv").open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["incident_id", "problem_id", "raised_at", "linked_at"])
        for incident, (problem, at) in sorted(assigned.items(), key=lambda kv: (kv[1][1], kv[0])):
            w.writerow([incident, problem, _iso(raised.get(problem, at)), _iso(at)])
    with (args.out / "problems.jsonl").open("wb") as fb:
        for rec in sorted(latest.values(), key=lambda r: (r.raised_at, r.problem_id)):
            fb.write(encode_problem(rec) + b"\n")

    result: dict[str, Any] = {
        "incidents": len(opened),
        "rejected_rows": rejected,
        "problems": len(latest),
        "linked_incidents": len(assigned),
        "out": str(args.out),
    }
    if args.labels:
        result.update(score({k: v[0] for k, v in assigned.items()}, raised, opened, read_labels(args.labels)))
    print(json.dumps(result, indent=2, sort_keys=True))
    return 0


def _iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, tz=UTC).isoformat()


def _pairs(n: int) -> int:
    return n * (n - 1) // 2


def score(
    assigned: dict[str, str], raised_at: dict[str, float], opened: dict[str, float], labels: dict[str, str]
) -> dict[str, Any]:
    """Metrics of an assignment (incident -> problem) against labels (incident -> group).

    >>> labels = {"a": "g1", "b": "g1", "c": "g1", "d": "g2", "e": ""}
    >>> assigned = {"a": "P", "b": "P", "c": "Q", "d": "Q"}
    >>> m = score(assigned, {"P": 1.0, "Q": 1.0}, dict.fromkeys("abcde", 2.0), labels)
    >>> m["pairwise_precision"], m["pairwise_recall"], m["coverage"], m["median_lead"]
    (0.5, 0.333, 1.0, 3.0)
    """
    universe = [i for i in labels if i]
    groups: dict[str, list[str]] = defaultdict(list)
    cells: Counter[tuple[str, str]] = Counter()
    predicted: Counter[str] = Counter()
    for i in universe:
        g, p = labels[i], assigned.get(i, "")
        if g:
            groups[g].append(i)
        if p:
            predicted[p] += 1
            if g:
                cells[(g, p)] += 1
    tp = sum(_pairs(n) for n in cells.values())
    pred_pairs = sum(_pairs(n) for n in predicted.values())
    true_pairs = sum(_pairs(len(v)) for v in groups.values())
    precision = tp / pred_pairs if pred_pairs else 0.0
    recall = tp / true_pairs if true_pairs else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    big = {g: members for g, members in groups.items() if len(members) >= 3}
    leads: list[int] = []
    shares: list[float] = []
    for members in big.values():
        per_problem = Counter(assigned[i] for i in members if assigned.get(i))
        if not per_problem:
            continue
        problem, n = per_problem.most_common(1)[0]
        if n * 2 < len(members):
            continue
        after = sum(1 for i in members if opened.get(i, 0.0) > raised_at.get(problem, float("inf")))
        leads.append(after)
        shares.append(after / len(members))
    return {
        "labelled_incidents": len(universe),
        "label_groups_ge3": len(big),
        "pairwise_precision": round(precision, 3),
        "pairwise_recall": round(recall, 3),
        "pairwise_f1": round(f1, 3),
        "coverage": round(len(leads) / len(big), 3) if big else 0.0,
        "covered_groups": len(leads),
        "median_lead": float(statistics.median(leads)) if leads else 0.0,
        "median_lead_share": round(statistics.median(shares), 3) if shares else 0.0,
    }
