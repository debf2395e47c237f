"""Evidence for a problem: suspect changes, monitoring lead time, knowledge, ticket signals.

The detector keeps a short, time-bounded memory of changes and alerts keyed by CI and service
(:class:`ContextIndex`); evidence is computed only when a record is emitted, never per incident,
so it costs nothing on the hot path.
"""

from __future__ import annotations

import bisect
import re
from datetime import UTC, datetime

import msgspec

from opsintel.events import ChangeEvent, MonitoringEvent
from opsintel.problems import KnowledgeSuggestion, MonitoringLead, SuspectChange, TicketSignals

#: ITIL-style resolution targets by priority 1..5, hours (configurable); used only for
#: "SLA resolution met", because the sources record the response SLA flag but no resolution target
DEFAULT_RESOLUTION_TARGETS_HOURS: dict[int, float] = {1: 4.0, 2: 8.0, 3: 24.0, 4: 72.0, 5: 120.0}

_DIGIT = re.compile(r"\d")


def priority_rank(priority: str) -> int:
    """Leading digit of a priority (``"3 - Moderate"`` -> 3, ``"4"`` -> 4); 0 when unknown.

    >>> priority_rank("3 - Moderate"), priority_rank("4"), priority_rank("")
    (3, 4, 0)
    """
    m = _DIGIT.search(priority)
    return int(m.group()) if m else 0


def to_dt(ts: float) -> datetime:
    return datetime.fromtimestamp(ts, tz=UTC)


class ContextItem(msgspec.Struct, array_like=True):
    """One change or alert remembered for evidence."""

    t: float  #: change start / alert start, epoch seconds
    ident: str  #: change id or alert fingerprint
    name: str  #: alert name (empty for changes)
    ci: str
    service: str


class ContextIndex(msgspec.Struct):
    """Changes or alerts by CI and by service, kept for ``retention`` seconds of event time.

    >>> idx = ContextIndex(retention=3600.0)
    >>> idx.add(ContextItem(100.0, "CHG1", "", "srv-1", "Mail"))
    >>> [i.ident for i in idx.before("ci", "srv-1", 200.0, 3600.0)]
    ['CHG1']
    >>> idx.before("ci", "srv-1", 50.0, 3600.0)
    []
    """

    retention: float
    by_key: dict[str, list[ContextItem]] = msgspec.field(default_factory=dict)
    by_id: dict[str, ContextItem] = msgspec.field(default_factory=dict)

    def add(self, item: ContextItem) -> None:
        for key in (("ci\x1f" + item.ci) if item.ci else "", ("svc\x1f" + item.service) if item.service else ""):
            if key:
                items = self.by_key.setdefault(key, [])
                if not items or items[-1].t <= item.t:
                    items.append(item)
                else:
                    bisect.insort(items, item, key=lambda i: i.t)
        self.by_id[item.ident] = item

    def before(self, field: str, value: str, t: float, lookback: float) -> list[ContextItem]:
        """Items on ``field`` (``"ci"`` / ``"svc"``) = ``value`` in ``[t - lookback, t]``, oldest first."""
        items = self.by_key.get(field + "\x1f" + value)
        if not items:
            return []
        lo = bisect.bisect_left(items, t - lookback, key=lambda i: i.t)
        hi = bisect.bisect_right(items, t, key=lambda i: i.t)
        return items[lo:hi]

    def expire(self, now: float) -> None:
        """Forget items older than ``now - retention``."""
        cutoff = now - self.retention
        for key in list(self.by_key):
            items = self.by_key[key]
            cut = bisect.bisect_left(items, cutoff, key=lambda i: i.t)
            if cut == len(items):
                del self.by_key[key]
            elif cut:
                del items[:cut]
        for ident in [k for k, v in self.by_id.items() if v.t < cutoff]:
            del self.by_id[ident]


def change_item(event: ChangeEvent) -> ContextItem:
    """A change, timed at its (actual, else planned) start, else when it was recorded."""
    when = event.actual_start or event.planned_start or event.opened_at or event.event_time
    return ContextItem(when.timestamp(), event.change_id, "", event.ci, event.service)


def alert_item(event: MonitoringEvent) -> ContextItem:
    return ContextItem(event.starts_at.timestamp(), event.fingerprint, event.name, event.ci, event.service)


def suspect_change(
    changes: ContextIndex,
    named: dict[str, int],
    ci: str,
    service: str,
    first_seen: float,
    lookback: float,
) -> SuspectChange | None:
    """The change most likely behind the group.

    A change the tickets themselves name (ServiceNow ``rfc``, BPI ``Related Change``) wins,
    the most-named first; otherwise the latest change on the group's CI, then on its service,
    that started within ``lookback`` seconds before the first incident.
    """
    if named:
        change_id, n = max(named.items(), key=lambda kv: (kv[1], kv[0]))
        item = changes.by_id.get(change_id)
        return SuspectChange(
            change_id=change_id,
            match="related_change",
            change_time=to_dt(item.t) if item else None,
            delta_hours=round((first_seen - item.t) / 3600, 2) if item else None,
            ci=item.ci if item else "",
            service=item.service if item else "",
            incidents_naming_it=n,
        )
    for field, value in (("ci", ci), ("svc", service)):
        if not value:
            continue
        found = changes.before(field, value, first_seen, lookback)
        if found:
            item = found[-1]
            return SuspectChange(
                change_id=item.ident,
                match="ci" if field == "ci" else "service",
                change_time=to_dt(item.t),
                delta_hours=round((first_seen - item.t) / 3600, 2),
                ci=item.ci,
                service=item.service,
            )
    return None


def monitoring_lead(
    alerts: ContextIndex, ci: str, service: str, first_seen: float, lookback: float
) -> MonitoringLead | None:
    """The earliest alert on the group's CI (else service) within ``lookback`` before the first incident."""
    for field, value in (("ci", ci), ("svc", service)):
        if not value:
            continue
        found = alerts.before(field, value, first_seen, lookback)
        if found:
            first = found[0]
            return MonitoringLead(
                alert_name=first.name,
                fingerprint=first.ident,
                first_fired=to_dt(first.t),
                lead_hours=round((first_seen - first.t) / 3600, 2),
                alert_count=len({i.ident for i in found}),
                match="ci" if field == "ci" else "service",
            )
    return None


def knowledge_suggestion(km_counts: dict[str, int], members: int) -> KnowledgeSuggestion | None:
    """The article most used to resolve the linked incidents (ties: the smaller id, deterministic).

    >>> knowledge_suggestion({"KM0000553": 3, "KM0000611": 1}, 5)
    KnowledgeSuggestion(article='KM0000553', used_by=3, share=0.6)
    """
    counts = {k: v for k, v in km_counts.items() if v > 0}
    if not counts:
        return None
    article, n = min(counts.items(), key=lambda kv: (-kv[1], kv[0]))
    return KnowledgeSuggestion(article=article, used_by=n, share=round(n / max(members, 1), 3))


#: layout of a group's running sums, one slot per signal (see ``signal_contribution``)
SIG_N, SIG_REASSIGN, SIG_REOPENED, SIG_SLA_KNOWN, SIG_SLA_MET = 0, 1, 2, 3, 4
SIG_RESOLVED, SIG_RES_HOURS, SIG_TARGET_KNOWN, SIG_TARGET_MET, SIG_KN_KNOWN, SIG_KN_USED = 5, 6, 7, 8, 9, 10
N_SIGNALS = 11


def signals_from(sums: list[float]) -> TicketSignals:
    """Rates from a group's running sums (``None`` when nothing is known)."""

    def ratio(num: float, den: float) -> float | None:
        return round(num / den, 3) if den else None

    n = sums[SIG_N]
    return TicketSignals(
        mean_reassignments=ratio(sums[SIG_REASSIGN], n),
        reopen_rate=ratio(sums[SIG_REOPENED], n),
        sla_response_met_rate=ratio(sums[SIG_SLA_MET], sums[SIG_SLA_KNOWN]),
        sla_resolution_met_rate=ratio(sums[SIG_TARGET_MET], sums[SIG_TARGET_KNOWN]),
        resolved_share=ratio(sums[SIG_RESOLVED], n),
        mean_hours_to_resolve=ratio(sums[SIG_RES_HOURS], sums[SIG_RESOLVED]),
        knowledge_used_rate=ratio(sums[SIG_KN_USED], sums[SIG_KN_KNOWN]),
    )
