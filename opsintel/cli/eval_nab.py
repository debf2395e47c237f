"""``opsintel eval nab``: run the trend-anomaly detectors and baselines on a NAB-format corpus.

Example::

    opsintel eval nab --data ../shared/data/nab/data \
        --labels ../shared/data/nab/labels/combined_windows.json --out var/nab
"""

from __future__ import annotations

import argparse
import logging
import time
from pathlib import Path

from opsintel.cli import CommandError

log = logging.getLogger(__name__)


def register(sub: argparse._SubParsersAction) -> None:
    from opsintel.evaluation.nab_runner import DETECTOR_NAMES

    p = sub.add_parser("nab", help="score detectors with the Numenta Anomaly Benchmark rules")
    p.add_argument("--data", required=True, type=Path, help="directory of <category>/<file>.csv")
    p.add_argument("--labels", required=True, type=Path, help="combined_windows.json")
    p.add_argument("--detector", action="append", choices=DETECTOR_NAMES, default=None,
                   help="detector to run (repeatable; default: all)")
    p.add_argument("--profiles", type=Path, default=None,
                   help="NAB profiles.json (default: standard, reward_low_FP_rate, reward_low_FN_rate)")
    p.add_argument("--out", type=Path, default=None, help="write NAB result files under this directory")
    p.add_argument("--seed", type=int, default=42, help="seed of the randomised baselines")
    p.add_argument("--loco", action="store_true",
                   help="also report the leave-one-category-out standard score (threshold stability)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from opsintel.evaluation.nab import NabDataError, load_corpus, load_profiles
    from opsintel.evaluation.nab_runner import (
        DETECTOR_NAMES,
        evaluate,
        format_table,
        leave_one_category_out,
        run_detector,
        write_results,
    )

    try:
        profiles = load_profiles(args.profiles)
        corpus = load_corpus(args.data, args.labels)
    except (NabDataError, OSError) as e:
        raise CommandError(str(e)) from e
    if not corpus:
        raise CommandError(f"no labelled *.csv under {args.data}")
    names = list(dict.fromkeys(args.detector or DETECTOR_NAMES))
    results, loco = [], {}
    n_rows = sum(len(s.values) for s in corpus)
    for name in names:
        start = time.perf_counter()
        try:
            scores = run_detector(name, corpus, seed=args.seed)
        except ImportError as e:
            raise CommandError(f"{name}: {e} (install the 'eval' extra: pip install 'opsintel[eval]')") from e
        log.info("%s: %d files, %d rows in %.1fs", name, len(corpus), n_rows, time.perf_counter() - start)
        results += evaluate(name, scores, corpus, profiles)
        if args.loco and profiles:
            loco[name] = leave_one_category_out(scores, corpus, profiles[0])
        if args.out is not None:
            write_results(args.out, name, scores, corpus)
    n_windows = sum(len(s.scorable_windows) for s in corpus)
    print(f"NAB scores: {len(corpus)} files, {n_rows} rows, {n_windows} windows "
          f"(threshold optimised per detector and profile over the corpus)")
    print(format_table(results, profiles, loco if args.loco else None))
    return 0
