"""ManageEngine ServiceDesk Plus (API v3) push: one SDP problem per opsintel problem.

What is implemented, after the SDP v3 REST docs (``/api/v3/problems``):

* create: ``POST {base}/api/v3/problems``; update: ``PUT {base}/api/v3/problems/{id}``;
* body: form-encoded field ``input_data`` holding JSON ``{"problem": {...}}`` with ``title``,
  ``description`` (the evidence, HTML line breaks) and, when a ``status_map`` names one,
  ``status: {"name": ...}`` (status names are instance configuration, so none is sent by default);
* the SDP id is read from the response ``{"problem": {"id": ...}, "response_status": {...}}`` and
  stored; a ``response_status.status_code`` other than 2000 is an error;
* auth: on-premises ``authtoken: <technician key>`` header, or SDP Cloud
  ``Authorization: Zoho-oauthtoken <token>``; ``Accept: application/vnd.manageengine.sdp.v3+json``.

SDP has no field to look a problem up by our id, so the external id store is the only memory
of what was created: give the client a persistent :class:`~sinks.itsm.ExternalIdStore`.
"""

from __future__ import annotations

import html
import json
from collections.abc import Mapping
from typing import Any

from opsintel.problems import ProblemRecord, ProblemStatus

from ._base import ExternalIdStore, HttpClientBase, describe, request_json
from .exceptions import ItsmRejected, ItsmUnavailable


class ServiceDeskPlusProblemClient(HttpClientBase):
    """Create-then-update a ServiceDesk Plus problem per opsintel problem (idempotent).

    >>> c = ServiceDeskPlusProblemClient("https://sdp.example:8080", authtoken="ABCD-1234")
    >>> "ABCD" in repr(c)
    False
    """

    name = "servicedesk_plus"

    def __init__(
        self,
        base_url: str,
        *,
        authtoken: str = "",
        oauth_token: str = "",
        store: ExternalIdStore | None = None,
        status_map: Mapping[str, str] | None = None,
        timeout: float = 10.0,
    ) -> None:
        if bool(authtoken) == bool(oauth_token):
            raise ValueError("ServiceDesk Plus needs exactly one of authtoken (on-prem) or oauth_token (cloud)")
        super().__init__(timeout)
        self.base_url = base_url.rstrip("/")
        self.__authtoken = authtoken
        self.__oauth_token = oauth_token
        self.store = store or ExternalIdStore()
        self.status_map = dict(status_map or {})

    def __repr__(self) -> str:
        kind = "authtoken" if self.__authtoken else "zoho-oauthtoken"
        return f"ServiceDeskPlusProblemClient({self.base_url!r}, auth={kind}, secret=***)"

    def _auth_headers(self) -> dict[str, str]:
        auth = (
            {"authtoken": self.__authtoken}
            if self.__authtoken
            else {"Authorization": f"Zoho-oauthtoken {self.__oauth_token}"}
        )
        return {**auth, "Accept": "application/vnd.manageengine.sdp.v3+json"}

    def body(self, record: ProblemRecord) -> dict[str, Any]:
        """The ``problem`` object sent inside ``input_data``."""
        problem: dict[str, Any] = {
            "title": record.title[:250],
            "description": html.escape(describe(record)).replace("\n", "<br>"),
        }
        status = self.status_map.get(ProblemStatus(record.status).value)
        if status:
            problem["status"] = {"name": status}
        return {"problem": problem}

    async def push(self, record: ProblemRecord) -> str:
        """Create the problem (once) or update it; returns the SDP problem id."""
        session = await self.session()
        sdp_id = self.store.get(self.name, record.problem_id)
        form = {"input_data": json.dumps(self.body(record))}
        if sdp_id is None:
            reply = await request_json(session, "POST", f"{self.base_url}/api/v3/problems", self.name, data=form)
        else:
            reply = await request_json(
                session, "PUT", f"{self.base_url}/api/v3/problems/{sdp_id}", self.name, data=form
            )
        status = ((reply or {}).get("response_status") or {}).get("status_code", 2000)
        if status != 2000:
            raise ItsmRejected(f"{self.name}: response_status {status}", 400)
        if sdp_id is None:
            try:
                sdp_id = str(reply["problem"]["id"])
            except (TypeError, KeyError) as e:
                raise ItsmUnavailable(f"{self.name}: create returned no problem.id") from e
            self.store.set(self.name, record.problem_id, sdp_id)
        return sdp_id
