"""``opsintel dashboards``: write the Grafana dashboards (and provisioning files), or push them."""

from __future__ import annotations

import argparse
import os
from pathlib import Path


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("dashboards", help="write the Grafana dashboards as JSON (and provisioning), or push them")
    parser.add_argument("--out", type=Path, help="folder to write the dashboards to (e.g. var/dashboards)")
    parser.add_argument("--no-provisioning", action="store_true",
                        help="write only the dashboard JSON (e.g. for helm/opsintel/dashboards)")
    parser.add_argument("--push", metavar="URL", help="POST the dashboards to this Grafana (http://host:3000)")
    parser.add_argument("--folder-uid", default="", help="Grafana folder uid for --push")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from opsintel.cli import CommandError

    if not args.out and not args.push:
        raise CommandError("give --out DIR and/or --push URL")
    if args.out:
        from dashboards import write_all

        written = write_all(args.out, provisioning=not args.no_provisioning)
        print(f"dashboards: {len(written)} files written to {args.out}")
        for path in written:
            print(f"  {path}")
    if args.push:
        from dashboards import push

        # credentials from the environment only, never from the command line (shell history, ps)
        try:
            uids = push(args.push, token=os.environ.get("GRAFANA_TOKEN", ""),
                        user=os.environ.get("GRAFANA_USER", ""), password=os.environ.get("GRAFANA_PASSWORD", ""),
                        folder_uid=args.folder_uid)
        except OSError as e:
            raise CommandError(f"push to {args.push} failed: {e}") from e
        print(f"dashboards: pushed {', '.join(uids)} to {args.push}")
    return 0
