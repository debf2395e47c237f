"""Make labelled recurring-incident data for ``opsintel eval recurring --labels``.

Two development sets, because neither public log carries real problem links:

**BPI 2014** (``bpi``, the default when the first argument is a file). Label = the known error an
incident was resolved with on the CI it affected: incidents sharing ``KM number`` (the knowledge
article used) **and** ``CI Name (aff)`` get one ``group_id`` (``<CI>|<KM>``). Incidents without a
KM number are left out (unlabelled). A proxy for problem links, and a fair one for the detector
because it does not use the KM number for grouping (only for the "suggested knowledge" evidence)::

    .venv/bin/python bench/make_recurring_labels.py \\
        ../shared/data/bpic2014/Detail_Incident.csv.gz var/bpic_labels.csv

**ServiceNow with injected recurrences** (``servicenow``). Real ServiceNow problems link a handful
of incidents of one category / subcategory / symptom, often handled by one assignment group, over
days to weeks. So: ``--bursts`` recurrences are injected into the real log; each copies a randomly
drawn real incident's (the *seed*'s) category, subcategory, symptom and CI onto 3-15 new incidents
spread uniformly over 1-10 days. Every new incident clones the full lifecycle (all event rows,
shifted in time) of another random real incident (the *donor*), so priorities, reassignments and
resolution times stay realistic; it keeps the seed's assignment group with probability 0.7 (else
the donor's) and the seed's location with probability 0.5 (a cause is sometimes site-bound, often
not). Seeds are drawn uniformly over incidents, so busy signatures get bursts as often as they
get incidents: a burst inside an always-busy signature is meant to be hard. Labels: each burst is
one group; every real incident is listed with an empty group (a singleton), so linking real
incidents costs precision exactly as it would on the held-back log::

    .venv/bin/python bench/make_recurring_labels.py servicenow \\
        ../shared/data/servicenow/incident_event_log.csv.gz var/sn_inject.csv.gz var/sn_inject_labels.csv
"""

from __future__ import annotations

import argparse
import csv
import gzip
import io
import random
from collections import Counter, defaultdict
from datetime import datetime, timedelta
from pathlib import Path

MISSING = {"", "#N/B", "#MULTIVALUE"}
#: ServiceNow timestamp columns, shifted with the cloned incident
_TIME_COLUMNS = ("opened_at", "sys_created_at", "sys_updated_at", "resolved_at", "closed_at")


def _open_text(path: str) -> io.TextIOWrapper:
    raw = gzip.open(path, "rb") if path.endswith(".gz") else open(path, "rb")  # noqa: SIM115
    return io.TextIOWrapper(raw, encoding="utf-8", errors="replace", newline="")


def _write_labels(dst: str, labels: dict[str, str]) -> None:
    Path(dst).parent.mkdir(parents=True, exist_ok=True)
    with open(dst, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["incident_id", "group_id"])
        for incident, group in sorted(labels.items()):
            w.writerow([incident, group])
    sizes = Counter(g for g in labels.values() if g)
    print(
        f"{len(labels)} labelled incidents, {len(sizes)} groups, "
        f"{sum(1 for n in sizes.values() if n >= 3)} groups with >= 3 incidents -> {dst}"
    )


def bpi(src: str, dst: str) -> None:
    rows = csv.DictReader(_open_text(src), delimiter=";")
    labels: dict[str, str] = {}
    for row in rows:
        incident = (row.get("Incident ID") or "").strip()
        km = (row.get("KM number") or "").strip()
        ci = (row.get("CI Name (aff)") or "").strip()
        if incident and km not in MISSING and ci not in MISSING:
            labels[incident] = f"{ci}|{km}"
    _write_labels(dst, labels)


def _parse(ts: str) -> datetime | None:
    try:
        return datetime.strptime(ts, "%d/%m/%Y %H:%M")
    except ValueError:
        return None


def _fmt(t: datetime) -> str:
    return f"{t.day}/{t.month}/{t.year} {t.hour:02d}:{t.minute:02d}"  # the log's own day-first form


def servicenow(src: str, dst_events: str, dst_labels: str, *, bursts: int, seed: int) -> None:
    rng = random.Random(seed)
    with _open_text(src) as f:
        reader = csv.DictReader(f)
        header = list(reader.fieldnames or [])
        rows = list(reader)
    lifecycles: dict[str, list[dict[str, str]]] = defaultdict(list)
    for row in rows:
        lifecycles[row["number"]].append(row)
    opened = {n: _parse(life[0]["opened_at"]) for n, life in lifecycles.items()}
    real = sorted(n for n, t in opened.items() if t is not None)
    # bursts start where the log is dense (it holds ~3 months; a few stragglers run to 2017)
    times = sorted(t for t in opened.values() if t is not None)
    lo, hi = times[len(times) // 100], times[len(times) * 99 // 100]
    labels = dict.fromkeys(real, "")
    out_rows = list(rows)
    serial = 0
    for b in range(bursts):
        seed_row = lifecycles[rng.choice(real)][0]
        size, days = rng.randint(3, 15), rng.uniform(1.0, 10.0)
        start = lo + (hi - lo - timedelta(days=days)) * rng.random()
        for _ in range(size):
            donor_id = rng.choice(real)
            donor_open = opened[donor_id]
            assert donor_open is not None
            shift = start + timedelta(days=days * rng.random()) - donor_open
            serial += 1
            number = f"INC9{serial:06d}"
            group = seed_row["assignment_group"] if rng.random() < 0.7 else None
            location = seed_row["location"] if rng.random() < 0.5 else None
            for donor in lifecycles[donor_id]:
                row = dict(donor, number=number)
                for col in ("category", "subcategory", "u_symptom", "cmdb_ci"):
                    row[col] = seed_row[col]
                if group is not None:
                    row["assignment_group"] = group
                if location is not None:
                    row["location"] = location
                for col in _TIME_COLUMNS:
                    t = _parse(row.get(col, ""))
                    if t is not None:
                        row[col] = _fmt(t + shift)
                out_rows.append(row)
            labels[number] = f"burst{b:04d}"
    Path(dst_events).parent.mkdir(parents=True, exist_ok=True)
    with gzip.open(dst_events, "wt", newline="") as out:
        w = csv.DictWriter(out, fieldnames=header)
        w.writeheader()
        w.writerows(out_rows)
    print(f"{serial} incidents in {bursts} injected bursts (+{len(real)} real) -> {dst_events}")
    _write_labels(dst_labels, labels)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = ap.add_subparsers(dest="mode")
    p = sub.add_parser("bpi", help="labels from BPI 2014 (CI + KM number)")
    p.add_argument("src")
    p.add_argument("dst")
    p = sub.add_parser("servicenow", help="inject labelled recurrences into the ServiceNow log")
    p.add_argument("src")
    p.add_argument("dst_events", help="the log with injected incidents (.csv.gz)")
    p.add_argument("dst_labels")
    p.add_argument("--bursts", type=int, default=150, help="recurrences to inject (default 150, ~5%% of incidents)")
    p.add_argument("--seed", type=int, default=7)
    import sys

    args_list = list(sys.argv[1:] if argv is None else argv)
    if args_list and args_list[0] not in ("bpi", "servicenow", "-h", "--help"):
        args_list.insert(0, "bpi")  # the original two-argument form
    args = ap.parse_args(args_list)
    if args.mode == "servicenow":
        servicenow(args.src, args.dst_events, args.dst_labels, bursts=args.bursts, seed=args.seed)
    elif args.mode == "bpi":
        bpi(args.src, args.dst)
    else:
        ap.print_help()


if __name__ == "__main__":
    main()
