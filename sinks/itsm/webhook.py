"""Generic signed webhook: POST the problem record as JSON, HMAC-SHA256 signed.

Headers: ``X-Opsintel-Timestamp`` (Unix seconds), ``X-Opsintel-Signature``
(``sha256=<hex HMAC-SHA256 of "<timestamp>." + body>``, the Stripe / Slack scheme: binding the
timestamp lets receivers refuse replays older than a few minutes) and ``X-Opsintel-Idempotency-Key``
(``<problem_id>:<version>``). Body: ``{"event": "problem.upsert", "problem": <ProblemRecord JSON>}``.
The receiver creates on the first delivery of a ``problem_id`` and updates afterwards; the
external id stored is the receiver's ``id`` from a JSON reply, else the problem id.

>>> sig = sign(b"secret", "1700000000", b'{"a":1}')
>>> sig.startswith("sha256="), verify(b"secret", "1700000000", b'{"a":1}', sig)
(True, True)
"""

from __future__ import annotations

import hashlib
import hmac
import time
from collections.abc import Callable

import msgspec

from opsintel.problems import ProblemRecord

from ._base import ExternalIdStore, HttpClientBase, request_json

TIMESTAMP_HEADER = "X-Opsintel-Timestamp"
SIGNATURE_HEADER = "X-Opsintel-Signature"
IDEMPOTENCY_HEADER = "X-Opsintel-Idempotency-Key"


def sign(secret: bytes, timestamp: str, body: bytes) -> str:
    """``sha256=`` + hex HMAC-SHA256 of ``timestamp + "." + body``."""
    return "sha256=" + hmac.new(secret, timestamp.encode() + b"." + body, hashlib.sha256).hexdigest()


def verify(secret: bytes, timestamp: str, body: bytes, signature: str) -> bool:
    """Constant-time check of a signature made by :func:`sign` (for receivers and tests)."""
    return hmac.compare_digest(sign(secret, timestamp, body), signature)


class _Envelope(msgspec.Struct):
    event: str
    problem: ProblemRecord


class WebhookProblemClient(HttpClientBase):
    """POST every problem version to a URL, signed with a shared secret.

    >>> c = WebhookProblemClient("https://hooks.example/opsintel", secret="whsec")
    >>> "whsec" in repr(c)
    False
    """

    name = "webhook"

    def __init__(
        self,
        url: str,
        *,
        secret: str,
        store: ExternalIdStore | None = None,
        timeout: float = 10.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if not secret:
            raise ValueError("the webhook needs a signing secret")
        super().__init__(timeout)
        self.url = url
        self.__secret = secret.encode()
        self.store = store or ExternalIdStore()
        self._clock = clock

    def __repr__(self) -> str:
        return f"WebhookProblemClient({self.url!r}, secret=***)"

    async def push(self, record: ProblemRecord) -> str:
        body = msgspec.json.encode(_Envelope(event="problem.upsert", problem=record))
        ts = str(int(self._clock()))
        headers = {
            "Content-Type": "application/json",
            TIMESTAMP_HEADER: ts,
            SIGNATURE_HEADER: sign(self.__secret, ts, body),
            IDEMPOTENCY_HEADER: f"{record.problem_id}:{record.version}",
        }
        session = await self.session()
        reply = await request_json(session, "POST", self.url, self.name, data=body, headers=headers)
        ext = str(reply["id"]) if isinstance(reply, dict) and reply.get("id") else record.problem_id
        self.store.set(self.name, record.problem_id, ext)
        return ext
