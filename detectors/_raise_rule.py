"""When a group of similar incidents becomes a problem, and when its episode is over.

A group is raised when, within the sliding window, it is **unusual for its own signature**: it
holds at least ``min_count`` incidents, at least ``baseline_factor`` times the count expected
from the signature's history, and that many would be improbable by chance (Poisson tail
probability at most ``alpha``). The expected count comes from :class:`BackgroundRates`: the
signature's incidents *before* the window, exponentially decayed over ``baseline_windows``
windows, against the time the detector has watched; a signature never seen is expected at its
service's usual group size (:class:`ServiceBaseline`, learned from expired and from live groups)
weighted as half a window of evidence. Nothing is raised until the detector has watched one
window of history before the window it judges (``warmup``): before that every busy signature
would look new.

Why these defaults. The ITIL rule of thumb is "three similar incidents make a problem"; in the
ServiceNow log the median signature (category + subcategory + symptom) holds 2 incidents over its
3 months, but 40 signatures hold more than 100: a week with 30 of those is the desk's normal
work, not a problem, and a record linking them is one a problem manager closes unread. Twice the
expected count says the rate changed; ``alpha = 0.001`` keeps chance bursts of mid-rate
signatures out (about one spurious raise per thousand group-windows, the order of a whole year
of a mid-sized desk).

An **episode** is the stretch during which the group stays elevated: it opens when the group
is raised and closes when the window count falls back below halfway between the expected and
the raise threshold (``still_elevated``; hysteresis, so it does not flap). Only incidents within
an episode are linked to the problem. Because incidents that leave the window feed the
background, a chronic rise becomes the new normal within a few windows and its episode ends.
A rejected or resolved group is raised again only when it changes materially: its window count
reaches ``reraise_factor`` times its count at the decision.

>>> rule = RaiseRule()
>>> rule.is_unusual(3, expected=0.1), rule.is_unusual(3, expected=1.0), rule.is_unusual(6, expected=1.0)
(True, False, True)
>>> rule.is_unusual(40, expected=30.0)  # a busy signature's ordinary week
False
>>> rule.still_elevated(2, expected=0.1), rule.still_elevated(1, expected=0.1)
(True, False)
>>> rule.materially_changed(count_in_window=7, count_at_rejection=4)
False
>>> rule.materially_changed(count_in_window=8, count_at_rejection=4)
True
"""

from __future__ import annotations

import math

import msgspec


def poisson_sf(n: int, mu: float) -> float:
    """``P(N >= n)`` for ``N ~ Poisson(mu)``, summed over the upper tail (exact where it is tiny).

    >>> round(poisson_sf(3, 0.5), 4), poisson_sf(0, 2.0), poisson_sf(2, 0.0)
    (0.0144, 1.0, 0.0)
    """
    if n <= 0:
        return 1.0
    if mu <= 0:
        return 0.0
    if n <= mu:  # the upper tail is most of the mass: sum the lower one instead
        term = total = math.exp(-mu)
        for k in range(1, n):
            term *= mu / k
            total += term
        return max(0.0, 1.0 - total)
    term = math.exp(-mu + n * math.log(mu) - math.lgamma(n + 1))
    total, k = 0.0, n
    while term > 1e-17 * (total or 1.0):
        total += term
        k += 1
        term *= mu / k
    return min(1.0, total)


class RaiseRule(msgspec.Struct, frozen=True, kw_only=True):
    """Thresholds of the raise rule (see the module docstring for the reasoning)."""

    min_count: int = 3
    baseline_factor: float = 2.0
    reraise_factor: float = 2.0
    alpha: float = 0.001

    def __post_init__(self) -> None:
        if self.min_count < 2:
            raise ValueError("min_count must be >= 2 (a problem links more than one incident)")
        if self.baseline_factor < 1 or self.reraise_factor < 1:
            raise ValueError("baseline_factor and reraise_factor must be >= 1")
        if not 0 < self.alpha <= 1:
            raise ValueError("alpha must be in (0, 1]")

    def threshold(self, expected: float) -> float:
        """Incidents in window needed (before the chance test) when ``expected`` are usual."""
        return max(float(self.min_count), self.baseline_factor * expected)

    def is_unusual(self, count: int, expected: float) -> bool:
        """Whether ``count`` incidents in window are a burst for a group expecting ``expected``."""
        return count >= self.threshold(expected) and poisson_sf(count, expected) <= self.alpha

    def still_elevated(self, count: int, expected: float) -> bool:
        """Whether an open episode goes on: still above halfway to the raise threshold."""
        return count >= max(self.min_count - 1.0, (1 + self.baseline_factor) / 2 * expected)

    def describe(self, expected: float) -> str:
        return (
            f">= {self.threshold(expected):g} incidents in window (min {self.min_count}, "
            f"{self.baseline_factor:g} x expected {expected:.2f} from this signature's history) "
            f"and Poisson tail <= {self.alpha:g}"
        )

    def materially_changed(self, count_in_window: int, count_at_rejection: int) -> bool:
        """Whether a rejected group grew enough to be raised again."""
        needed = max(self.reraise_factor * count_at_rejection, count_at_rejection + self.min_count)
        return count_in_window >= needed


class ServiceBaseline(msgspec.Struct, kw_only=True):
    """Per-service EWMA of its groups' window counts (prior 1.0 = a lone incident).

    >>> base = ServiceBaseline()
    >>> base.get("Mail")
    1.0
    >>> for peak in [10] * 60:
    ...     base.observe("Mail", peak)
    >>> round(base.get("Mail"), 1)
    9.6
    """

    alpha: float = 0.05
    prior: float = 1.0
    values: dict[str, float] = msgspec.field(default_factory=dict)

    def get(self, service: str) -> float:
        return self.values.get(service, self.prior)

    def observe(self, service: str, peak_count: int) -> None:
        old = self.values.get(service, self.prior)
        self.values[service] = old + self.alpha * (peak_count - old)


class BackgroundRates(msgspec.Struct, kw_only=True):
    """Per signature: how many incidents a window usually holds, learned from before the window.

    Incidents are added as they leave the window, weighted ``exp(-age / tau)``; the exposure (how
    long the signature has been watched before the window, from its first incident on) is
    weighted the same way, so the ratio is a rate that forgets over ``tau``. Exposure starts at
    a signature's first incident, not at the detector's start: a code that did not exist yet was
    not "quiet" (in the ServiceNow log most symptom codes first appear on 2016-03-09, ten days
    in, already busy). Memory is bounded: beyond ``max_signatures`` faded signatures are dropped.

    >>> week = 7 * 86400.0
    >>> rates = BackgroundRates(window=week, tau=4 * week, start=0.0)
    >>> rates.seen("Sig", 0.0)
    >>> for day in range(28):  # 5 incidents a day for 4 weeks, all before the window
    ...     for _ in range(5):
    ...         rates.add("Sig", day * 86400.0)
    >>> round(rates.expected("Sig", 5 * week, prior=1.0))  # 35 a week, pulled towards the prior
    28
    >>> rates.seen("Rare", 0.0)
    >>> round(rates.expected("Rare", 5 * week, prior=1.0), 2), rates.expected("New", 5 * week, prior=1.0)
    (0.2, 1.0)
    """

    window: float
    tau: float
    prior_weight: float = 0.5
    start: float = -1.0  #: first event time seen (-1 = none yet)
    max_signatures: int = 200_000
    #: sig -> (decayed count of incidents that left the window, at, first seen)
    counts: dict[str, tuple[float, float, float]] = msgspec.field(default_factory=dict)

    def begin(self, t: float) -> None:
        if self.start < 0:
            self.start = t

    def watched(self, now: float) -> float:
        """Event time watched before the current window, seconds (the warm-up test)."""
        return now - self.start - self.window if self.start >= 0 else 0.0

    def seen(self, sig: str, t: float) -> None:
        """Note that ``sig`` occurs (its exposure starts at its first incident)."""
        if sig not in self.counts:
            self.counts[sig] = (0.0, t, t)
            if len(self.counts) > self.max_signatures:
                self.counts = {k: v for k, v in self.counts.items()
                               if v[0] * math.exp((v[1] - t) / self.tau) > 0.05 or v[2] > t - self.tau}  # fmt: skip

    def add(self, sig: str, t: float) -> None:
        """Count one incident of ``sig`` opened at ``t`` (it just left the window)."""
        c, at, first = self.counts.get(sig, (0.0, t, t))
        if t > at:
            c, at = c * math.exp((at - t) / self.tau) + 1.0, t
        else:
            c += math.exp((t - at) / self.tau)
        self.counts[sig] = (c, at, min(first, t))

    def expected(self, sig: str, now: float, prior: float, in_window: int = -1) -> float:
        """Incidents of ``sig`` a window usually holds; ``prior`` (per window) stands in for history.

        With ``in_window >= 0`` the current window counts too (the level an episode is judged
        against for ending: a burst that lasts becomes the level).
        """
        c, at, first = self.counts.get(sig, (0.0, now, now))
        c *= math.exp((at - now) / self.tau)
        span = now - max(first, self.start)
        exposure = 0.0
        if span > self.window:
            exposure = self.tau / self.window * (math.exp(-self.window / self.tau) - math.exp(-span / self.tau))
        if in_window >= 0:
            c, exposure = c + in_window, exposure + min(1.0, span / self.window)
        return (c + prior * self.prior_weight) / (exposure + self.prior_weight)
