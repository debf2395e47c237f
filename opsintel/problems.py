"""Problem records: what a detector raises, and the human decisions that come back.

A :class:`ProblemRecord` is one candidate ITIL *problem* (the cause of one or more incidents).
Detectors raise it, update it as evidence grows and never duplicate it: ``problem_id`` is
stable for the life of the problem and ``version`` grows with every change, so every consumer
(the ``problems`` topic, ClickHouse ``ReplacingMergeTree``, the ITSM pushes) keeps the latest
version and can drop replays. ``kind`` says which detector raised it: ``"recurring"`` (similar
incidents grouped in a sliding window) or ``"trend"`` (a sustained metric anomaly); the
kind-specific numbers go to :attr:`ProblemRecord.details`.

A :class:`Feedback` is a problem manager's decision (confirm, reject as a false positive, merge
two problems, split incidents out, resolve, reopen) arriving on the ``feedback`` topic; the
detector applies it and respects it afterwards.

Both are msgspec structs (the pure core imports neither Faust nor Kafka) with a JSON wire format.

>>> from datetime import datetime, timezone
>>> t = datetime(2016, 3, 1, 9, 0, tzinfo=timezone.utc)
>>> rec = ProblemRecord(problem_id="PRB-1a2b", kind="recurring", version=1, status=ProblemStatus.CANDIDATE,
...                     title="5 incidents: Category 55 / Symptom 72", first_seen=t, last_seen=t,
...                     raised_at=t, updated_at=t, incident_ids=["INC1", "INC2"], incident_count=2)
>>> decode_problem(encode_problem(rec)) == rec
True
>>> rec.status is ProblemStatus.CANDIDATE
True
>>> decode_feedback(b'{"problem_id": "PRB-1a2b", "action": "reject"}').action
<FeedbackAction.REJECT: 'reject'>
"""

from __future__ import annotations

import enum
from collections.abc import Iterable
from datetime import datetime
from typing import Any, Literal

import msgspec

ProblemKind = Literal["recurring", "trend"]


class ProblemStatus(enum.StrEnum):
    """Life cycle of a problem record.

    ``candidate`` is what a detector raises; a human (or the ITSM push) moves it to ``open``;
    ``confirmed`` means the cause is real; ``rejected`` marks a false positive (not raised again
    unless the group changes materially); ``merged`` points to the surviving problem
    (:attr:`ProblemRecord.merged_into`); ``resolved`` closes it.
    """

    CANDIDATE = "candidate"
    OPEN = "open"
    CONFIRMED = "confirmed"
    REJECTED = "rejected"
    MERGED = "merged"
    RESOLVED = "resolved"


class FeedbackAction(enum.StrEnum):
    """A decision a problem manager can take on a raised problem."""

    OPEN = "open"
    CONFIRM = "confirm"
    REJECT = "reject"
    MERGE = "merge"  #: merge ``problem_id`` into ``into``
    SPLIT = "split"  #: move ``incident_ids`` out of ``problem_id``
    RESOLVE = "resolve"
    REOPEN = "reopen"


class Evidence(msgspec.Struct, kw_only=True, omit_defaults=True):
    """Why the incidents were grouped and why the group was raised."""

    shared_attributes: dict[str, str] = msgspec.field(default_factory=dict)
    """attribute -> value most linked incidents share (e.g. ``{"category": "Category 55"}``)"""
    attribute_share: dict[str, float] = msgspec.field(default_factory=dict)
    """attribute -> share of the linked incidents that carry the shared value"""
    top_terms: list[str] = msgspec.field(default_factory=list)
    """most frequent normalised words of the incidents' free text (empty for coded data)"""
    similarity: float = 0.0
    """mean similarity of the linked incidents to the group (1.0 = identical context)"""
    count_in_window: int = 0
    window_hours: float = 0.0
    baseline_count: float = 0.0
    """what a group of this service usually reaches within one window"""
    rate_vs_baseline: float = 0.0
    """``count_in_window / baseline_count``"""
    rule: str = ""
    """the raise rule that fired, in words"""


class SuspectChange(msgspec.Struct, kw_only=True, omit_defaults=True):
    """A change that may have caused the problem."""

    change_id: str
    match: str
    """how it was found: ``"related_change"`` (named on the tickets), ``"ci"`` or ``"service"``"""
    change_time: datetime | None = None
    delta_hours: float | None = None
    """first incident time minus change time (positive = change came first)"""
    ci: str = ""
    service: str = ""
    incidents_naming_it: int = 0


class MonitoringLead(msgspec.Struct, kw_only=True, omit_defaults=True):
    """Monitoring saw it first: alerts on the same service / CI before the first incident."""

    alert_name: str
    fingerprint: str
    first_fired: datetime
    lead_hours: float
    """first incident time minus first alert time"""
    alert_count: int = 1
    match: str = ""


class KnowledgeSuggestion(msgspec.Struct, kw_only=True, omit_defaults=True):
    """The knowledge article most used to resolve the linked incidents."""

    article: str
    used_by: int
    share: float


class TicketSignals(msgspec.Struct, kw_only=True, omit_defaults=True):
    """What the linked tickets say about how the desk handles this problem."""

    mean_reassignments: float | None = None
    reopen_rate: float | None = None
    sla_response_met_rate: float | None = None
    """share of tickets whose SLA flag (the source's ``made_sla``) is true"""
    sla_resolution_met_rate: float | None = None
    """share of resolved tickets resolved within the priority's resolution target"""
    resolved_share: float | None = None
    mean_hours_to_resolve: float | None = None
    knowledge_used_rate: float | None = None


class FeedbackNote(msgspec.Struct, kw_only=True, omit_defaults=True):
    """The last human decision applied to a record."""

    action: FeedbackAction
    by: str = ""
    at: datetime | None = None
    note: str = ""


class ProblemRecord(msgspec.Struct, kw_only=True, omit_defaults=True):
    """One problem, as raised and updated by a detector.

    Consumers keep the highest ``version`` per ``problem_id``. ``incident_ids`` may be capped (the
    newest are kept); ``incident_count`` is always the full number of linked incidents.
    ``unlinked_incident_ids`` lists the incidents a human decision moved out of this problem (split
    out, or moved to the surviving problem of a merge): a consumer that keeps one row per
    (problem, incident) link marks these unlinked. Every version repeats them (capped like
    ``incident_ids``), so a consumer that only keeps the latest version still sees them.
    """

    problem_id: str
    kind: ProblemKind
    version: int
    status: ProblemStatus
    title: str
    first_seen: datetime
    last_seen: datetime
    raised_at: datetime
    updated_at: datetime
    source: str = ""
    service: str = ""
    ci: str = ""
    category: str = ""
    incident_ids: list[str] = msgspec.field(default_factory=list)
    incident_count: int = 0
    unlinked_incident_ids: list[str] = msgspec.field(default_factory=list)
    why: Evidence = msgspec.field(default_factory=Evidence)
    suspect_change: SuspectChange | None = None
    monitoring_first: MonitoringLead | None = None
    suggested_knowledge: KnowledgeSuggestion | None = None
    signals: TicketSignals = msgspec.field(default_factory=TicketSignals)
    merged_into: str = ""
    feedback: FeedbackNote | None = None
    details: dict[str, Any] = msgspec.field(default_factory=dict)
    """kind-specific extras (e.g. the metric and score of a trend anomaly)"""

    @property
    def partition_key(self) -> str:
        """Kafka key: the problem id, so all versions of one problem stay ordered."""
        return self.problem_id


class Feedback(msgspec.Struct, kw_only=True, omit_defaults=True):
    """A human decision about a problem, as it arrives on the ``feedback`` topic.

    ``into`` names the surviving problem of a ``merge``; ``incident_ids`` the incidents a
    ``split`` moves out.
    """

    problem_id: str
    action: FeedbackAction
    into: str = ""
    incident_ids: list[str] = msgspec.field(default_factory=list)
    by: str = ""
    at: datetime | None = None
    note: str = ""

    def __post_init__(self) -> None:
        if not self.problem_id:
            raise ValueError("`problem_id` must not be empty")
        self.action = FeedbackAction(self.action)  # also when built from a plain string
        if self.action is FeedbackAction.MERGE and (not self.into or self.into == self.problem_id):
            raise ValueError("a merge needs `into`, a different problem id")
        if self.action is FeedbackAction.SPLIT and not self.incident_ids:
            raise ValueError("a split needs `incident_ids`")


_encoder = msgspec.json.Encoder()
_problem_decoder = msgspec.json.Decoder(ProblemRecord)
_feedback_decoder = msgspec.json.Decoder(Feedback)


def newest_versions(records: Iterable[ProblemRecord]) -> list[ProblemRecord]:
    """The newest version of each problem in ``records``, in the order the problems first appear.

    >>> from datetime import UTC
    >>> t = datetime(2016, 3, 1, tzinfo=UTC)
    >>> rs = [ProblemRecord(problem_id=p, kind="recurring", version=v, status="candidate", title="t",
    ...                     first_seen=t, last_seen=t, raised_at=t, updated_at=t) for p, v in
    ...       (("A", 1), ("B", 1), ("A", 3), ("A", 2))]
    >>> [(r.problem_id, r.version) for r in newest_versions(rs)]
    [('A', 3), ('B', 1)]
    """
    newest: dict[str, ProblemRecord] = {}
    for r in records:
        if r.problem_id not in newest or r.version >= newest[r.problem_id].version:
            newest[r.problem_id] = r
    return list(newest.values())


def encode_problem(record: ProblemRecord) -> bytes:
    """Compact JSON of a problem record."""
    return _encoder.encode(record)


def decode_problem(data: bytes | str) -> ProblemRecord:
    """Decode and validate a problem record; raises ``msgspec.DecodeError`` / ``ValidationError``."""
    return _problem_decoder.decode(data)


def encode_feedback(feedback: Feedback) -> bytes:
    return _encoder.encode(feedback)


def decode_feedback(data: bytes | str) -> Feedback:
    """Decode and validate a feedback decision."""
    return _feedback_decoder.decode(data)


def to_jsonable(record: ProblemRecord) -> dict[str, Any]:
    """The record as JSON-compatible builtins (datetimes as ISO strings), for HTTP bodies."""
    out: dict[str, Any] = msgspec.to_builtins(record)
    return out
