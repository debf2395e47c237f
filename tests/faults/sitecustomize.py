"""Test-only fault injection for a worker child process (never on a production path).

The reliability tests put this folder first on the worker's ``PYTHONPATH``; Python imports
``sitecustomize`` at start-up. When ``OPSINTEL_TEST_STORE_FAULT`` names a marker file, every
ClickHouse insert fails with :class:`~sinks.exceptions.SinkUnavailable` - what an unreachable
server looks like to the worker - for as long as that file exists. The embedded chDB store cannot
be stopped from outside like a server, so this is how its outage is simulated.
"""

from __future__ import annotations

import os

_marker = os.environ.get("OPSINTEL_TEST_STORE_FAULT")

if _marker:
    from sinks.clickhouse import store as _store
    from sinks.exceptions import SinkUnavailable

    _real_insert = _store.ClickHouseStore._insert

    def _insert(self, table, columns):  # type: ignore[no-untyped-def]
        if os.path.exists(_marker):
            raise SinkUnavailable(f"injected fault: ClickHouse unreachable while {_marker} exists")
        return _real_insert(self, table, columns)

    _store.ClickHouseStore._insert = _insert  # type: ignore[method-assign]
