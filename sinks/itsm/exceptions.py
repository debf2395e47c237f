"""Errors of the ITSM pushes; all derive from :class:`sinks.exceptions.SinkError`."""

from __future__ import annotations

from sinks.exceptions import SinkError, SinkUnavailable


class ItsmError(SinkError):
    """Base of every ITSM push error."""


class ItsmUnavailable(ItsmError, SinkUnavailable):
    """The ITSM could not be reached, timed out, throttled (429) or failed (5xx): retry later."""


class ItsmRejected(ItsmError):
    """The ITSM refused the request for good (4xx other than 408 / 429): retrying will not help.

    ``status`` is the HTTP status; the message holds the ITSM's error text, never credentials.
    """

    def __init__(self, message: str, status: int) -> None:
        super().__init__(message)
        self.status = status
