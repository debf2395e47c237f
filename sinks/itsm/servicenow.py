"""ServiceNow Table API push: one ``problem`` record per opsintel problem.

What is sent (documented so an instance admin can map it):

* create: ``POST {base}/api/now/table/problem`` with JSON ``short_description`` (the title),
  ``description`` (the evidence as text), ``correlation_id`` (the opsintel problem id),
  ``correlation_display`` (``"opsintel"``), ``state`` and, when known, ``cmdb_ci`` / ``category``;
  the ``sys_id`` from the response ``{"result": {...}}`` is stored;
* update: ``PATCH {base}/api/now/table/problem/{sys_id}`` with the same fields;
* before the first create the client looks the record up by ``correlation_id``
  (``GET …/problem?sysparm_query=correlation_id=<id>&sysparm_limit=1&sysparm_fields=sys_id``), so a
  create whose response was lost is not repeated after a restart;
* auth: basic (``username`` / ``password``) or ``Authorization: Bearer <token>`` (OAuth).

``state`` uses the default problem states of recent releases (101 New, 103 Root Cause Analysis,
106 Resolved, 107 Closed); pass ``state_map`` to match a customised instance, or ``{}`` to omit it.
"""

from __future__ import annotations

import base64
from collections.abc import Mapping
from typing import Any
from urllib.parse import quote

from opsintel.problems import ProblemRecord, ProblemStatus

from ._base import ExternalIdStore, HttpClientBase, describe, request_json
from .exceptions import ItsmUnavailable

DEFAULT_STATE_MAP: dict[str, str] = {
    "candidate": "101",
    "open": "101",
    "confirmed": "103",
    "resolved": "106",
    "rejected": "107",
    "merged": "107",
}


class ServiceNowProblemClient(HttpClientBase):
    """Create-then-update a ServiceNow problem per opsintel problem (idempotent).

    >>> c = ServiceNowProblemClient("https://acme.service-now.com", username="bot", password="s3cret")
    >>> "s3cret" in repr(c)
    False
    """

    name = "servicenow"

    def __init__(
        self,
        base_url: str,
        *,
        username: str = "",
        password: str = "",
        token: str = "",
        table: str = "problem",
        store: ExternalIdStore | None = None,
        state_map: Mapping[str, str] | None = None,
        timeout: float = 10.0,
    ) -> None:
        if not token and not (username and password):
            raise ValueError("ServiceNow needs username + password (basic) or a bearer token")
        super().__init__(timeout)
        self.base_url = base_url.rstrip("/")
        self.table = table
        self._username = username
        self.__password = password
        self.__token = token
        self.store = store or ExternalIdStore()
        self.state_map = dict(DEFAULT_STATE_MAP if state_map is None else state_map)

    def __repr__(self) -> str:
        auth = "bearer" if self.__token else f"basic user={self._username!r}"
        return f"ServiceNowProblemClient({self.base_url!r}, table={self.table!r}, auth={auth}, secret=***)"

    def _auth_headers(self) -> dict[str, str]:
        if self.__token:
            auth = f"Bearer {self.__token}"
        else:
            auth = "Basic " + base64.b64encode(f"{self._username}:{self.__password}".encode()).decode()
        return {"Authorization": auth, "Accept": "application/json", "Content-Type": "application/json"}

    def body(self, record: ProblemRecord) -> dict[str, Any]:
        """The fields sent on create and update."""
        out: dict[str, Any] = {
            "short_description": record.title[:160],
            "description": describe(record),
            "correlation_id": record.problem_id,
            "correlation_display": "opsintel",
        }
        state = self.state_map.get(ProblemStatus(record.status).value)
        if state:
            out["state"] = state
        if record.ci:
            out["cmdb_ci"] = record.ci
        if record.category:
            out["category"] = record.category
        return out

    async def push(self, record: ProblemRecord) -> str:
        """Create the problem (once) or update it; returns its ``sys_id``."""
        session = await self.session()
        url = f"{self.base_url}/api/now/table/{self.table}"
        sys_id = self.store.get(self.name, record.problem_id)
        if sys_id is None:
            query = quote(f"correlation_id={record.problem_id}", safe="=")
            found = await request_json(
                session, "GET", f"{url}?sysparm_query={query}&sysparm_limit=1&sysparm_fields=sys_id", self.name
            )
            hits = (found or {}).get("result") or []
            sys_id = hits[0]["sys_id"] if hits else None
        if sys_id is None:
            created = await request_json(session, "POST", url, self.name, json=self.body(record))
            try:
                sys_id = str(created["result"]["sys_id"])
            except (TypeError, KeyError) as e:
                raise ItsmUnavailable(f"{self.name}: create returned no result.sys_id") from e
        else:
            await request_json(session, "PATCH", f"{url}/{sys_id}", self.name, json=self.body(record))
        self.store.set(self.name, record.problem_id, sys_id)
        return sys_id
