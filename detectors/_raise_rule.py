"""When a group of similar incidents becomes a problem.

A group is raised when, within the sliding window, it holds at least ``min_count`` incidents
**and** at least ``baseline_factor`` times what a group of the same service usually reaches in
one window. The per-service baseline is an exponentially weighted mean of the peak window
counts of that service's groups when they expire (most groups are single incidents, so the
baseline starts at, and usually stays near, 1).

Why these defaults (``min_count=3``, ``baseline_factor=2``): the ITIL rule of thumb is "three
similar incidents make a problem"; in the ServiceNow log the median same-signature group
(category + subcategory + symptom) over the whole year has 2 incidents, in BPI 2014 the median
CI has 1, so 3 within a week is already unusual for most services. The baseline factor keeps
services whose groups are *always* busy (a handful of catch-all categories hold a third of the
ServiceNow log) from raising a problem for every routine burst: there a group must reach twice
its service's usual count. A rejected group is raised again only when it changes materially:
its window count reaches ``reraise_factor`` times its count at rejection.

>>> rule = RaiseRule()
>>> base = ServiceBaseline()
>>> rule.threshold(base.get("Mail"))
3.0
>>> for peak in [10] * 60:
...     base.observe("Mail", peak)
>>> round(base.get("Mail"), 1), round(rule.threshold(base.get("Mail")), 1)
(9.6, 19.2)
>>> rule.materially_changed(count_in_window=7, count_at_rejection=4)
False
>>> rule.materially_changed(count_in_window=8, count_at_rejection=4)
True
"""

from __future__ import annotations

import msgspec


class RaiseRule(msgspec.Struct, frozen=True, kw_only=True):
    """Thresholds of the raise rule (see the module docstring for the reasoning)."""

    min_count: int = 3
    baseline_factor: float = 2.0
    reraise_factor: float = 2.0

    def __post_init__(self) -> None:
        if self.min_count < 2:
            raise ValueError("min_count must be >= 2 (a problem links more than one incident)")
        if self.baseline_factor < 0 or self.reraise_factor < 1:
            raise ValueError("baseline_factor must be >= 0 and reraise_factor >= 1")

    def threshold(self, baseline: float) -> float:
        """Incidents in window needed to raise a group whose service baseline is ``baseline``."""
        return max(float(self.min_count), self.baseline_factor * baseline)

    def describe(self, baseline: float) -> str:
        return (
            f">= {self.threshold(baseline):g} incidents in window "
            f"(min {self.min_count}, {self.baseline_factor:g} x service baseline {baseline:.2f})"
        )

    def materially_changed(self, count_in_window: int, count_at_rejection: int) -> bool:
        """Whether a rejected group grew enough to be raised again."""
        needed = max(self.reraise_factor * count_at_rejection, count_at_rejection + self.min_count)
        return count_in_window >= needed


class ServiceBaseline(msgspec.Struct, kw_only=True):
    """Per-service EWMA of expired groups' peak window counts (prior 1.0 = a lone incident)."""

    alpha: float = 0.05
    prior: float = 1.0
    values: dict[str, float] = msgspec.field(default_factory=dict)

    def get(self, service: str) -> float:
        return self.values.get(service, self.prior)

    def observe(self, service: str, peak_count: int) -> None:
        old = self.values.get(service, self.prior)
        self.values[service] = old + self.alpha * (peak_count - old)
