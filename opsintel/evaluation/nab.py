"""NAB (Numenta Anomaly Benchmark) scoring, written from the plain-language specification.

This is an independent implementation of NAB's scoring rules (``docs/nab-scoring.md``): the
probationary period, the scaled sigmoid that weights a detection by its position in (or after)
an anomaly window, one threshold per detector and profile optimised over the whole corpus by a
sweep over every distinct anomaly score, and the normalisation against the null detector (0)
and the perfect detector (100). It reads any directory laid out like NAB's ``data/``
(``<category>/<file>.csv`` with ``timestamp,value``) and any ``combined_windows.json``.

Corpus rules, following what NAB's runner does:

* a data file whose key (path relative to the data directory) is absent from the labels is
  *not scored* (NAB prints "no label for datafile" and skips it); a warning is logged;
* a labels key with no data file is ignored, and its windows are not counted in the
  normalisation (NAB would fail on it; the normalisation must describe the scored corpus);
* window ends must be exact row timestamps, else :class:`NabDataError`.

Examples
--------
A file of 20 rows (probation = 3 rows) with one window on rows 10..14:

>>> import numpy as np
>>> ts = np.arange(20).astype("datetime64[m]")
>>> s = LabelledSeries("cat/f.csv", ts, np.zeros(20), ((10, 14),))
>>> perfect = np.zeros(20); perfect[10] = 1.0
>>> raw_score(perfect, s, 1.0, STANDARD)
1.0
>>> late = np.zeros(20); late[14] = 1.0              # last row of a 5-row window
>>> round(raw_score(late, s, 1.0, STANDARD), 4)
0.4684
>>> fp = np.zeros(20); fp[5] = 1.0                   # a lone false positive costs A_FP + the miss
>>> round(raw_score(fp, s, 1.0, STANDARD), 2)
-1.11
>>> best = sweep([(perfect, s)], STANDARD)
>>> best.threshold, best.raw, normalised_score(best.raw, 1, STANDARD)
(1.0, 1.0, 100.0)
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt

log = logging.getLogger(__name__)

FloatArray = npt.NDArray[np.float64]

#: share of each file that is ignored while scoring (NAB ``probationaryPercent``)
PROBATIONARY_PERCENT = 0.15
#: NAB caps the probationary period at 15 % of 5000 rows
PROBATIONARY_CAP_ROWS = 5000
#: the "detect nothing" threshold candidate of the sweep
NO_DETECTION_THRESHOLD = 1.1


class NabDataError(ValueError):
    """A data or labels file does not follow the NAB format."""


@dataclass(frozen=True)
class CostProfile:
    """One NAB application profile: the weights of a true positive, false positive, false negative."""

    name: str
    tp: float
    fp: float
    fn: float


STANDARD = CostProfile("standard", 1.0, 0.11, 1.0)
REWARD_LOW_FP = CostProfile("reward_low_FP_rate", 1.0, 0.22, 1.0)
REWARD_LOW_FN = CostProfile("reward_low_FN_rate", 1.0, 0.11, 2.0)
DEFAULT_PROFILES: tuple[CostProfile, ...] = (STANDARD, REWARD_LOW_FP, REWARD_LOW_FN)


def load_profiles(path: str | Path | None) -> tuple[CostProfile, ...]:
    """Read a NAB ``profiles.json``; ``None`` gives the three published profiles."""
    if path is None:
        return DEFAULT_PROFILES
    raw = json.loads(Path(path).read_text())
    try:
        return tuple(
            CostProfile(name, float(p["CostMatrix"]["tpWeight"]), float(p["CostMatrix"]["fpWeight"]),
                        float(p["CostMatrix"]["fnWeight"]))
            for name, p in raw.items()
        )
    except (KeyError, TypeError, AttributeError) as e:
        raise NabDataError(f"{path}: not a NAB profiles file ({e!r})") from e


@dataclass(frozen=True)
class LabelledSeries:
    """One data file with its anomaly windows as inclusive ``(first_row, last_row)`` pairs."""

    key: str
    timestamps: npt.NDArray[np.datetime64]
    values: FloatArray
    windows: tuple[tuple[int, int], ...]

    @property
    def category(self) -> str:
        """The parent folder of the file (``realTraffic`` for ``realTraffic/speed_6005.csv``)."""
        parts = self.key.split("/")
        return parts[-2] if len(parts) > 1 else ""

    @property
    def name(self) -> str:
        return self.key.split("/")[-1]

    @property
    def probation(self) -> int:
        return probationary_length(len(self.values))

    @property
    def scorable_windows(self) -> tuple[tuple[int, int], ...]:
        """Windows with at least one row after the probationary period."""
        return tuple(w for w in self.windows if w[1] >= self.probation)


def probationary_length(n_rows: int, percent: float = PROBATIONARY_PERCENT) -> int:
    """Rows ignored at the start of a file: ``min(floor(p·N), p·5000)``.

    >>> probationary_length(4032), probationary_length(10_000)
    (604, 750)
    """
    return int(min(math.floor(percent * n_rows), percent * PROBATIONARY_CAP_ROWS))


def scaled_sigmoid(p: npt.ArrayLike) -> FloatArray:
    """``2 / (1 + exp(5 p)) - 1`` for ``p <= 3``, else ``-1``.

    >>> scaled_sigmoid([-1.0, 0.0, 1.0, 4.0]).round(5)
    array([ 0.98661,  0.     , -0.98661, -1.     ])
    """
    arr = np.asarray(p, dtype=np.float64)
    with np.errstate(over="ignore"):
        out = 2.0 / (1.0 + np.exp(5.0 * arr)) - 1.0
    return np.where(arr > 3.0, -1.0, out)


_S_MINUS_ONE = float(scaled_sigmoid(-1.0))


def row_weights(n_rows: int, windows: Sequence[tuple[int, int]], profile: CostProfile
                ) -> tuple[FloatArray, npt.NDArray[np.int64]]:
    """Per-row weight a detection would earn, and the row's window index (``-1`` outside).

    Inside a window the weight falls from ``A_TP`` (first row) along the scaled sigmoid; outside,
    it is ``-A_FP`` before any window and rises from about 0 to ``-A_FP`` after a window.

    >>> w, wid = row_weights(6, [(2, 3)], STANDARD)
    >>> w.round(4).tolist(), wid.tolist()
    ([-0.11, -0.11, 1.0, 0.8598, -0.1085, -0.11], [-1, -1, 0, 0, -1, -1])
    """
    weights = np.full(n_rows, -profile.fp, dtype=np.float64)
    wid = np.full(n_rows, -1, dtype=np.int64)
    idx = np.arange(n_rows, dtype=np.float64)
    for k, (left, right) in enumerate(windows):
        width = right - left + 1
        inside = slice(left, right + 1)
        weights[inside] = profile.tp * scaled_sigmoid(-(right - idx[inside] + 1) / width) / _S_MINUS_ONE
        wid[inside] = k
        end = windows[k + 1][0] if k + 1 < len(windows) else n_rows
        after = slice(right + 1, end)
        with np.errstate(divide="ignore"):
            pos = (idx[after] - right) / (width - 1) if width > 1 else np.full(end - right - 1, np.inf)
        weights[after] = profile.fp * scaled_sigmoid(pos)
    return weights, wid


@dataclass(frozen=True)
class ThresholdResult:
    """The optimum of a sweep: the threshold and the corpus raw (un-normalised) score."""

    threshold: float
    raw: float


def _scorable(scores: FloatArray, series: LabelledSeries, profile: CostProfile
              ) -> tuple[FloatArray, FloatArray, npt.NDArray[np.int64], int]:
    scores = np.asarray(scores, dtype=np.float64)
    if scores.shape != series.values.shape:
        raise NabDataError(f"{series.key}: {scores.size} scores for {series.values.size} rows")
    windows = series.scorable_windows
    weights, wid = row_weights(len(scores), windows, profile)
    start = series.probation
    return scores[start:], weights[start:], wid[start:], len(windows)


def raw_score(scores: FloatArray, series: LabelledSeries, threshold: float, profile: CostProfile) -> float:
    """The raw NAB score of one file: detections are rows with ``score >= threshold``."""
    s, w, wid, n_win = _scorable(scores, series, profile)
    det = s >= threshold
    best = np.full(n_win, -profile.fn)
    inside = det & (wid >= 0)
    np.maximum.at(best, wid[inside], w[inside])
    return float(best.sum() + w[det & (wid < 0)].sum())


def sweep(scored: Iterable[tuple[FloatArray, LabelledSeries]], profile: CostProfile) -> ThresholdResult:
    """Optimise one threshold over the pooled corpus (NAB's sweep; ties go to the higher threshold)."""
    all_s, all_w, all_g = [], [], []
    n_windows = 0
    for scores, series in scored:
        s, w, wid, n_win = _scorable(scores, series, profile)
        all_s.append(s)
        all_w.append(w)
        all_g.append(np.where(wid >= 0, wid + n_windows, -1))
        n_windows += n_win
    base = -profile.fn * n_windows
    if not all_s:
        return ThresholdResult(NO_DETECTION_THRESHOLD, base)
    s, w, g = np.concatenate(all_s), np.concatenate(all_w), np.concatenate(all_g)
    order = np.argsort(-s, kind="stable")
    s, w, g = s[order], w[order], g[order]
    inc = w.copy()  # an FP row adds its (negative) weight once detected
    in_win = np.flatnonzero(g >= 0)
    if in_win.size:
        # per window, the contribution is the running max of detected weights (start: -A_FN);
        # a group-wise cumulative max via offsets per window keeps the sweep vectorised
        by_win = in_win[np.argsort(g[in_win], kind="stable")]
        gw, ww = g[by_win], w[by_win]
        offset = (gw - gw.min()).astype(np.float64) * (4.0 * (np.abs(w).max() + profile.fn) + 1.0)
        running = np.maximum.accumulate(ww + offset) - offset
        first = np.ones(by_win.size, dtype=bool)
        first[1:] = gw[1:] != gw[:-1]
        prev = np.where(first, -profile.fn, np.roll(running, 1))
        inc[by_win] = np.maximum(running, -profile.fn) - prev
    raw_after = base + np.cumsum(inc)
    last_of_run = np.ones(s.size, dtype=bool)
    last_of_run[:-1] = s[:-1] != s[1:]
    thresholds = np.concatenate(([NO_DETECTION_THRESHOLD], s[last_of_run]))
    raws = np.concatenate(([base], raw_after[last_of_run]))
    best = int(np.argmax(raws))  # first maximum = highest threshold, as NAB's stable sort
    return ThresholdResult(float(thresholds[best]), float(raws[best]))


def normalised_score(raw: float, n_windows: int, profile: CostProfile) -> float:
    """``100 · (raw - raw_null) / (raw_perfect - raw_null)`` with null = every window missed."""
    null, perfect = -profile.fn * n_windows, profile.tp * n_windows
    if perfect == null:
        return 0.0
    return 100.0 * (raw - null) / (perfect - null)


def read_series_csv(path: Path) -> tuple[npt.NDArray[np.datetime64], FloatArray]:
    """Read a ``timestamp,value`` CSV into (datetime64[s] array, float array)."""
    rows = path.read_text().strip().splitlines()
    if not rows or rows[0].replace(" ", "").lower() != "timestamp,value":
        raise NabDataError(f"{path}: expected a 'timestamp,value' header")
    try:
        stamps, values = zip(*(r.split(",", 1) for r in rows[1:]), strict=True)
        return (np.array([t.strip().replace(" ", "T") for t in stamps], dtype="datetime64[s]"),
                np.array(values, dtype=np.float64))
    except ValueError as e:
        raise NabDataError(f"{path}: {e}") from e


def load_corpus(data_dir: str | Path, labels_path: str | Path) -> list[LabelledSeries]:
    """Every ``*.csv`` under ``data_dir`` that has a labels key, with windows as row indices."""
    data_dir = Path(data_dir)
    if not data_dir.is_dir():
        raise NabDataError(f"{data_dir}: not a directory")
    try:
        labels = json.loads(Path(labels_path).read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise NabDataError(f"{labels_path}: cannot read labels ({e})") from e
    corpus = []
    for path in sorted(data_dir.rglob("*.csv")):
        key = path.relative_to(data_dir).as_posix()
        if key not in labels:
            log.warning("no label for data file %s: not scored (as NAB does)", key)
            continue
        stamps, values = read_series_csv(path)
        windows = []
        for start, end in labels[key]:
            bounds = np.array([start.replace(" ", "T"), end.replace(" ", "T")], dtype="datetime64[s]")
            rows = np.searchsorted(stamps, bounds)
            if np.any(rows >= len(stamps)) or np.any(stamps[np.minimum(rows, len(stamps) - 1)] != bounds):
                raise NabDataError(f"{key}: window [{start}, {end}] does not match row timestamps")
            windows.append((int(rows[0]), int(rows[1])))
        corpus.append(LabelledSeries(key, stamps, values, tuple(windows)))
    missing = sorted(set(labels) - {s.key for s in corpus})
    if missing:
        log.info("%d labels keys have no data file under %s; ignored", len(missing), data_dir)
    return corpus
