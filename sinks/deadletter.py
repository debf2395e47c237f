"""Dead letters: records that could not be decoded or validated, kept with their reason.

On Kafka a dead letter is the *original bytes* as the message value, with the reason and origin in
headers (the convention Kafka Connect uses), so nothing about the bad record is lost or rewritten.
The worker reads the dead-letter topic back into the ClickHouse ``dead_letters`` table.

>>> dl = DeadLetter.for_record(b"{oops", reason="bad_json: unexpected end", origin="opsintel.tickets/2/17",
...                            origin_topic="opsintel.tickets")
>>> dl.reason_code
'bad_json'
>>> DeadLetter.from_kafka(dl.payload, dict(dl.kafka_headers())) == dl
True
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime

#: larger payloads are cut to this many bytes (the broker's default message limit is ~1 MB);
#: ``payload_bytes`` keeps the original size
MAX_PAYLOAD = 512 * 1024

HEADER_REASON = "opsintel.reason"
HEADER_ORIGIN = "opsintel.origin"
HEADER_ORIGIN_TOPIC = "opsintel.origin_topic"
HEADER_RECEIVED_AT = "opsintel.received_at"
HEADER_PAYLOAD_BYTES = "opsintel.payload_bytes"


def reason_code(reason: str) -> str:
    """The machine-readable part of a reason: the token before the first colon.

    >>> reason_code("validation: `event_time` out of range")
    'validation'
    """
    head = reason.split(":", 1)[0].strip()
    return head if head and " " not in head and len(head) <= 40 else "invalid"


@dataclass(frozen=True, slots=True)
class DeadLetter:
    dead_letter_id: str
    origin: str  #: where it came from: ``topic/partition/offset`` or ``file:line``
    origin_topic: str
    reason: str
    payload: bytes
    payload_bytes: int
    received_at: datetime = field(default_factory=lambda: datetime.now(UTC))

    @property
    def reason_code(self) -> str:
        return reason_code(self.reason)

    @classmethod
    def for_record(
        cls, raw: bytes, *, reason: str, origin: str, origin_topic: str, received_at: datetime | None = None
    ) -> DeadLetter:
        """A dead letter whose id is derived from its origin, so a re-sent one is counted once."""
        digest = hashlib.blake2b(origin.encode(), digest_size=12).hexdigest()
        return cls(
            dead_letter_id=digest,
            origin=origin,
            origin_topic=origin_topic,
            reason=reason[:2000],
            payload=raw[:MAX_PAYLOAD],
            payload_bytes=len(raw),
            received_at=(received_at or datetime.now(UTC)).replace(microsecond=0),
        )

    def kafka_headers(self) -> list[tuple[str, bytes]]:
        return [
            (HEADER_REASON, self.reason.encode()),
            (HEADER_ORIGIN, self.origin.encode()),
            (HEADER_ORIGIN_TOPIC, self.origin_topic.encode()),
            (HEADER_RECEIVED_AT, self.received_at.isoformat().encode()),
            (HEADER_PAYLOAD_BYTES, str(self.payload_bytes).encode()),
        ]

    @classmethod
    def from_kafka(cls, value: bytes | None, headers: dict[str, bytes]) -> DeadLetter:
        """Rebuild a dead letter from a dead-letter topic message (value + headers)."""

        def text(name: str, default: str = "") -> str:
            raw = headers.get(name)
            return raw.decode("utf-8", "replace") if raw is not None else default

        payload = value or b""
        origin = text(HEADER_ORIGIN, "unknown")
        try:
            received = datetime.fromisoformat(text(HEADER_RECEIVED_AT))
        except ValueError:
            received = datetime.now(UTC).replace(microsecond=0)
        try:
            size = int(text(HEADER_PAYLOAD_BYTES, str(len(payload))))
        except ValueError:
            size = len(payload)
        letter = cls.for_record(
            payload,
            reason=text(HEADER_REASON, "unknown: no reason header"),
            origin=origin,
            origin_topic=text(HEADER_ORIGIN_TOPIC),
            received_at=received,
        )
        return replace(letter, payload_bytes=size)
