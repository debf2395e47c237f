"""A bounded outbox in front of an ITSM client: the stream never waits for the ITSM.

:meth:`ItsmOutbox.offer` is synchronous and O(1): it queues the record (only the newest version
per problem is kept, older pending versions are superseded) and returns. :meth:`ItsmOutbox.flush`
sends what is due; a retryable failure (:class:`~sinks.itsm.exceptions.ItsmUnavailable`) puts
the record back with exponential backoff (``base_delay * 2**attempt``, capped at ``max_delay``,
at least the ITSM's ``Retry-After``), a permanent one (:class:`ItsmRejected`) drops it and counts
it. When the outbox is full the oldest pending record is dropped and counted, never the stream
blocked: the ``problems`` topic and ClickHouse still hold every version, so a later resync can
repair the ITSM.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

from opsintel.problems import ProblemRecord

from ._base import ItsmClient
from .exceptions import ItsmRejected, ItsmUnavailable

log = logging.getLogger(__name__)


@dataclass(slots=True)
class _Pending:
    record: ProblemRecord
    attempts: int = 0
    due: float = 0.0


class ItsmOutbox:
    """Bounded, coalescing retry queue of problem records for one ITSM client.

    Parameters
    ----------
    client
        Anything with ``async push(record) -> str`` (see :mod:`sinks.itsm`).
    max_pending
        Problems waiting at most; beyond it the oldest is dropped (``dropped`` counts them).
    base_delay, max_delay
        Backoff of a retryable failure, seconds.
    clock
        Monotonic clock (injectable for tests).
    """

    def __init__(
        self,
        client: ItsmClient,
        *,
        max_pending: int = 10_000,
        base_delay: float = 1.0,
        max_delay: float = 300.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if max_pending < 1:
            raise ValueError("max_pending must be >= 1")
        self.client = client
        self.max_pending = max_pending
        self.base_delay = base_delay
        self.max_delay = max_delay
        self._clock = clock
        self._pending: dict[str, _Pending] = {}
        self.sent = 0
        self.dropped = 0
        self.rejected = 0
        self.retries = 0

    def __len__(self) -> int:
        return len(self._pending)

    def offer(self, record: ProblemRecord) -> None:
        """Queue a record version without waiting; an older pending version of it is superseded."""
        old = self._pending.get(record.problem_id)
        if old is not None:
            if record.version >= old.record.version:
                old.record = record  # keep its place, attempts and due time
            return
        if len(self._pending) >= self.max_pending:
            victim = next(iter(self._pending))
            del self._pending[victim]
            self.dropped += 1
            log.warning("%s outbox full: dropped pending problem %s", self.client.name, victim)
        self._pending[record.problem_id] = _Pending(record, due=self._clock())

    def next_due(self) -> float | None:
        """Clock time of the earliest pending attempt (``None`` when empty)."""
        return min((p.due for p in self._pending.values()), default=None)

    async def flush(self) -> int:
        """Try every due record once; returns how many were delivered."""
        now = self._clock()
        delivered = 0
        for pid in [pid for pid, p in self._pending.items() if p.due <= now]:
            item = self._pending.get(pid)
            if item is None:
                continue
            record = item.record
            try:
                await self.client.push(record)
            except ItsmUnavailable as e:
                item.attempts += 1
                self.retries += 1
                delay = min(self.max_delay, self.base_delay * 2 ** (item.attempts - 1))
                item.due = self._clock() + max(delay, min(e.retry_after, self.max_delay))
                log.warning("%s push of %s failed (attempt %d), retry in %.1fs: %s",
                            self.client.name, pid, item.attempts, item.due - self._clock(), e)  # fmt: skip
                continue
            except ItsmRejected as e:
                self.rejected += 1
                log.error("%s rejected problem %s, dropped: %s", self.client.name, pid, e)
            else:
                delivered += 1
                self.sent += 1
            # a newer version may have arrived while we awaited: keep it pending
            current = self._pending.get(pid)
            if current is not None and current.record.version == record.version:
                del self._pending[pid]
        return delivered

    async def run(self, stop: asyncio.Event, idle: float = 1.0) -> None:
        """Flush until ``stop`` is set (the worker runs this as a background task)."""
        while not stop.is_set():
            await self.flush()
            due = self.next_due()
            wait = idle if due is None else min(idle, max(0.0, due - self._clock()))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=max(wait, 0.01))
