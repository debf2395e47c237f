"""Per-incident impact: the IT layer and the business layer, as pure functions of one state.

Every formula, with its unit, is listed in ``docs/impact.md``; the names here match it.
"""

from __future__ import annotations

from datetime import datetime

import msgspec

from opsintel.catalog import Catalog, level
from opsintel.impact._state import IncidentState

#: channels that count as self-service (lower-cased ``contact_type`` / channel values)
SELF_SERVICE_CHANNELS = frozenset({"self service", "self-service", "selfservice", "portal", "web", "chat",
                                   "virtual agent", "catalog"})


class ImpactRow(msgspec.Struct, kw_only=True, gc=False):  # scalars only: never in a cycle
    """One incident's impact, as written to ClickHouse ``incident_impact`` (latest version wins).

    Durations are minutes; money is in the catalogue's ``currency``; ``*_bh_*`` values count
    business hours of the service's calendar only. ``None`` means "not known (yet)".
    """

    source: str
    ticket_id: str
    version: int
    last_event_id: str
    as_of: datetime
    # where it landed
    service: str
    service_name: str
    business_unit: str
    criticality: str
    mapped: bool
    mapping_rule: str
    ticket_service: str
    category: str
    assignment_group: str
    # the ticket now
    priority: str
    priority_level: int
    state: str
    is_open: bool
    opened_at: datetime
    first_response_at: datetime | None
    resolved_at: datetime | None
    # IT layer
    time_to_respond_min: float | None
    time_to_respond_bh_min: float | None
    time_to_resolve_min: float | None
    time_to_resolve_bh_min: float | None
    sla_response_target_min: float | None
    sla_resolution_target_min: float | None
    sla_response_met: bool | None
    sla_resolution_met: bool | None
    sla_made: bool | None
    sla_disagrees: bool
    sla_met_resolution_slow: bool
    reassignments: int
    reopens: int
    channel: str
    self_service: bool
    knowledge_used: bool | None
    # business layer
    impact_share: float
    users_affected: float
    interruption_min: float
    interruption_bh_min: float
    weighted_interruption_min: float
    productivity_loss: float
    customer_impact: float
    currency: str


def _minutes(a: datetime, b: datetime) -> float:
    return max((b - a).total_seconds(), 0.0) / 60.0


def _met(elapsed: float | None, target: float | None, running: float | None) -> bool | None:
    """Target met? Known once the clock stopped, or already ``False`` once a running clock passed it."""
    if target is None:
        return None
    if elapsed is not None:
        return elapsed <= target
    if running is not None and running > target:
        return False
    return None


def impact_row(state: IncidentState, catalog: Catalog) -> ImpactRow:
    """The impact of one incident as of its newest event.

    Examples
    --------
    >>> from datetime import timedelta, timezone
    >>> from opsintel.events import TicketEvent
    >>> cat = Catalog.from_text('''
    ... services: [{id: shop, business_unit: Sales, users: 1000, customer_facing: true,
    ...             revenue_per_hour: 5000, cost_per_user_hour: 40}]
    ... sla_targets: {2: {response: 30m, resolution: 4h}}
    ... rules: [{service: shop, match: {category: Web}}]
    ... ''')
    >>> t0 = datetime(2016, 3, 1, 9, tzinfo=timezone.utc)
    >>> evs = [TicketEvent(event_id=f"e{v}", source="sn", ticket_id="INC1", kind=k, version=v, state=s,
    ...                    event_time=t0 + timedelta(minutes=m), opened_at=t0, category="Web",
    ...                    priority="2 - High", impact="2 - Medium", sla_made=True)
    ...        for v, k, s, m in [(0, "created", "New", 0), (1, "assigned", "Active", 10),
    ...                           (2, "resolved", "Resolved", 360)]]
    >>> r = impact_row(IncidentState.fold(evs), cat)
    >>> r.service, r.time_to_respond_min, r.time_to_resolve_min, r.sla_response_met, r.sla_resolution_met
    ('shop', 10.0, 360.0, True, False)
    >>> r.sla_met_resolution_slow, r.users_affected, r.productivity_loss, r.customer_impact
    (True, 300.0, 72000.0, 9000.0)
    """
    ev = state.latest
    mapping = catalog.map(ev)
    svc = mapping.service
    life = state.lifecycle()
    opened, responded, resolved, intervals = life.opened_at, life.first_response_at, life.resolved_at, life.intervals
    business = svc.hours.minutes_between  # keeps the spans it measured (rows repeat them)

    ttr = _minutes(opened, responded) if responded else None
    ttr_bh = business(opened, responded) if responded else None
    ttres = _minutes(opened, resolved) if resolved else None
    ttres_bh = business(opened, resolved) if resolved else None
    target = catalog.sla_target(svc, ev.priority)
    resp_target = target.response if target else None
    res_target = target.resolution if target else None
    running = business(opened, life.as_of)
    response_met = _met(ttr_bh, resp_target, None if responded else running)
    resolution_met = _met(ttres_bh, res_target, None if resolved else running)

    share = catalog.impact_share(ev)
    wall = interruption_bh = 0.0  # the open periods' wall-clock and working minutes (never no period)
    for a, b in intervals:
        wall += _minutes(a, b)
        interruption_bh += business(a, b)
    users = max(svc.users * share, 1.0) if svc.users else 0.0  # an incident hurts at least its caller
    return ImpactRow(
        source=state.source, ticket_id=state.ticket_id, version=state.version,
        last_event_id=ev.event_id, as_of=life.as_of,
        service=svc.id, service_name=svc.name, business_unit=svc.business_unit,
        criticality=svc.criticality, mapped=mapping.mapped, mapping_rule=mapping.rule,
        ticket_service=ev.service, category=ev.category, assignment_group=ev.assignment_group,
        priority=ev.priority, priority_level=level(ev.priority), state=ev.state, is_open=life.is_open,
        opened_at=opened, first_response_at=responded, resolved_at=resolved,
        time_to_respond_min=ttr, time_to_respond_bh_min=ttr_bh,
        time_to_resolve_min=ttres, time_to_resolve_bh_min=ttres_bh,
        sla_response_target_min=resp_target, sla_resolution_target_min=res_target,
        sla_response_met=response_met, sla_resolution_met=resolution_met, sla_made=ev.sla_made,
        sla_disagrees=ev.sla_made is not None and resolution_met is not None and ev.sla_made != resolution_met,
        sla_met_resolution_slow=bool(ev.sla_made) and resolution_met is False,
        reassignments=ev.reassignment_count or 0, reopens=life.reopens,
        channel=ev.channel, self_service=ev.channel.strip().lower() in SELF_SERVICE_CHANNELS,
        knowledge_used=ev.knowledge_used if ev.knowledge_used is not None else (bool(ev.knowledge_article) or None),
        impact_share=share, users_affected=users,
        interruption_min=wall, interruption_bh_min=interruption_bh, weighted_interruption_min=interruption_bh * share,
        productivity_loss=users * interruption_bh / 60.0 * svc.cost_per_user_hour,
        customer_impact=(share * interruption_bh / 60.0 * svc.revenue_per_hour) if svc.customer_facing else 0.0,
        currency=catalog.currency,
    )  # fmt: skip
