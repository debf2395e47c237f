"""The configured ITSM targets, built from settings, and delivery of a batch of problem records to
all of them: offer every record to each target's outbox, then wait until every outbox is empty."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Iterable
from pathlib import Path

from opsintel.problems import ProblemRecord
from opsintel.settings import Settings

from ._base import ExternalIdStore, ItsmClient
from ._outbox import ItsmOutbox
from .servicedesk_plus import ServiceDeskPlusProblemClient
from .servicenow import ServiceNowProblemClient
from .webhook import WebhookProblemClient


def external_id_path(settings: Settings) -> Path:
    """Where the ITSM ids of pushed problems are kept across restarts."""
    return settings.data_dir / "itsm" / "external-ids.json"


def clients_from_settings(settings: Settings, store: ExternalIdStore | None = None) -> list[ItsmClient]:
    """One client per configured target (empty URL = off), sharing one persistent id store.

    >>> clients_from_settings(Settings())
    []
    """
    if not settings.itsm_targets:
        return []
    store = store or ExternalIdStore(external_id_path(settings))
    clients: list[ItsmClient] = []
    if settings.itsm_servicenow_url:
        clients.append(ServiceNowProblemClient(
            settings.itsm_servicenow_url, username=settings.itsm_servicenow_username,
            password=settings.itsm_servicenow_password.get_secret_value(),
            token=settings.itsm_servicenow_token.get_secret_value(), table=settings.itsm_servicenow_table,
            store=store))  # fmt: skip
    if settings.itsm_servicedesk_plus_url:
        clients.append(ServiceDeskPlusProblemClient(
            settings.itsm_servicedesk_plus_url,
            authtoken=settings.itsm_servicedesk_plus_authtoken.get_secret_value(),
            oauth_token=settings.itsm_servicedesk_plus_oauth_token.get_secret_value(), store=store))  # fmt: skip
    if settings.itsm_webhook_url:
        clients.append(WebhookProblemClient(
            settings.itsm_webhook_url, secret=settings.itsm_webhook_secret.get_secret_value(), store=store))
    return clients


class ItsmDelivery:
    """Pushes batches of problem records to every target and returns only once each has them.

    Each target has its own :class:`ItsmOutbox`: a retryable failure is retried with the outbox's
    backoff (so one slow target does not stop the others from draining), a rejected record is
    dropped by the outbox. :meth:`deliver` returning is the caller's cue to commit the batch.

    Parameters
    ----------
    outboxes
        One per target.
    on_progress
        Called with an outbox after each of its flushes (metrics).
    sleep, clock
        Injectable for tests; ``clock`` must be the outboxes' clock.
    """

    def __init__(
        self,
        outboxes: Iterable[ItsmOutbox],
        *,
        on_progress: Callable[[ItsmOutbox], None] | None = None,
        sleep: Callable[[float], Awaitable[object]] = asyncio.sleep,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.outboxes = list(outboxes)
        self._on_progress = on_progress
        self._sleep = sleep
        self._clock = clock

    @classmethod
    def from_settings(cls, settings: Settings, *, on_progress: Callable[[ItsmOutbox], None] | None = None,
                      max_pending: int = 10_000) -> ItsmDelivery | None:
        """The delivery to the configured targets, or ``None`` when none is configured."""
        clients = clients_from_settings(settings)
        if not clients:
            return None
        return cls([ItsmOutbox(c, max_pending=max_pending) for c in clients], on_progress=on_progress)

    @property
    def targets(self) -> list[str]:
        return [box.client.name for box in self.outboxes]

    async def deliver(self, records: Iterable[ProblemRecord]) -> None:
        """Offer the newest version of each problem to every target and wait until all have it."""
        latest: dict[str, ProblemRecord] = {}
        for r in records:
            if r.problem_id not in latest or r.version >= latest[r.problem_id].version:
                latest[r.problem_id] = r
        for box in self.outboxes:
            for r in latest.values():
                box.offer(r)
        await asyncio.gather(*(self._drain(box) for box in self.outboxes))

    async def _drain(self, box: ItsmOutbox) -> None:
        while True:
            await box.flush()
            if self._on_progress is not None:
                self._on_progress(box)
            due = box.next_due()
            if due is None:
                return
            await self._sleep(max(0.0, due - self._clock()))

    async def close(self) -> None:
        for box in self.outboxes:
            await box.client.close()
