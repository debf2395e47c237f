"""Turn a group's state into a :class:`~opsintel.problems.ProblemRecord` (evidence included)."""

from __future__ import annotations

import bisect
import hashlib

from opsintel.problems import Evidence, ProblemRecord, ProblemStatus

from ._evidence import (
    ContextIndex,
    knowledge_suggestion,
    monitoring_lead,
    signals_from,
    suspect_change,
    to_dt,
)
from ._group import Group
from ._similarity import FIELDS, shared_attributes

#: order in which shared attributes name the problem in its title (most specific first)
_TITLE_ORDER = ("ci", "service", "category", "subcategory", "symptom", "location", "assignment_group")


def problem_id(source: str, seed_ticket_id: str) -> str:
    """Deterministic problem id of the group seeded by ``seed_ticket_id``.

    The same replay always yields the same ids, so every downstream write is idempotent.

    >>> problem_id("servicenow", "INC0000045")
    'PRB-...'
    >>> problem_id("servicenow", "INC0000045") == problem_id("servicenow", "INC0000045")
    True
    """
    digest = hashlib.blake2b(f"recurring|{source}|{seed_ticket_id}".encode(), digest_size=8).hexdigest()
    return f"PRB-{digest}"


class RecordContext:
    """What building a record needs besides the group (the detector's settings and indexes)."""

    __slots__ = (
        "alert_lookback",
        "alerts",
        "baseline",
        "change_lookback",
        "changes",
        "max_ids",
        "now",
        "rule_text",
        "window",
    )

    def __init__(
        self,
        *,
        now: float,
        window: float,
        baseline: float,
        rule_text: str,
        changes: ContextIndex,
        alerts: ContextIndex,
        change_lookback: float,
        alert_lookback: float,
        max_ids: int,
    ) -> None:
        self.now = now
        self.window = window
        self.baseline = baseline
        self.rule_text = rule_text
        self.changes = changes
        self.alerts = alerts
        self.change_lookback = change_lookback
        self.alert_lookback = alert_lookback
        self.max_ids = max_ids


def build_record(g: Group, ctx: RecordContext) -> ProblemRecord:
    """The next version of ``g``'s problem record (the caller bumps ``g.version`` first)."""
    rep = dict(zip(FIELDS, g.rep, strict=True))
    shared, share = shared_attributes(g.rep, g.matches, g.count)
    top_terms = [w for w, _ in sorted(g.terms.items(), key=lambda kv: (-kv[1], kv[0]))[:8]]
    in_window = len(g.times) - bisect.bisect_left(g.times, ctx.now - ctx.window)
    why = Evidence(
        shared_attributes=shared,
        attribute_share=share,
        top_terms=top_terms,
        similarity=round(g.sim_sum / g.count, 3) if g.count else 0.0,
        count_in_window=in_window,
        window_hours=round(ctx.window / 3600, 2),
        baseline_count=round(ctx.baseline, 3),
        rate_vs_baseline=round(max(in_window, g.peak) / ctx.baseline, 2) if ctx.baseline else 0.0,
        rule=ctx.rule_text,
    )
    ids = [tid for tid, m in g.members.items() if m.linked_at]
    # dict.fromkeys de-duplicates: ServiceNow's service *is* its category
    label = " / ".join(dict.fromkeys(shared[f] for f in _TITLE_ORDER if f in shared))
    if top_terms:
        label = f"{label}: {' '.join(top_terms[:4])}" if label else " ".join(top_terms[:4])
    # an episode past its link cap: say how many more came (counted, not linked)
    surge = f" (+{g.overflow} more in a surge, not linked)" if g.overflow else ""
    return ProblemRecord(
        problem_id=g.gid,
        kind="recurring",
        version=g.version,
        status=ProblemStatus(g.status),
        title=f"{g.linked} similar incidents{surge}" + (f": {label}" if label else ""),
        first_seen=to_dt(g.first),
        last_seen=to_dt(g.last),
        raised_at=to_dt(g.raised_at or ctx.now),
        updated_at=to_dt(ctx.now),
        source=g.source,
        service=rep["service"],
        ci=rep["ci"],
        category=rep["category"],
        incident_ids=ids[-ctx.max_ids :],
        incident_count=g.linked,
        unlinked_incident_ids=g.excluded[-ctx.max_ids :],
        why=why,
        suspect_change=suspect_change(
            ctx.changes, g.named_changes, rep["ci"], rep["service"], g.first, ctx.change_lookback
        ),
        monitoring_first=monitoring_lead(ctx.alerts, rep["ci"], rep["service"], g.first, ctx.alert_lookback),
        suggested_knowledge=knowledge_suggestion(g.km, len(g.members)),
        signals=signals_from(g.sums),
        merged_into=g.merged_into,
        feedback=g.feedback,
        details=_episode_details(g),
    )


def _episode_details(g: Group) -> dict[str, object]:
    """Where the problem is in its life: episodes so far, whether one is open, the closed ones."""
    return {
        "peak_count_in_window": g.peak,
        "members_tracked": len(g.members),
        "episode": g.episode,
        "episode_open": g.in_episode,
        "episode_linked": g.episode_linked,
        "overflow": g.overflow,
        "episode_started": to_dt(g.episode_start).isoformat() if g.episode else "",
        "closed_episodes": [
            {"start": to_dt(a).isoformat(), "end": to_dt(b).isoformat(), "linked": n} for a, b, n in g.episodes
        ],
    }
