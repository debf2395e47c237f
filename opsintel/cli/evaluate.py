"""``opsintel eval …``: offline evaluations that replay data through the same detectors."""

from __future__ import annotations

import argparse
import importlib

#: one module per evaluation, each with ``register(subparsers)``
EVAL_MODULES: tuple[str, ...] = ("opsintel.cli.eval_nab", "opsintel.cli.eval_volume", "opsintel.cli.eval_recurring")


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("eval", help="evaluate detectors on labelled data")
    eval_sub = parser.add_subparsers(dest="evaluation", required=True, metavar="EVALUATION")
    for name in EVAL_MODULES:
        importlib.import_module(name).register(eval_sub)
