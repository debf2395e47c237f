"""When a group of similar incidents becomes a problem, and when its episode is over.

A group is raised when, within the sliding window, it is **unusual for its own signature**
(its coded cause fields, :func:`~detectors._similarity.signature`): it holds at least
``min_count`` incidents, at least ``baseline_factor`` times the count expected from the
signature's history, and so many would happen by chance at most ``alpha`` of the time. The
expected count comes from :class:`BackgroundRates` (the signature's incidents *before* the
window, decayed over ``baseline_windows`` windows, against the time it has been watched); where
that history is short, its service's usual group count (:class:`ServiceBaseline`, learned from
expired and live groups) stands in, weighted as a quarter window of evidence at first and
fading with the time the signature has been watched (``window / watched``). A signature is
not judged until it has been watched for two windows (``warmup``; one window of history before
the window judged): before that every busy signature looks new, and in the ServiceNow log most
symptom codes first appear, already busy, ten days in.

Why these defaults, from the ServiceNow log:

* "chance" is a negative binomial with shape ``dispersion = 6``: week-to-week counts of a
  signature vary far more than Poisson; the median shape fitted per signature is 6 at every
  volume (1-3, 3-10, 10-30 incidents a week), and an ordinary signature's busiest week is 2-3
  times its mean week, so factor 2 alone would raise routine weeks;
* ``alpha = 0.001``: a problem manager opens every record; about one chance raise per thousand
  signature-windows (the log has ~2,000 signatures over 13 weeks);
* ``max_expected = 10``: a signature that usually sees more than ten incidents a week (38 of
  ~1,900 do, holding half the incidents) is the desk's routine workload; a burst of "a handful"
  is invisible in its noise, and anything raised there links hundreds of routine incidents.
  Its volume anomalies are the trend detector's job (per service and metric);
* ``min_count = 3``: the ITIL rule of thumb, "three similar incidents make a problem".

A recurrence is often concentrated in time: a handful of incidents within a day or two, inside a
signature that sees a few a week. Counted over a whole window it drowns in that week's ordinary
traffic; counted over the last ``burst_hours`` (default 48) against the same expectation scaled
down to that span, it stands out. So a group is also raised when its count over the short span
passes the same test (``min_count``, ``baseline_factor``, the negative binomial) at the stricter
``burst_alpha`` (default ``alpha / 10``: the short span is tested more often, and day-to-day
counts are burstier than week-to-week ones). ``max_expected`` still applies to the *window*
expectation: a busy signature stays the trend detector's business at every time scale. A group
raised this way links only the incidents of the short span (the burst), not the window's
ordinary traffic before it.

An episode links at most ``max_episode_links`` incidents (default 25; the detector's
parameter): a problem is "a handful of incidents sharing a cause", and a signature whose rate
genuinely jumped (a surge of 50-200 a week) would otherwise link hundreds of routine incidents
to one record. The rest of the episode is counted (record details ``overflow``), not linked.

An **episode** is the stretch during which the group stays elevated: it opens when the group
is raised and closes when the window count falls below halfway between the usual level and the
raise threshold (``still_elevated``), the usual level now counting the current window too, so a
burst that lasts becomes the level and its episode ends. Only incidents within an episode are
linked; after it, the level it reached is the bar for the next raise (no flapping). A rejected
or resolved group is raised again only when it changes materially: its window count reaches
``reraise_factor`` times its count at the decision.

>>> rule = RaiseRule()
>>> rule.is_unusual(3, expected=0.1), rule.is_unusual(3, expected=1.0), rule.is_unusual(7, expected=1.0)
(True, False, True)
>>> rule.is_unusual(18, expected=5.0), rule.is_unusual(19, expected=5.0)
(False, True)
>>> rule.is_unusual(100, expected=30.0)  # a busy signature: not a problem however it bursts
False
>>> rule.is_unusual(9, expected=4.0), rule.is_burst(9, window_expected=4.0, share=2 / 7)
(False, True)
>>> rule.still_elevated(2, expected=0.1), rule.still_elevated(1, expected=0.1)
(True, False)
>>> rule.materially_changed(count_in_window=7, count_at_rejection=4)
False
>>> rule.materially_changed(count_in_window=8, count_at_rejection=4)
True
"""

from __future__ import annotations

import math
from collections.abc import Iterator

import msgspec


def nbinom_sf(n: int, mu: float, k: float, stop_above: float = 1.0) -> float:
    """``P(N >= n)`` for a negative binomial with mean ``mu`` and shape ``k`` (variance ``mu + mu**2 / k``).

    Summed over the upper tail, so tiny tails stay exact; ``k = inf`` is the Poisson. The sum
    stops once it exceeds ``stop_above`` (the caller only asks whether the tail is below it).

    >>> round(nbinom_sf(3, 0.5, math.inf), 4), round(nbinom_sf(3, 0.5, 6.0), 4), nbinom_sf(0, 2.0, 6.0)
    (0.0144, 0.019, 1.0)
    >>> nbinom_sf(60, 30.0, math.inf) < 1e-5 < nbinom_sf(60, 30.0, 6.0)
    True
    """
    if n <= 0:
        return 1.0
    if mu <= 0:
        return 0.0
    q = mu / (k + mu) if math.isfinite(k) else 0.0  # success odds of the NB; 0 for Poisson
    if n <= mu:  # the upper tail is most of the mass: sum the lower one instead
        return max(0.0, 1.0 - sum(_pmf_terms(0, n, mu, k, q)))
    total = 0.0
    for term in _pmf_terms(n, n + 100_000, mu, k, q):
        total += term
        if term < 1e-17 * total or total > stop_above:
            break
    return min(1.0, total)


def _pmf_terms(lo: int, hi: int, mu: float, k: float, q: float) -> Iterator[float]:
    """pmf(lo), pmf(lo + 1), ... up to ``hi`` (exclusive), by the ratio of successive terms."""
    if q:
        log_pmf = math.lgamma(lo + k) - math.lgamma(k) - math.lgamma(lo + 1) + k * math.log1p(-q) + lo * math.log(q)
    else:
        log_pmf = -mu + lo * math.log(mu) - math.lgamma(lo + 1)
    term = math.exp(log_pmf)
    for i in range(lo, hi):
        yield term
        term *= (i + k) / (i + 1) * q if q else mu / (i + 1)


class RaiseRule(msgspec.Struct, frozen=True, kw_only=True):
    """Thresholds of the raise rule (see the module docstring for the reasoning)."""

    min_count: int = 3
    baseline_factor: float = 2.0
    reraise_factor: float = 2.0
    alpha: float = 0.001
    dispersion: float = 6.0
    max_expected: float = 10.0
    burst_alpha: float = 0.0001

    def __post_init__(self) -> None:
        if self.min_count < 2:
            raise ValueError("min_count must be >= 2 (a problem links more than one incident)")
        if self.baseline_factor < 1 or self.reraise_factor < 1:
            raise ValueError("baseline_factor and reraise_factor must be >= 1")
        if not 0 < self.alpha <= 1 or not 0 < self.burst_alpha <= 1 or self.dispersion <= 0 or self.max_expected <= 0:
            raise ValueError("alpha and burst_alpha must be in (0, 1], dispersion and max_expected > 0")

    def threshold(self, expected: float) -> float:
        """Incidents in window needed (before the chance test) when ``expected`` are usual."""
        return max(float(self.min_count), self.baseline_factor * expected)

    def is_unusual(self, count: int, expected: float) -> bool:
        """Whether ``count`` incidents in window are a burst for a group expecting ``expected``."""
        return expected <= self.max_expected and self._beyond_chance(count, expected, self.alpha)

    def is_burst(self, count: int, window_expected: float, share: float) -> bool:
        """Whether ``count`` incidents within a span ``share`` of the window are a short burst."""
        return window_expected <= self.max_expected and self._beyond_chance(
            count, window_expected * share, self.burst_alpha)

    def _beyond_chance(self, count: int, expected: float, alpha: float) -> bool:
        return count >= self.threshold(expected) and nbinom_sf(count, expected, self.dispersion,
                                                               stop_above=alpha) <= alpha

    def still_elevated(self, count: int, expected: float) -> bool:
        """Whether an open episode goes on: still above halfway to the raise threshold."""
        return count >= max(self.min_count - 1.0, (1 + self.baseline_factor) / 2 * expected)

    def describe(self, expected: float) -> str:
        return (
            f">= {self.threshold(expected):g} incidents in window (min {self.min_count}, "
            f"{self.baseline_factor:g} x expected {expected:.2f} from this signature's history) "
            f"and chance <= {self.alpha:g} (negative binomial, shape {self.dispersion:g})"
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
    >>> round(rates.expected("Sig", 5 * week, prior=1.0))  # 35 a week, pulled a little towards the prior
    34
    >>> rates.seen("Rare", 0.0)
    >>> round(rates.expected("Rare", 5 * week, prior=1.0), 2), rates.expected("New", 5 * week, prior=1.0)
    (0.02, 1.0)
    """

    window: float
    tau: float
    prior_weight: float = 0.25
    start: float = -1.0  #: first event time seen (-1 = none yet)
    max_signatures: int = 200_000
    #: sig -> (decayed count of incidents that left the window, at, first seen)
    counts: dict[str, tuple[float, float, float]] = msgspec.field(default_factory=dict)

    def begin(self, t: float) -> None:
        if self.start < 0:
            self.start = t

    def watched(self, now: float, sig: str) -> float:
        """How long ``sig`` has been watched, seconds (the warm-up test)."""
        first = self.counts[sig][2] if sig in self.counts else now
        return now - max(first, self.start) if self.start >= 0 else 0.0

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
        # the prior stands in where history is short: its weight fades with the time watched
        # (the decayed exposure alone saturates near tau / window, so a quarter window of prior
        # would stay ~7 % of the expectation for good: a rare signature in a busy service was
        # expected at ~1 a window however long it had stayed quiet)
        w = self.prior_weight * (self.window / span if span > self.window else 1.0)
        return (c + prior * w) / (exposure + w)
