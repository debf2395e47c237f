"""Keep secrets out of every log line, whoever writes it.

Client libraries log their configuration at DEBUG (kafka-python prints its whole config, SASL
password included). :func:`mask_secrets` installs a log-record factory that replaces each secret
value with ``***`` in the rendered message of *every* record before any handler sees it, so it
holds for Faust's and the libraries' handlers too.

>>> import logging
>>> mask_secrets(["hunter2"])
>>> record = logging.getLogRecordFactory()("x", logging.INFO, __file__, 1, "password=%s", ("hunter2",), None)
>>> record.getMessage()
'password=***'
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import Any

_secrets: set[str] = set()
_installed = False


def mask_secrets(values: Iterable[str]) -> None:
    """Mask these values (empty ones and very short ones are ignored) in all future log records."""
    global _installed
    _secrets.update(v for v in values if v and len(v) >= 4)
    if _installed or not _secrets:
        return
    previous = logging.getLogRecordFactory()

    def factory(*args: Any, **kwargs: Any) -> logging.LogRecord:
        record = previous(*args, **kwargs)
        try:
            message = record.getMessage()
        except Exception:  # a broken format string is the logger's problem, not ours
            return record
        if any(s in message for s in _secrets):
            for s in _secrets:
                message = message.replace(s, "***")
            record.msg, record.args = message, ()
        return record

    logging.setLogRecordFactory(factory)
    _installed = True
