"""Reading what the pipeline stored: through the running worker, else from the store directly.

The embedded store (chDB) admits one process per data folder. While a worker runs, it owns the
folder, so the CLI asks the worker's HTTP API (fixed queries only); otherwise it opens the store.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from typing import Any

from opsintel.settings import Settings


class NotFound(Exception):
    """The worker answered 404."""


def read(settings: Settings, path: str, params: dict[str, Any] | None,
         direct: Callable[[Any], Any]) -> Any:
    """GET ``path`` from the worker, or run ``direct(store)`` when no worker answers."""
    from sinks.clickhouse import ClickHouseStore

    query = "?" + urllib.parse.urlencode(params) if params else ""
    try:
        with urllib.request.urlopen(f"{settings.web_url}{path}{query}", timeout=30) as resp:  # noqa: S310
            return json.load(resp)
    except urllib.error.HTTPError as e:
        if e.code == 404:
            raise NotFound(path) from e
        if e.code != 503:
            raise
    except (urllib.error.URLError, ConnectionError, TimeoutError):
        pass
    store = ClickHouseStore.from_settings(settings)
    try:
        return direct(store)
    finally:
        store.close()
