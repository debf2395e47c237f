"""``opsintel config``: print the effective settings (secrets masked)."""

from __future__ import annotations

import argparse
import json


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("config", help="print the effective settings, secrets masked")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from opsintel.settings import load_settings

    print(json.dumps(load_settings().redacted(), indent=2, sort_keys=True))
    return 0
