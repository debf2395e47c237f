"""The ``opsintel`` command line.

Each command lives in its own module with a ``register(subparsers)`` function that adds its
parser and sets ``func``; :func:`main` wires them together. Heavy imports (Faust, chDB,
scikit-learn) happen inside the command functions so ``opsintel --help`` stays fast.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from collections.abc import Sequence

#: command modules, in the order ``--help`` lists them
COMMAND_MODULES = (
    "opsintel.cli.demo",
    "opsintel.cli.worker",
    "opsintel.cli.ingest",
    "opsintel.cli.migrate",
    "opsintel.cli.summary",
    "opsintel.cli.problems",
    "opsintel.cli.topics",
    "opsintel.cli.config",
    "opsintel.cli.evaluate",
    "opsintel.cli.dashboards",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="opsintel",
        description="Streaming operations intelligence for IT service management.",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    _mask_configured_secrets()
    if not args.verbose:  # the Kafka clients narrate every connection at INFO
        for noisy in ("kafka", "aiokafka"):
            logging.getLogger(noisy).setLevel(logging.WARNING)
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        return 130
    except CommandError as e:
        print(f"opsintel {args.command}: {e}", file=sys.stderr)
        return 2


def _mask_configured_secrets() -> None:
    """Secrets from the settings never reach a log line (see :mod:`opsintel.logsafe`)."""
    from pydantic import ValidationError

    from opsintel.logsafe import mask_secrets
    from opsintel.settings import load_settings

    try:
        settings = load_settings()
    except (ValidationError, OSError):
        return  # the command itself will report the bad settings
    mask_secrets(settings.secret_values())


class CommandError(Exception):
    """A user-facing error: printed without a traceback, exit code 2."""
