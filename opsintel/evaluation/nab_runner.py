"""Run detectors over a NAB-format corpus, score them, and write NAB-format result files.

The detectors run as the streaming path runs them: one fresh detector per file, each row
scored before it is learnt (``score_learn_many``). The threshold of each detector is then
optimised per profile over the whole corpus (:func:`opsintel.evaluation.nab.sweep`), exactly
as NAB does; ``null`` and ``perfect`` rows are sanity checks (0 and 100 by construction).
"""

from __future__ import annotations

import csv
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from opsintel.evaluation.nab import (
    CostProfile,
    FloatArray,
    LabelledSeries,
    normalised_score,
    raw_score,
    sweep,
)

#: detector name -> factory(seed); ``perfect`` is handled apart (it reads the labels)
DetectorFactory = Callable[[int], Any]


def detector_factories() -> dict[str, DetectorFactory]:
    """The detectors ``opsintel eval nab`` knows, by name (imports are deferred to here)."""
    from detectors import (
        HalfSpaceTreesDetector,
        IsolationForestWindowsDetector,
        NullDetector,
        RecordBreakDetector,
        SeasonalAnomalyDetector,
        WindowedGaussianDetector,
    )

    return {
        "recordBreak": lambda seed: RecordBreakDetector(),
        "seasonal": lambda seed: SeasonalAnomalyDetector(),
        "halfSpaceTrees": lambda seed: HalfSpaceTreesDetector(seed=seed),
        "isolationForest": lambda seed: IsolationForestWindowsDetector(seed=seed),
        "windowedGaussian": lambda seed: WindowedGaussianDetector(seed=seed),
        "null": lambda seed: NullDetector(seed=seed),
    }


DETECTOR_NAMES: tuple[str, ...] = (
    "recordBreak", "seasonal", "halfSpaceTrees", "isolationForest", "windowedGaussian", "null", "perfect")


def perfect_scores(series: LabelledSeries) -> FloatArray:
    """1.0 on the first row of every window, 0 elsewhere (normalises to 100)."""
    out = np.zeros(len(series.values))
    for left, _ in series.windows:
        out[left] = 1.0
    return out


def run_detector(name: str, corpus: Sequence[LabelledSeries], seed: int = 42) -> list[FloatArray]:
    """Per-file anomaly scores of one detector (a fresh instance per file)."""
    if name == "perfect":
        return [perfect_scores(s) for s in corpus]
    from detectors import posix_seconds

    factory = detector_factories()[name]
    out = []
    for s in corpus:
        scores = np.asarray(factory(seed).score_learn_many(s.values, posix_seconds(s.timestamps)))
        if scores.shape != s.values.shape or np.any((scores < 0) | (scores > 1)) or np.isnan(scores).any():
            raise ValueError(f"{name} on {s.key}: scores must be {s.values.size} values in [0, 1]")
        out.append(scores)
    return out


@dataclass(frozen=True)
class ProfileResult:
    """One detector × profile: optimised threshold, raw corpus score, normalised score."""

    detector: str
    profile: str
    threshold: float
    raw: float
    score: float


def evaluate(name: str, scores: Sequence[FloatArray], corpus: Sequence[LabelledSeries],
             profiles: Iterable[CostProfile]) -> list[ProfileResult]:
    """Optimise the threshold per profile over the corpus and normalise (0 = null, 100 = perfect)."""
    n_windows = sum(len(s.scorable_windows) for s in corpus)
    results = []
    for p in profiles:
        best = sweep(zip(scores, corpus, strict=True), p)
        results.append(ProfileResult(name, p.name, best.threshold, best.raw,
                                     normalised_score(best.raw, n_windows, p)))
    return results


def leave_one_category_out(scores: Sequence[FloatArray], corpus: Sequence[LabelledSeries],
                           profile: CostProfile) -> float:
    """Normalised score when each category is scored with the threshold optimised on the others."""
    n_windows = sum(len(s.scorable_windows) for s in corpus)
    total = 0.0
    for category in sorted({s.category for s in corpus}):
        train = [(a, s) for a, s in zip(scores, corpus, strict=True) if s.category != category]
        threshold = sweep(train, profile).threshold
        total += sum(raw_score(a, s, threshold, profile)
                     for a, s in zip(scores, corpus, strict=True) if s.category == category)
    return normalised_score(total, n_windows, profile)


def write_results(out_dir: Path, name: str, scores: Sequence[FloatArray],
                  corpus: Sequence[LabelledSeries]) -> None:
    """NAB result files: ``OUT/<detector>/<category>/<detector>_<file>.csv``."""
    for a, s in zip(scores, corpus, strict=True):
        labels = np.zeros(len(a), dtype=int)
        for left, right in s.windows:
            labels[left:right + 1] = 1
        path = out_dir / name / s.category / f"{name}_{s.name}"
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("w", newline="") as f:
            w = csv.writer(f)
            w.writerow(["timestamp", "value", "anomaly_score", "label"])
            stamps = np.datetime_as_string(s.timestamps, unit="s")
            for t, v, sc, lab in zip(stamps, s.values.tolist(), a.tolist(), labels.tolist(), strict=True):
                w.writerow([t.replace("T", " "), repr(v), repr(sc), lab])


def format_table(results: Sequence[ProfileResult], profiles: Sequence[CostProfile],
                 loco: dict[str, float] | None = None) -> str:
    """A plain-text table: one row per detector, one column per profile (normalised scores)."""
    names = list(dict.fromkeys(r.detector for r in results))
    by = {(r.detector, r.profile): r for r in results}
    head = ["detector", *(p.name for p in profiles)] + (["LOCO standard"] if loco is not None else [])
    rows = [head]
    for n in names:
        row = [n, *(f"{by[n, p.name].score:.2f}" for p in profiles)]
        if loco is not None:
            row.append(f"{loco[n]:.2f}" if n in loco else "")
        rows.append(row)
    widths = [max(len(r[i]) for r in rows) for i in range(len(head))]
    lines = [" | ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths, strict=False)))
             for r in rows]
    lines.insert(1, "-+-".join("-" * w for w in widths))
    return "\n".join(lines)
