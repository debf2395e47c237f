"""What every ITSM client shares: the external-id store, HTTP error mapping, secret hygiene."""

from __future__ import annotations

import json
import logging
import os
import tempfile
from pathlib import Path
from typing import Any, Protocol

import aiohttp

from opsintel.problems import ProblemRecord, ProblemStatus

from .exceptions import ItsmRejected, ItsmUnavailable

log = logging.getLogger(__name__)


class ItsmClient(Protocol):
    """Pushes one problem record; returns the ITSM's id of it. Idempotent: create once, then update."""

    name: str

    async def push(self, record: ProblemRecord) -> str: ...

    async def close(self) -> None: ...


class ExternalIdStore:
    """problem id -> the ITSM's id of it, optionally persisted to a JSON file (atomic rewrite).

    >>> store = ExternalIdStore()
    >>> store.set("servicenow", "PRB-1", "a1b2")
    >>> store.get("servicenow", "PRB-1"), store.get("sdp", "PRB-1")
    ('a1b2', None)
    """

    def __init__(self, path: str | Path | None = None) -> None:
        self._path = Path(path) if path else None
        self._ids: dict[str, dict[str, str]] = {}
        if self._path and self._path.exists():
            self._ids = json.loads(self._path.read_text())

    def get(self, system: str, problem_id: str) -> str | None:
        return self._ids.get(system, {}).get(problem_id)

    def set(self, system: str, problem_id: str, external_id: str) -> None:
        self._ids.setdefault(system, {})[problem_id] = external_id
        if self._path:
            self._path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=self._path.parent, prefix=".ids-")
            with os.fdopen(fd, "w") as f:
                json.dump(self._ids, f, sort_keys=True)
            os.replace(tmp, self._path)


def describe(record: ProblemRecord) -> str:
    """A plain-text body for the ITSM's description field: the evidence a problem manager reads."""
    why = record.why
    lines = [
        f"Raised by opsintel ({record.kind}) from {record.incident_count} incidents, "
        f"{record.first_seen:%Y-%m-%d %H:%M} .. {record.last_seen:%Y-%m-%d %H:%M} UTC.",
        f"Why: {why.rule}; {why.count_in_window} in a {why.window_hours:g} h window, "
        f"{why.rate_vs_baseline:g} x the service baseline; mean similarity {why.similarity:g}.",
    ]
    context = [
        f"{k}={v}" for k, v in (("service", record.service), ("ci", record.ci), ("category", record.category)) if v
    ]
    if context:
        lines.append("Context: " + ", ".join(context))
    if why.shared_attributes:
        lines.append("Shared: " + ", ".join(f"{k}={v}" for k, v in why.shared_attributes.items()))
    if why.top_terms:
        lines.append("Top terms: " + " ".join(why.top_terms))
    if record.suspect_change:
        c = record.suspect_change
        delta = f", {c.delta_hours:g} h before the first incident" if c.delta_hours is not None else ""
        lines.append(f"Suspect change: {c.change_id} ({c.match}{delta})")
    if record.monitoring_first:
        m = record.monitoring_first
        lines.append(f"Monitoring saw it first: {m.alert_name} fired {m.lead_hours:g} h earlier")
    if record.suggested_knowledge:
        k = record.suggested_knowledge
        lines.append(f"Suggested knowledge: {k.article} (used by {k.used_by} of the incidents)")
    s = record.signals
    lines.append(
        f"Signals: mean reassignments {s.mean_reassignments}, reopen rate {s.reopen_rate}, "
        f"SLA response met {s.sla_response_met_rate} vs resolution met {s.sla_resolution_met_rate}"
    )
    lines.append("Incidents: " + ", ".join(record.incident_ids[-50:]))
    return "\n".join(lines)


CLOSED_STATUSES = frozenset({ProblemStatus.REJECTED, ProblemStatus.MERGED, ProblemStatus.RESOLVED})


def retry_after(headers: Any, default: float) -> float:
    """Seconds from a ``Retry-After`` header (delta-seconds form), else ``default``."""
    try:
        return max(0.0, float(headers.get("Retry-After", default)))
    except (TypeError, ValueError):
        return default


async def request_json(session: aiohttp.ClientSession, method: str, url: str, system: str, **kwargs: Any) -> Any:
    """One HTTP call mapped to the typed errors; returns the decoded JSON body (``None`` if empty)."""
    try:
        async with session.request(method, url, **kwargs) as resp:
            text = await resp.text()
            if resp.status in (408, 429) or resp.status >= 500:
                raise ItsmUnavailable(
                    f"{system}: {method} {resp.url.path} -> HTTP {resp.status}",
                    retry_after=retry_after(resp.headers, 1.0),
                )
            if resp.status >= 400:
                raise ItsmRejected(f"{system}: {method} {resp.url.path} -> HTTP {resp.status}: {text[:300]}",
                                   resp.status)  # fmt: skip
            return json.loads(text) if text.strip() else None
    except (aiohttp.ClientError, TimeoutError) as e:
        raise ItsmUnavailable(f"{system}: {method} {url.split('?')[0]} failed: {type(e).__name__}") from e
    except json.JSONDecodeError as e:
        raise ItsmUnavailable(f"{system}: {method} {url.split('?')[0]}: response is not JSON") from e


class HttpClientBase:
    """Lazily created aiohttp session, closed by :meth:`close` / ``async with``."""

    name = "http"

    def __init__(self, timeout: float) -> None:
        self._timeout = aiohttp.ClientTimeout(total=timeout)
        self._session: aiohttp.ClientSession | None = None

    def _auth_headers(self) -> dict[str, str]:
        return {}

    async def session(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(timeout=self._timeout, headers=self._auth_headers())
        return self._session

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def __aenter__(self) -> HttpClientBase:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()
