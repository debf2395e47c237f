"""Insert batches encoded to ClickHouse's Native format in a child process.

The store's Python work before ClickHouse sees a batch - one list per column, datetimes to
milliseconds, then clickhouse-connect's pure-Python Native encoder - holds the GIL for ~4 µs a
ticket event. In the worker it runs in the store's thread beside detection and decoding, so the
three take turns on one core while the other idles. :class:`NativeEncoder` moves that work to a
child process: the worker packs the batch with msgspec (~0.8 µs an event, in C), the child
unpacks it into the same structs, runs the same column code and encoder (:func:`encode`), and
hands back the bytes, which the store passes to ClickHouse as they are (``raw_insert``; chDB
parses them without the GIL).

Only tables written from typed rows go through the child (:data:`ROW_TYPES`: raw events and
impact rows, the bulk of every flush); dictionaries and the rest are encoded in process as
before. The child holds no state: if it dies, the batch in hand is encoded in process and a new
child is started for the next one.
"""

from __future__ import annotations

import contextlib
import logging
import multiprocessing
import os
import shutil
import signal
import tempfile
import threading
import time
from collections.abc import Sequence
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from concurrent.futures.process import BrokenProcessPool
from functools import cache
from types import GenericAlias
from typing import Any

import msgspec

from opsintel.memory import tune_malloc
from sinks.clickhouse.analytics_store import _columns
from sinks.clickhouse.schema import TABLES_BY_NAME, Table

log = logging.getLogger(__name__)


@cache
def _row_types() -> dict[str, type]:
    from opsintel.events import ChangeEvent, MonitoringEvent, TicketEvent
    from opsintel.impact import ImpactRow

    return {"ticket_events": TicketEvent, "monitoring_events": MonitoringEvent, "change_events": ChangeEvent,
            "incident_impact": ImpactRow}


ROW_TYPES = frozenset({"ticket_events", "monitoring_events", "change_events", "incident_impact"})


def encode(table: Table, rows: Sequence[Any], extra: Sequence[Sequence[Any]] = ()) -> bytes:
    """``rows`` (objects with ``table``'s column names), then the ``extra`` columns that end the
    table (the raw events' Kafka partition and offset), as one Native block - the bytes
    clickhouse-connect's ``insert`` would send for them, without the ``INSERT`` statement."""
    from clickhouse_connect.datatypes.registry import get_from_name
    from clickhouse_connect.driver.insert import InsertContext
    from clickhouse_connect.driver.transform import NativeTransform

    from sinks.clickhouse.store import _no_array_library_probes, _sendable

    _no_array_library_probes()
    names = table.column_names[: len(table.column_names) - len(extra)]
    columns = _columns(rows, names) + [list(c) for c in extra]
    context = InsertContext(table.name, table.column_names, [get_from_name(t) for t in table.column_types],
                            _sendable(table, columns), column_oriented=True, block_size=max(1, len(rows)))
    body = b"".join(NativeTransform.build_insert(context))
    return body[body.index(b"\n") + 1 :]  # the first block starts with the INSERT statement


@cache
def _decoder(table_name: str) -> msgspec.msgpack.Decoder[Any]:
    return msgspec.msgpack.Decoder(GenericAlias(list, (_row_types()[table_name],)))  # list[<row type>]


#: rows per packed chunk: the child holds one chunk's row objects at a time (a batch of 35,000
#: ticket events unpacked at once peaked at ~330 MB)
CHUNK_ROWS = 4096

#: a batch as the child reads it: per chunk, its rows (packed, unpacked one chunk at a time) and extra columns
_Chunks = list[tuple[msgspec.Raw, list[list[Any]]]]


def _encode_file(table_name: str, path: str) -> str:
    """In the child: the batch packed in the file ``path`` (replaced by its Native blocks, one per
    chunk); returns ``path``. Batches travel as files, not through the pool's pipe: the worker's
    threads read and write a pipe 64 KiB at a time, taking the GIL back from the detectors after
    every piece - a file is one write and one read."""
    table, rows = TABLES_BY_NAME[table_name], _decoder(table_name)
    with open(path, "rb") as f:
        chunks = msgspec.msgpack.decode(f.read(), type=_Chunks)
    with open(path, "wb") as f:
        for packed, extra in chunks:
            f.write(encode(table, rows.decode(packed), extra))
    return path


def _child_init() -> None:
    # Ctrl-C in a terminal reaches the whole process group: the worker shuts down, the child
    # waits to be told
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    tune_malloc()  # as in the worker: freed batch buffers go back to the system
    # a worker killed outright (SIGKILL, OOM) cannot tell its child, and the child holds both ends
    # of its task queue, so it would wait for work forever: it leaves once it has been orphaned
    threading.Thread(target=_exit_when_orphaned, args=(os.getppid(),), name="orphan-watch", daemon=True).start()
    for name in ROW_TYPES:
        _decoder(name)  # imports msgspec, the row types and (below) clickhouse-connect before the first batch
    from clickhouse_connect.driver.transform import NativeTransform  # noqa: F401


def _exit_when_orphaned(parent: int, interval: float = 0.5) -> None:
    while os.getppid() == parent:
        time.sleep(interval)
    os._exit(0)


#: seconds the child may take to answer for one batch (a batch of 35,000 ticket events takes
#: ~0.3 s): a child that takes longer is taken for hung, killed and replaced, and the batch is
#: encoded in process - a flush never waits on it forever
ANSWER_SECONDS = 60.0


class Encoding:
    """A batch being encoded by the child (:meth:`NativeEncoder.submit`); :meth:`result` waits for it."""

    def __init__(self, encoder: NativeEncoder, pool: ProcessPoolExecutor, path: str,
                 future: Future[str]) -> None:
        self._encoder, self._pool, self._path, self._future = encoder, pool, path, future
        self._block: bytes | None = None

    def result(self) -> bytes:
        """The Native blocks; raises :class:`EncodingFailed` if the child could not make them (the
        caller then encodes the rows in process). Once read, the bytes are kept: a retried insert
        asks again."""
        if self._block is None:
            try:
                with open(self._future.result(timeout=self._encoder.answer_seconds), "rb") as f:
                    self._block = f.read()
            except BrokenProcessPool as e:
                self._encoder._lost(self._pool)
                raise EncodingFailed("the insert encoder's child process died") from e
            except FutureTimeout as e:
                self._encoder._lost(self._pool, hung=True)
                raise EncodingFailed(f"the insert encoder's child did not answer in {self._encoder.answer_seconds:g} s"
                                     ) from e
            except Exception as e:
                raise EncodingFailed(f"encoding in the child failed: {e!r}") from e
            finally:
                with contextlib.suppress(OSError):
                    os.unlink(self._path)
        return self._block


def _pids(pool: ProcessPoolExecutor | None) -> list[int]:
    return list(getattr(pool, "_processes", None) or {})


class EncodingFailed(Exception):
    """The child could not encode a batch (it died, or the rows do not fit the columns)."""


class NativeEncoder:
    """Encodes insert batches of typed rows in one child process (started by :meth:`start`).

    :meth:`submit` hands a batch over and returns at once (the worker submits each batch as it is
    decoded, so the child encodes it while the detectors learn it); :meth:`encode` waits for the
    bytes, and encodes in process if the child cannot. Thread-safe.
    """

    def __init__(self, answer_seconds: float = ANSWER_SECONDS) -> None:
        self.answer_seconds = answer_seconds
        self._pool: ProcessPoolExecutor | None = None
        self._lock = threading.Lock()
        self._closed = False
        self._spool: str | None = None  #: folder of the batches on their way to and from the child

    def start(self) -> None:
        """Start the child now (it imports what it needs meanwhile) rather than at the first batch."""
        with self._lock:
            if self._pool is None and not self._closed:
                if self._spool is None:
                    self._spool = tempfile.mkdtemp(prefix="opsintel-encode-")
                # never fork: the worker has threads and an embedded ClickHouse engine
                self._pool = ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn"),
                                                 initializer=_child_init)
                self._pool.submit(int)  # starts the child process

    def takes(self, table: Table, rows: Sequence[Any]) -> bool:
        """Whether :meth:`submit` encodes these rows in the child (typed rows of an event or impact table)."""
        return table.name in ROW_TYPES and bool(rows) and not isinstance(rows[0], dict) and not self._closed

    def submit(self, table: Table, rows: Sequence[Any], extra: Sequence[Sequence[Any]] = ()) -> Encoding | None:
        """Start encoding ``rows`` (+ ``extra`` columns) in the child; None if it does not take them."""
        if not self.takes(table, rows):
            return None
        try:
            self.start()
        except Exception as e:  # no child to be had (no /dev/shm, no process left): encode in process
            log.warning("cannot start the insert encoder's child process (%r); encoding in process", e)
            return None
        pool, spool = self._pool, self._spool
        if pool is None or spool is None:  # closed meanwhile
            return None
        path = None
        try:
            pack = msgspec.msgpack.encode
            packed = pack([(msgspec.Raw(pack(rows[i : i + CHUNK_ROWS])), [list(c[i : i + CHUNK_ROWS]) for c in extra])
                           for i in range(0, len(rows), CHUNK_ROWS)])
            fd, path = tempfile.mkstemp(suffix=".batch", dir=spool)
            with os.fdopen(fd, "wb") as f:
                f.write(packed)
            return Encoding(self, pool, path, pool.submit(_encode_file, table.name, path))
        except Exception as e:
            # the child is only a faster road: whatever blocks it (it died or shut down meanwhile, a
            # full disk, a value msgpack cannot carry), the batch takes the in-process one
            if isinstance(e, BrokenProcessPool | RuntimeError):
                self._lost(pool)
            else:
                log.warning("cannot hand a batch of %s to the insert encoder's child (%r); encoding it in "
                            "process", table.name, e)
            if path is not None:
                with contextlib.suppress(OSError):
                    os.unlink(path)
            return None

    def encode(self, table: Table, rows: Sequence[Any], extra: Sequence[Sequence[Any]] = ()) -> bytes:
        """The Native blocks of ``rows`` (+ ``extra`` columns): from the child where it takes them."""
        encoding = self.submit(table, rows, extra)
        if encoding is not None:
            try:
                return encoding.result()
            except EncodingFailed as e:
                # the child is only a faster road to the same bytes: whatever went wrong on it (a
                # value the columns cannot hold included), the batch takes the in-process road,
                # which says so in the store's own terms
                log.debug("%s; encoding %s in process", e, table.name)
        return encode(table, rows, extra)

    def _lost(self, pool: ProcessPoolExecutor, hung: bool = False) -> None:
        """The child died (or ``hung``: it is killed): the next batch starts a new one."""
        with self._lock:
            if self._pool is not pool:
                return
            self._pool = None
        if hung:
            log.warning("the insert encoder's child process %s did not answer in %g s; killed, a new one "
                        "starts with the next batch", _pids(pool), self.answer_seconds)
            for pid in _pids(pool):
                with contextlib.suppress(OSError):
                    os.kill(pid, signal.SIGKILL)
        else:
            log.warning("the insert encoder's child process died; a new one starts with the next batch")
        pool.shutdown(wait=False, cancel_futures=True)

    def pids(self) -> list[int]:
        """The child's process id, once it runs (the tests use it; bench_rss reads the process tree)."""
        return _pids(self._pool)

    def close(self) -> None:
        with self._lock:
            self._closed = True
            pool, self._pool = self._pool, None
            spool, self._spool = self._spool, None
        if pool is not None:
            pool.shutdown(wait=True, cancel_futures=True)
        if spool is not None:
            shutil.rmtree(spool, ignore_errors=True)
