"""Test-only fault injection for a worker child process (never on a production path).

The reliability tests put this folder first on the worker's ``PYTHONPATH``; Python imports
``sitecustomize`` at start-up. When ``OPSINTEL_TEST_STORE_FAULT`` names a marker file, every
ClickHouse insert (columns, or Native blocks from the insert encoder's child) fails with
:class:`~sinks.exceptions.SinkUnavailable` - what an unreachable
server looks like to the worker - for as long as that file exists. The embedded chDB store cannot
be stopped from outside like a server, so this is how its outage is simulated.
``OPSINTEL_TEST_BATCH_FAULT`` (below) makes one batch fail in its handler.
"""

from __future__ import annotations

import os

_marker = os.environ.get("OPSINTEL_TEST_STORE_FAULT")

if _marker:
    from sinks.clickhouse import store as _store
    from sinks.exceptions import SinkUnavailable

    def _down_while_marked(real):  # type: ignore[no-untyped-def]
        def insert(self, table, data):  # type: ignore[no-untyped-def]
            if os.path.exists(_marker):
                raise SinkUnavailable(f"injected fault: ClickHouse unreachable while {_marker} exists")
            return real(self, table, data)
        return insert

    # every insert reaches ClickHouse through one of these two: columns, or Native blocks from the
    # worker's encoder child
    for _name in ("_insert", "_insert_native"):
        setattr(_store.ClickHouseStore, _name, _down_while_marked(getattr(_store.ClickHouseStore, _name)))

# OPSINTEL_TEST_BATCH_FAULT=N: the Nth batch handed to the handlers raises, once (a bug in the
# handler code, as far as the worker can tell)
_batch_fault = int(os.environ.get("OPSINTEL_TEST_BATCH_FAULT") or 0)

if _batch_fault:
    from streams import handlers as _handlers

    _real_events = _handlers.StreamHandlers.events
    _calls = [0]

    async def _events(self, *args, **kwargs):  # type: ignore[no-untyped-def]
        _calls[0] += 1
        if _calls[0] == _batch_fault:
            raise RuntimeError(f"injected fault: batch {_batch_fault} fails in its handler")
        return await _real_events(self, *args, **kwargs)

    _handlers.StreamHandlers.events = _events  # type: ignore[method-assign]
