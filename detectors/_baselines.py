"""Baselines a user would reach for, behind the same API as :class:`SeasonalAnomalyDetector`.

They exist to be compared with it in ``opsintel eval nab``: river's Half-Space Trees on
min-max-scaled values, scikit-learn's Isolation Forest over sliding windows (refitted on a
bounded buffer), and NAB's own windowed Gaussian (tail probability of a rolling mean / std).
Each takes ``seed`` and is deterministic for a given seed; timestamps are accepted and ignored.
"""

from __future__ import annotations

import copy
import math
from collections import deque
from typing import Any

import numpy as np
import numpy.typing as npt


class _OneAtATime:
    """Batch methods as loops over the per-point methods (for detectors with no faster path)."""

    def learn_one(self, x: float, t: float | None = None) -> None:  # pragma: no cover - abstract
        raise NotImplementedError

    def score_one(self, x: float, t: float | None = None) -> float:  # pragma: no cover - abstract
        raise NotImplementedError

    def learn_many(self, x: npt.ArrayLike, t: npt.ArrayLike | None = None) -> None:
        """Learn values in order."""
        for v in np.asarray(x, dtype=np.float64).ravel().tolist():
            self.learn_one(v)

    def score_many(self, x: npt.ArrayLike, t: npt.ArrayLike | None = None) -> npt.NDArray[np.float64]:
        """Score values against the current state, learning none of them."""
        return np.array([self.score_one(v) for v in np.asarray(x, dtype=np.float64).ravel().tolist()])

    def score_learn_many(self, x: npt.ArrayLike, t: npt.ArrayLike | None = None) -> npt.NDArray[np.float64]:
        """Score each value, then learn it."""
        out = []
        for v in np.asarray(x, dtype=np.float64).ravel().tolist():
            out.append(self.score_one(v))
            self.learn_one(v)
        return np.asarray(out, dtype=np.float64)

    def snapshot(self) -> dict[str, Any]:
        """An independent copy of the learnt state."""
        return copy.deepcopy({k: v for k, v in vars(self).items() if k.endswith("_")})

    def restore(self, state: dict[str, Any]) -> Any:
        """Load a state produced by :meth:`snapshot`."""
        for k, v in copy.deepcopy(state).items():
            setattr(self, k, v)
        return self


class WindowedGaussianDetector(_OneAtATime):
    """NAB's ``windowedGaussian``: Gaussian tail probability of the value in a rolling window.

    Examples
    --------
    >>> det = WindowedGaussianDetector(window=50)
    >>> det.learn_many([10.0, 11.0] * 50)
    >>> det.score_one(10.5) < 0.5 < det.score_one(30.0)
    True
    """

    def __init__(self, window: int = 6400, step: int = 100, seed: int | None = None) -> None:
        self.window = window
        self.step = step
        self.seed = seed
        self.buffer_: deque[float] = deque(maxlen=window)
        self.mean_ = 0.0
        self.std_ = 1.0
        self.since_fit_ = 0

    def score_one(self, x: float, t: float | None = None) -> float:
        if len(self.buffer_) < 2:
            return 0.0
        z = abs(x - self.mean_) / self.std_
        return 1.0 - 0.5 * math.erfc(z / math.sqrt(2.0)) * 2.0 if z > 0 else 0.0

    def learn_one(self, x: float, t: float | None = None) -> None:
        self.buffer_.append(float(x))
        self.since_fit_ += 1
        if self.since_fit_ >= self.step or len(self.buffer_) <= self.step:
            arr = np.fromiter(self.buffer_, dtype=np.float64)
            self.mean_ = float(arr.mean())
            self.std_ = float(arr.std()) or 1e-6
            self.since_fit_ = 0


class HalfSpaceTreesDetector(_OneAtATime):
    """river ``anomaly.HalfSpaceTrees`` (river's defaults) on values min-max scaled online.

    Examples
    --------
    >>> det = HalfSpaceTreesDetector(window_size=50, seed=1)
    >>> det.learn_many([0.5] * 200 + [0.4] * 200)
    >>> 0.0 <= det.score_one(0.45) <= 1.0
    True
    """

    def __init__(self, n_trees: int = 10, height: int = 8, window_size: int = 250,
                 seed: int | None = 42) -> None:
        self.n_trees = n_trees
        self.height = height
        self.window_size = window_size
        self.seed = seed
        from river import anomaly, preprocessing  # optional dependency: the ``eval`` extra

        self.model_ = preprocessing.MinMaxScaler() | anomaly.HalfSpaceTrees(
            n_trees=n_trees, height=height, window_size=window_size, seed=seed)

    def score_one(self, x: float, t: float | None = None) -> float:
        return float(min(max(self.model_.score_one({"x": x}), 0.0), 1.0))

    def learn_one(self, x: float, t: float | None = None) -> None:
        self.model_.learn_one({"x": x})


class IsolationForestWindowsDetector(_OneAtATime):
    """scikit-learn ``IsolationForest`` over sliding windows of the last ``width`` values.

    The forest is refitted every ``refit`` points on the last ``buffer`` windows (bounded
    memory); before the first fit the score is 0. Scores are ``-score_samples`` shifted to [0, 1].

    Examples
    --------
    >>> import numpy as np
    >>> det = IsolationForestWindowsDetector(width=5, buffer=200, refit=100, seed=0)
    >>> det.learn_many(np.sin(np.arange(400) / 5))
    >>> det.score_one(0.0) < det.score_one(9.0)
    True
    """

    def __init__(self, width: int = 8, buffer: int = 1000, refit: int = 500, n_estimators: int = 50,
                 seed: int | None = 42) -> None:
        self.width = width
        self.buffer = buffer
        self.refit = refit
        self.n_estimators = n_estimators
        self.seed = seed
        self.recent_: deque[float] = deque(maxlen=width)
        self.windows_: deque[tuple[float, ...]] = deque(maxlen=buffer)
        self.forest_: Any = None
        self.since_fit_ = 0

    def _window(self, x: float) -> list[float]:
        w = [*list(self.recent_)[1:], x] if len(self.recent_) == self.width else [*self.recent_, x]
        return [w[0]] * (self.width - len(w)) + w

    def score_one(self, x: float, t: float | None = None) -> float:
        if self.forest_ is None:
            return 0.0
        s = -float(self.forest_.score_samples(np.array([self._window(x)]))[0])
        return min(max(s, 0.0), 1.0)

    def score_learn_many(self, x: npt.ArrayLike, t: npt.ArrayLike | None = None) -> npt.NDArray[np.float64]:
        # one score_samples call per refit period instead of one per point: same scores, ~50x faster
        xs = np.asarray(x, dtype=np.float64).ravel().tolist()
        out = np.zeros(len(xs))
        i = 0
        while i < len(xs):
            chunk = xs[i:i + max(self.refit - self.since_fit_, 1)]
            rows = []
            for v in chunk:
                rows.append(self._window(v))
                self.learn_one(v, _defer=True)
            if self.forest_ is not None:
                out[i:i + len(chunk)] = np.clip(-self.forest_.score_samples(np.array(rows)), 0.0, 1.0)
            self._maybe_refit()
            i += len(chunk)
        return out

    def learn_one(self, x: float, t: float | None = None, *, _defer: bool = False) -> None:
        self.windows_.append(tuple(self._window(x)))
        self.recent_.append(float(x))
        self.since_fit_ += 1
        if not _defer:
            self._maybe_refit()

    def _maybe_refit(self) -> None:
        if self.since_fit_ >= self.refit and len(self.windows_) >= min(self.buffer, self.refit):
            from sklearn.ensemble import IsolationForest

            self.forest_ = IsolationForest(n_estimators=self.n_estimators, random_state=self.seed).fit(
                np.array(self.windows_))
            self.since_fit_ = 0


class NullDetector(_OneAtATime):
    """NAB's null detector: a constant 0.5 (normalises to 0)."""

    def __init__(self, seed: int | None = None) -> None:
        self.seed = seed

    def score_one(self, x: float, t: float | None = None) -> float:
        return 0.5

    def learn_one(self, x: float, t: float | None = None) -> None:
        return None
