"""One error hierarchy for every sink, so callers can tell retryable failures from bad data."""

from __future__ import annotations


class SinkError(Exception):
    """Base of every sink error."""


class SinkUnavailable(SinkError):
    """The destination could not be reached or refused the write; retrying later may succeed.

    ``retry_after`` is the suggested wait in seconds.
    """

    def __init__(self, message: str, retry_after: float = 1.0) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class SchemaError(SinkError):
    """The destination schema is missing or incompatible (run ``opsintel migrate``)."""


class SinkRejected(SinkError):
    """The destination refused the data itself (a type or value it cannot store): not retryable as is."""
