"""Offline evaluations of the detectors against labelled data.

The contract: an evaluation takes any directory and labels file in the published format (not
just the copies shipped for development), runs the detectors exactly as the streaming path
runs them (score each point before learning it), and scores them with the benchmark's own
rules, re-implemented here from their specification.

* :mod:`opsintel.evaluation.nab` — the Numenta Anomaly Benchmark scorer, sweep and corpus
  reader; :mod:`opsintel.evaluation.nab_runner` runs detectors and writes NAB result files.
"""

from opsintel.evaluation.nab import (
    DEFAULT_PROFILES,
    CostProfile,
    LabelledSeries,
    NabDataError,
    ThresholdResult,
    load_corpus,
    load_profiles,
    normalised_score,
    raw_score,
    sweep,
)

__all__ = [
    "DEFAULT_PROFILES",
    "CostProfile",
    "LabelledSeries",
    "NabDataError",
    "ThresholdResult",
    "load_corpus",
    "load_profiles",
    "normalised_score",
    "raw_score",
    "sweep",
]
