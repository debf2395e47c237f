"""Writes of the analytics tables, mixed into :class:`sinks.clickhouse.store.ClickHouseStore`.

Kept apart from ``store.py`` so the backbone store stays small; the columns come from
:mod:`sinks.clickhouse.analytics_schema`, so DDL and inserts cannot drift apart.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from operator import attrgetter
from typing import Any

import msgspec

from opsintel.problems import Feedback, FeedbackAction, ProblemRecord, newest_versions
from sinks.clickhouse.schema import TABLES_BY_NAME, Table

#: the status a decision gives a stored problem record
DECISION_STATUS = {
    FeedbackAction.OPEN: "open", FeedbackAction.CONFIRM: "confirmed", FeedbackAction.REJECT: "rejected",
    FeedbackAction.RESOLVE: "resolved", FeedbackAction.REOPEN: "open",
}  # fmt: skip


def problem_row(rec: ProblemRecord) -> dict[str, Any]:
    """One ``problems`` row: the record flattened, the full evidence kept as JSON."""
    change, lead, kb, sig = rec.suspect_change, rec.monitoring_first, rec.suggested_knowledge, rec.signals
    return {
        "problem_id": rec.problem_id, "kind": rec.kind, "version": rec.version, "status": str(rec.status),
        "title": rec.title, "first_seen": rec.first_seen, "last_seen": rec.last_seen,
        "raised_at": rec.raised_at, "updated_at": rec.updated_at, "source": rec.source,
        "service": rec.service, "ci": rec.ci, "category": rec.category, "incident_count": rec.incident_count,
        "why_rule": rec.why.rule, "shared_attributes": dict(rec.why.shared_attributes),
        "similarity": rec.why.similarity, "rate_vs_baseline": rec.why.rate_vs_baseline,
        "suspect_change": change.change_id if change else "", "suspect_change_match": change.match if change else "",
        "suspect_change_delta_hours": change.delta_hours if change else None,
        "monitoring_alert": lead.alert_name if lead else "", "monitoring_lead_hours": lead.lead_hours if lead else None,
        "suggested_article": kb.article if kb else "", "suggested_article_share": kb.share if kb else None,
        "mean_reassignments": sig.mean_reassignments, "reopen_rate": sig.reopen_rate,
        "sla_response_met_rate": sig.sla_response_met_rate, "sla_resolution_met_rate": sig.sla_resolution_met_rate,
        "merged_into": rec.merged_into, "feedback_action": str(rec.feedback.action) if rec.feedback else "",
        "evidence_json": msgspec.json.encode(rec.why, order="sorted").decode(),
    }  # fmt: skip


#: a problem's links as written: (source, ticket_id) -> linked
_Links = dict[tuple[str, str], bool]
#: per problem: the version last written and its links
_Written = dict[str, tuple[int, _Links]]


class LinkLedger:
    """What ``problem_incidents`` holds for each problem, so that the next version of a problem
    writes only the links that changed.

    Every version of a problem lists its (up to ``max_ids``) newest incidents; writing a link row
    for each of them on every version made a busy problem cost a dozen link rows per version
    (81,139 rows for 6,446 versions over a 3x replay of the ServiceNow log). The table keeps the
    newest version of each (problem, incident) pair, and readers only ask whether a pair is
    ``linked``, so a pair whose state is unchanged needs no new row: its row from the version
    that last changed it stays the newest one.

    Where a problem's links stand: nowhere yet for its first version; for the version after the
    last one this store wrote, what it wrote; otherwise (a restart, a replay from a checkpoint, a
    version written by another worker after a rebalance, a problem the ledger has forgotten - it
    keeps ``capacity`` problems) what the table holds, read back (``stored``). Reading back, not
    writing everything again, keeps the table the same after a crash and replay as without one:
    a replayed version writes the rows it wrote the first time, or rows older than the ones that
    replaced them. Nothing is recorded until the insert has succeeded, so a retried insert writes
    the same rows.
    """

    def __init__(self, capacity: int = 10_000) -> None:
        self.capacity = capacity
        self._written: OrderedDict[str, tuple[int, _Links]] = OrderedDict()

    def changes(self, records: Sequence[ProblemRecord], source: str,
                stored: Callable[[list[str]], dict[str, _Links]]) -> tuple[list[dict[str, Any]], _Written]:
        """The link rows ``records`` need (in version order per problem), and the ledger's state
        once they are written (pass it to :meth:`commit`). ``stored`` reads the links the table
        holds for the given problems."""
        ordered = sorted(records, key=lambda r: r.version)
        first: dict[str, int] = {}
        for r in ordered:
            first.setdefault(r.problem_id, r.version)
        unknown = [pid for pid, v in first.items() if v > 1 and self._follows(pid) != v]
        after: _Written = {pid: (first[pid] - 1, links) for pid, links in stored(unknown).items()} if unknown else {}
        rows: list[dict[str, Any]] = []
        for r in ordered:
            known = after.get(r.problem_id) or self._written.get(r.problem_id)
            before = known[1] if known is not None and r.version > 1 else {}
            src = r.source or source
            now = dict(before)
            for ids, linked in ((r.incident_ids, True), (r.unlinked_incident_ids, False)):
                state = linked and not r.merged_into
                for t in ids:
                    now[src, t] = state
            rows += [{"problem_id": r.problem_id, "source": s, "ticket_id": t, "version": r.version, "linked": v,
                      "linked_at": r.updated_at}
                     for (s, t), v in now.items() if before.get((s, t)) is not v]  # fmt: skip
            after[r.problem_id] = (r.version, now)
        return rows, after

    def _follows(self, problem_id: str) -> int | None:
        """The version that follows the last one written here for ``problem_id`` (None: none)."""
        known = self._written.get(problem_id)
        return known[0] + 1 if known is not None else None

    def commit(self, after: _Written) -> None:
        for problem_id, state in after.items():
            self._written[problem_id] = state
            self._written.move_to_end(problem_id)
        while len(self._written) > self.capacity:
            self._written.popitem(last=False)


#: rows whose attributes :func:`_columns` reads together (a few hundred rows stay in the CPU cache)
_TILE = 256


def _columns(rows: Sequence[Any], names: Sequence[str]) -> list[list[Any]]:
    """Rows (all mappings, or all objects with those attributes) as one list per column: the
    shape every insert of the store sends (``column_oriented``).

    Objects are read ``_TILE`` rows at a time, every column of those rows before the next rows.
    Reading one column down all 10,000 rows of a batch and then the next fetches each row object
    from memory once per column when the objects lie apart in memory (rows kept or sorted after
    they were made, as in a long-running worker): 2.3 µs a ticket event instead of 1.6 µs
    (``bench/bench_inserts.py``'s time-sorted events); the same when they lie in order.
    """
    if isinstance(rows[0], Mapping):
        return [[r[name] for r in rows] for name in names]
    getters = [attrgetter(name) for name in names]
    columns: list[list[Any]] = [[] for _ in names]
    for start in range(0, len(rows), _TILE):
        tile = rows[start : start + _TILE]
        for column, get in zip(columns, getters, strict=True):
            column.extend(map(get, tile))
    return columns


class AnalyticsWrites:
    """``insert_incident_impact`` / ``insert_problems`` / ``insert_anomalies`` (all idempotent)."""

    def _insert(self, table: Table, columns: list[list[Any]]) -> None:  # provided by ClickHouseStore
        raise NotImplementedError

    def _insert_objects(self, table: Table, rows: Sequence[Any], extra: Sequence[Sequence[Any]] = ()) -> None:
        raise NotImplementedError  # provided by ClickHouseStore

    def query(self, sql: str, parameters: dict[str, Any] | None = None) -> list[tuple[Any, ...]]:
        raise NotImplementedError

    def _command(self, sql: str, parameters: dict[str, Any] | None = None) -> None:
        raise NotImplementedError

    #: where each problem's links stand (:class:`LinkLedger`); set by ClickHouseStore
    _links: LinkLedger

    def _insert_rows(self, name: str, rows: Sequence[Any]) -> int:
        if not rows:
            return 0
        self._insert_objects(TABLES_BY_NAME[name], rows)
        return len(rows)

    def insert_incident_impact(self, rows: Sequence[Any]) -> int:
        """Write :class:`opsintel.impact.ImpactRow` s (the newest ``version`` of an incident wins)."""
        return self._insert_rows("incident_impact", rows)

    def insert_problems(self, records: Sequence[ProblemRecord], *, source: str = "") -> int:
        """Write problem records and their incident links (``source`` names the incidents' source
        when the record does not).

        Of several versions of one problem in ``records`` only the newest is written to
        ``problems`` (the table keeps the newest anyway). ``problem_incidents`` gets a row per
        link that is new or changed since the version before (:class:`LinkLedger`): a linked
        one per incident of the problem, an unlinked one per incident a human moved out of it
        (split or merge); each pair's newest row is its state."""
        if not records:
            return 0
        self._insert_rows("problems", [problem_row(r) for r in newest_versions(records)])
        links, after = self._links.changes(records, source, self._stored_links)
        self._insert_rows("problem_incidents", links)
        self._links.commit(after)
        return len(records)

    def _stored_links(self, problem_ids: list[str]) -> dict[str, _Links]:
        """What ``problem_incidents`` holds for these problems: (source, ticket_id) -> linked.
        ``PREWHERE``: ``problem_id`` is in the sorting key, so filtering before ``FINAL`` is exact,
        and it spares merging the rest of the table (a ``WHERE`` is applied after ``FINAL``)."""
        out: dict[str, _Links] = {pid: {} for pid in problem_ids}
        for pid, src, ticket, linked in self.query(
            "SELECT problem_id, source, ticket_id, linked FROM {db}.problem_incidents FINAL "
            "PREWHERE problem_id IN {ids:Array(String)}",
            {"ids": problem_ids},
        ):
            out[pid][src, ticket] = bool(linked)
        return out

    def insert_anomalies(self, rows: Sequence[Any]) -> int:
        """Write anomalies: objects or mappings with the ``anomalies`` columns."""
        return self._insert_rows("anomalies", rows)

    def record_decision(self, fb: Feedback) -> bool:
        """Apply a human decision to the stored record of a problem no detector tracks any more:
        a new version with the decided status. Returns False when there is no such problem."""
        status = DECISION_STATUS.get(fb.action)
        if status is None:  # split/merge need the detector's groups: nothing to do on a bare record
            return False
        names = TABLES_BY_NAME["problems"].column_names
        replaced = {"version": "version + 1", "status": "{status:String}", "feedback_action": "{action:String}",
                    "updated_at": "greatest(updated_at, now64(3))"}
        select = ", ".join(f"{replaced[c]} AS {c}" if c in replaced else c for c in names)
        found = self.query("SELECT count() FROM {db}.problems WHERE problem_id = {id:String}", {"id": fb.problem_id})
        if not found or not found[0][0]:
            return False
        self._command(
            f"INSERT INTO {{db}}.problems ({', '.join(names)}) SELECT {select} FROM {{db}}.problems FINAL "  # noqa: S608
            "PREWHERE problem_id = {id:String}",
            {"id": fb.problem_id, "status": status, "action": str(fb.action)},
        )
        return True
