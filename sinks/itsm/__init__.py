"""ITSM pushes of problem records: ServiceNow, ManageEngine ServiceDesk Plus, a signed webhook.

Contract: every client's ``async push(record) -> external id`` is idempotent (the first push
creates the ITSM record, later pushes update it; the external id is kept in an
:class:`ExternalIdStore`). Clients raise :class:`ItsmUnavailable` (retry later) or
:class:`ItsmRejected` (do not retry). Put an :class:`ItsmOutbox` in front of a client so a slow or
failing ITSM never blocks the stream: ``offer`` never waits, ``flush`` / ``run`` retry with
backoff. Secrets are kept out of ``repr`` and log messages.

:func:`clients_from_settings` builds the targets configured in ``OPSINTEL_ITSM_*`` (sharing one
:class:`ExternalIdStore` under ``data_dir/itsm``); :class:`ItsmDelivery` pushes a batch to all of
them and returns only once every target has it (the worker acks the batch then).
"""

from ._base import ExternalIdStore, ItsmClient, describe
from ._delivery import ItsmDelivery, clients_from_settings, external_id_path
from ._outbox import ItsmOutbox
from .exceptions import ItsmError, ItsmRejected, ItsmUnavailable
from .servicedesk_plus import ServiceDeskPlusProblemClient
from .servicenow import ServiceNowProblemClient
from .webhook import WebhookProblemClient, sign, verify

__all__ = [
    "ExternalIdStore",
    "ItsmClient",
    "ItsmDelivery",
    "ItsmError",
    "ItsmOutbox",
    "ItsmRejected",
    "ItsmUnavailable",
    "ServiceDeskPlusProblemClient",
    "ServiceNowProblemClient",
    "WebhookProblemClient",
    "clients_from_settings",
    "describe",
    "external_id_path",
    "sign",
    "verify",
]
