"""``opsintel eval volume``: per-service hourly ticket volumes and the hours the trend detector flags.

No labels exist for ticket volumes; the listing is for a person to read. Example::

    opsintel eval volume --events ../shared/data/servicenow/incident_event_log.csv.gz
"""

from __future__ import annotations

import argparse
from functools import partial
from pathlib import Path

from opsintel.cli import CommandError


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("volume", help="flag anomalous hours in per-service created-ticket volumes")
    p.add_argument("--events", required=True, type=Path, help="ticket event log (plain or .gz)")
    p.add_argument("--format", default="servicenow-csv", help="adapter format of --events")
    p.add_argument("--tz", default="UTC", help="IANA zone of zone-less source timestamps")
    p.add_argument("--min-tickets", type=int, default=100,
                   help="skip services with fewer created tickets in the whole log")
    p.add_argument("--detector", choices=("recordBreak", "seasonal"), default="recordBreak",
                   help="trend detector (default: recordBreak, the pipeline's)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from detectors import SPARSE_COUNTS, RecordBreakDetector, SeasonalAnomalyDetector
    from opsintel.evaluation.volume import created_tickets, flag_volumes, format_anomalies, hourly_volumes
    from streams.adapters import Rejected, read_events

    if not args.events.exists():
        raise CommandError(f"no such file: {args.events}")
    try:
        events = [e for e in read_events(args.format, args.events, tz=args.tz) if not isinstance(e, Rejected)]
    except (ValueError, OSError) as e:
        raise CommandError(f"cannot read {args.events} as {args.format}: {e}") from e
    series = hourly_volumes(created_tickets(events))
    # the worker's trend monitor scores its count series with these parameters
    make = partial(RecordBreakDetector, **SPARSE_COUNTS) if args.detector == "recordBreak" else SeasonalAnomalyDetector
    found = flag_volumes(series, make, min_tickets=args.min_tickets)
    kept = {s for s, (_, x) in series.items() if x.sum() >= args.min_tickets}
    hours = len(next(iter(series.values()))[0]) if series else 0
    print(f"{args.detector}: {len(found)} anomalous hours in {len(kept)} services "
          f"(of {len(series)}; >= {args.min_tickets} created tickets), {hours} hours each")
    print(format_anomalies(found))
    return 0
