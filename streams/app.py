"""The Faust application: topics, agents, timers. ``faust -A streams.app worker`` runs it, and so
does ``opsintel worker``.

Agents only route: take a batch, hand it to :class:`streams.pipeline.BatchWriter`, send its dead
letters, then ack. Acking after the write is what makes a Kafka offset commit mean "this is in
ClickHouse"; a crash before the ack replays the batch, and the idempotent tables fold the replay.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from functools import partial
from typing import Any, cast

import faust
from faust.streams import Stream
from faust.types import TP

from detectors import RecurringIncidentDetector, TrendMonitor
from opsintel.impact import ImpactModel
from opsintel.settings import Settings, load_settings
from sinks.clickhouse import ClickHouseStore
from sinks.clickhouse.native import NativeEncoder
from sinks.exceptions import SinkError
from sinks.itsm import ItsmDelivery
from streams.detection import PartitionedDetector, owning_service
from streams.handlers import FlushFailed, StreamHandlers
from streams.impact_stage import ImpactStage
from streams.metrics import WorkerMetrics
from streams.monitor import BatchMonitor
from streams.pipeline import CHANGES, MONITORING, TICKETS, BatchWriter, EventKind, RawMessage
from streams.transport import RECORD_RUNS, RunDeliveryTransport

log = logging.getLogger(__name__)

#: records an input agent's queue holds ahead of it (runs of ``batch_size / partitions`` records):
#: a few batches of work; more only costs memory on a long backlog (BENCHMARKS.md, RSS)
QUEUED_RECORDS = 40_000


@dataclass
class WorkerState:
    """What the agents and web views of one worker share."""

    settings: Settings
    store: ClickHouseStore
    metrics: WorkerMetrics
    writer: BatchWriter
    #: next offset to process per partition (for the lag gauge)
    positions: dict[TP, int] = field(default_factory=dict)
    ready: bool = False
    recurring: PartitionedDetector | None = None
    #: the error that stopped the worker (a failed batch): it exits with status 1
    fatal: BaseException | None = None


class WorkerApp(faust.App):
    """The Faust app, storing what it has read when it stops - for a bounded time."""

    #: the agents' handlers (set by :func:`create_app`); a stop waits ``settings.shutdown_seconds`` for them
    handlers: StreamHandlers | None = None

    async def _consumer_wait_empty(self, consumer: Any, logger: Any) -> None:
        # Faust calls this when the worker stops, and on every rebalance, before partitions are
        # revoked: a rebalance keeps Faust's wait (the flush timer stores and acks what is pending;
        # on_revoked then flushes the rest). When the worker stops, Faust waits - without a limit -
        # for every event read to be acked; here a flush of all that is pending starts at once, and
        # the wait is bounded: while ClickHouse is down the flush retries for ever, and a stop (a
        # rollout, a node drain) would wait with it until Kubernetes killed the pod. Past the limit
        # the worker stops with those batches unacked: whoever next owns their partitions replays them.
        handlers = self.handlers
        if handlers is None or not self.should_stop:
            await super()._consumer_wait_empty(consumer, logger)
            return
        seconds = handlers.settings.shutdown_seconds
        try:
            await asyncio.wait_for(self._store_pending(handlers, consumer, logger), seconds)
        except TimeoutError as e:
            log.warning("stopping with batches that were not stored in %g s (is ClickHouse down?): they are "
                        "not committed, and are replayed when the worker starts again", seconds)
            handlers.fail(e)  # nothing more is flushed (nor on the revocation that follows)
            handlers.writer.stopping = True  # the running flush gives up at its next failed write
        except Exception as e:  # a flush failed for good (FlushFailed: a batch before did): nothing more is acked
            if not isinstance(e, FlushFailed):
                log.error("stopping with batches that were not stored: their flush failed (%r); they are replayed "
                          "when the worker starts again", e)

    async def _store_pending(self, handlers: StreamHandlers, consumer: Any, logger: Any) -> None:
        await handlers.finish()
        await super()._consumer_wait_empty(consumer, logger)


def _credentials(settings: Settings) -> Any:
    if settings.kafka_security_protocol.startswith("SASL"):
        ssl_context = None
        if settings.kafka_security_protocol == "SASL_SSL":
            import ssl

            ssl_context = ssl.create_default_context(cafile=settings.kafka_ssl_cafile or None)
        return faust.SASLCredentials(
            username=settings.kafka_sasl_username,
            password=settings.kafka_sasl_password.get_secret_value(),
            mechanism=settings.kafka_sasl_mechanism,
            ssl_context=ssl_context,
        )
    if settings.kafka_security_protocol == "SSL":
        import ssl

        return faust.SSLCredentials(ssl.create_default_context(cafile=settings.kafka_ssl_cafile or None))
    return None


#: a batch handler that acks the batch itself, through the callable it is given, once it is durable
Handle = Callable[[list[RawMessage], Callable[[], Awaitable[None]]], Awaitable[None]]


def acked_after(handle: Callable[[list[RawMessage]], Awaitable[None]]) -> Handle:
    """A handler whose batch is durable once it returns: ack right after it."""
    async def handle_then_ack(messages: list[RawMessage], ack: Callable[[], Awaitable[None]]) -> None:
        await handle(messages)
        await ack()
    return handle_then_ack


def _headers(event: Any) -> dict[str, bytes]:
    raw = event.message.headers or {}
    items = raw.items() if hasattr(raw, "items") else raw
    return {k: bytes(v) for k, v in items if isinstance(v, bytes | bytearray)}


def create_app(settings: Settings | None = None) -> faust.App:
    """Build the worker app for ``settings`` (tests pass their own topic prefix and group)."""
    settings = settings or load_settings()
    app = WorkerApp(
        settings.consumer_group,
        monitor=BatchMonitor(),
        broker=[f"kafka://{h.strip()}" for h in settings.kafka_bootstrap.split(",")],
        broker_credentials=_credentials(settings),
        store="memory://",
        datadir=str(settings.data_dir / "faust"),
        autodiscover=False,
        key_serializer="raw",
        value_serializer="raw",
        topic_partitions=settings.partitions,
        topic_replication_factor=settings.replication_factor,
        consumer_auto_offset_reset="earliest",
        broker_commit_interval=1.0,
        # a fetch holds at most batch_size / partitions records (one run per partition it touched), and
        # a batch takes at most ``partitions`` runs: so a batch holds at most ``batch_size`` events
        broker_max_poll_records=max(1, -(-settings.batch_size // settings.partitions)),
        consumer_max_fetch_size=8 * 1024 * 1024,
        stream_buffer_maxsize=max(4 * settings.batch_size, 4096),
        producer_acks=-1,
        web_host=settings.web_host,
        web_port=settings.web_port,
        web_enabled=True,
    )
    # Faust's own aiokafka transport, delivering the input topics as runs of records (streams/transport.py)
    app.transport = RunDeliveryTransport(app.conf.broker_consumer, app)
    metrics = WorkerMetrics()
    store = ClickHouseStore.from_settings(settings, encoder=NativeEncoder() if settings.encode_process else None)
    state = WorkerState(settings, store, metrics, BatchWriter(store, metrics))
    app.opsintel = state  # type: ignore[attr-defined]

    # the input topics arrive as runs of records, one event per partition per fetch: a few runs
    # buffered per agent are already several batches of work (~QUEUED_RECORDS records)
    run_records = app.conf.broker_max_poll_records
    runs = {
        name: app.topic(settings.topic(name), key_type=bytes, value_serializer=RECORD_RUNS,
                        partitions=settings.partitions)
        for name in ("tickets", "monitoring", "changes")
    }
    for topic in runs.values():
        # `App.topic` takes `maxsize` but never passes it on (faust-streaming 0.15.3), so the agents'
        # queues held stream_buffer_maxsize *runs* - hundreds of thousands of records read ahead
        # of a backlog, ~1 GB of RSS on a long replay. Set on the topic, its clones inherit it.
        topic.maxsize = max(2, -(-QUEUED_RECORDS // run_records))
    topics = runs | {
        name: app.topic(settings.topic(name), key_type=bytes, value_type=bytes, partitions=settings.partitions)
        for name in ("deadletter", "feedback", "problems", "anomalies")
    }
    by_name = {t.get_topic_name(): t for t in topics.values()}

    async def send(topic: str, key: bytes, value: bytes, headers: list[tuple[str, bytes]] | None) -> Any:
        return await by_name[topic].send(key=key, value=value, headers=headers)

    recurring = PartitionedDetector("recurring", RecurringIncidentDetector,
                                    RecurringIncidentDetector.from_snapshot, state.writer)
    trend = PartitionedDetector("trend", TrendMonitor, TrendMonitor.from_snapshot, state.writer,
                                series_of=owning_service)
    impact = ImpactStage(ImpactModel.from_settings(settings), state.writer)
    # None unless an OPSINTEL_ITSM_* target is configured: then no ITSM agent exists at all
    itsm = ItsmDelivery.from_settings(settings, on_progress=metrics.observe_itsm,
                                      max_pending=max(10_000, settings.batch_size))
    handlers = StreamHandlers(settings, state.writer, [recurring, trend], send, impact, itsm,
                              commit=lambda: app.consumer.commit())
    state.recurring = recurring
    app.handlers = handlers

    async def batches(stream: faust.StreamT, handle: Handle, with_headers: bool = False) -> None:
        """Take a batch and hand it over with its ack, to call once everything it caused is durable."""
        async for batch in cast(Stream, stream).noack_take(settings.batch_size, within=settings.batch_seconds):
            try:
                await handle([RawMessage(ev.message.topic, ev.message.partition, ev.message.offset, ev.message.value,
                                         _headers(ev) if with_headers else {}, ev.message.key) for ev in batch],
                             partial(ack, stream, batch))
            except Exception as e:
                await stop_unacked(e)

    async def stop_unacked(error: Exception) -> None:
        """A batch failed in its handler (or a flush failed for good): stop the worker, exit status 1,
        with nothing from that batch on acked; a restart replays it from the last commit.

        The handler must not let the error end the agent: Faust would restart it, and the stream
        it leaves behind acks whatever it still reads - the failed batch's records and the rest of
        the backlog would be committed without ever being stored. So the error stops flushes,
        the agent stays in its take loop, and the worker is asked to stop.
        """
        handlers.fail(error)
        if state.fatal is None:
            state.fatal = error
            log.critical("a batch failed (%r): stopping the worker without acking it or anything after it; "
                         "a restart replays them", error, exc_info=error)
            # a stopping consumer waits for every event in flight to be acked: these never will be
            app.conf.stream_wait_empty = False
            os.kill(os.getpid(), signal.SIGTERM)
        await asyncio.Event().wait()  # until the shutdown cancels this agent

    async def ack(stream: faust.StreamT, batch: Sequence[Any]) -> None:
        for ev in batch:
            await stream.ack(ev)
            state.positions[ev.message.tp] = ev.message.offset + 1  # a run's message is its last record

    async def run_batches(stream: faust.StreamT, kind: EventKind[Any]) -> None:
        """Input events, from a run-delivered topic: each event is one partition's run of records
        (one fetch's worth); a batch is the runs of one fetch (at most ``partitions`` runs). The
        handler acks the batch at the flush that stores it."""
        # the runs of one fetch arrive back to back: a short `within` closes the batch after them
        # (the consumer's linger already waited batch_seconds for that fetch to fill)
        within = min(0.05, settings.batch_seconds)
        read: dict[TP, int] = {}  # next offset per partition, as far as batches have reached
        async for batch in cast(Stream, stream).noack_take(settings.partitions, within=within):
            for ev in batch:
                read[ev.message.tp] = ev.message.offset + 1  # a run's message is its last record
            try:
                await handlers.events(kind, [RawMessage(r.topic, r.partition, r.offset, r.value, {}, r.key)
                                             for ev in batch for r in ev.value], partial(ack, stream, batch),
                                      caught_up=caught_up(batch[0].message.topic, read))
            except Exception as e:
                await stop_unacked(e)

    def caught_up(topic: str, read: dict[TP, int]) -> bool:
        """Whether this worker's batches of ``topic`` have reached its end (the consumer's
        last-known high watermark) on every partition of it assigned here. A partition that has
        delivered nothing since the worker started counts as not caught up (nothing says whether
        it is at its end), so a live stream with an idle partition is flushed by time alone."""
        consumer = app.consumer
        for tp in consumer.assignment():
            if tp.topic != topic:
                continue
            highwater = consumer.highwater(tp)
            if highwater is None or read.get(tp, -1) < highwater:
                return False
        return True

    @app.agent(topics["tickets"], name="opsintel.tickets")
    async def tickets(stream: faust.StreamT) -> None:
        await run_batches(stream, TICKETS)

    @app.agent(topics["monitoring"], name="opsintel.monitoring")
    async def monitoring(stream: faust.StreamT) -> None:
        await run_batches(stream, MONITORING)

    @app.agent(topics["changes"], name="opsintel.changes")
    async def changes(stream: faust.StreamT) -> None:
        await run_batches(stream, CHANGES)

    @app.agent(topics["feedback"], name="opsintel.feedback")
    async def feedback(stream: faust.StreamT) -> None:
        await batches(stream, handlers.feedback)  # acked by the flush that checkpoints it

    @app.agent(topics["deadletter"], name="opsintel.deadletter")
    async def dead_letters(stream: faust.StreamT) -> None:
        # reason and origin travel in headers
        await batches(stream, acked_after(handlers.dead_letters), with_headers=True)

    if itsm is not None:
        # an agent of its own on the compacted problems topic (the durable queue of the
        # pushes): a slow or failing ITSM holds back only this agent, never ingestion; a batch is
        # acked once every target has it, so a crash re-pushes it (the pushes are idempotent)
        @app.agent(topics["problems"], name="opsintel.itsm")
        async def push_to_itsm(stream: faust.StreamT) -> None:
            await batches(stream, acked_after(handlers.push_problems))

        async def close_itsm(sender: Any, **kwargs: Any) -> None:
            await itsm.close()

        app.on_before_shutdown.connect(cast(Any, close_itsm))

        log.info("pushing problem records to %s", ", ".join(itsm.targets))

    async def on_revoked(sender: Any, *args: Any, **kwargs: Any) -> None:
        revoked: set[TP] = args[0] if args else kwargs.get("revoked", set())
        # store, checkpoint and ack what was learned before another worker takes these partitions
        # (unless a batch failed: then nothing more is stored or acked, the next owner replays it)
        if not handlers.failed:
            await handlers.flush()
        for stage in (recurring, trend):
            stage.revoke({tp.partition for tp in revoked})

    app.on_partitions_revoked.connect(cast(Any, on_revoked))  # faust's signal typing rejects coroutines

    @app.task
    async def prepare_store() -> None:
        if store.encoder is not None:
            store.encoder.start()  # the child imports what it needs while the schema is made
        # retried like any write: a worker started while ClickHouse is down waits for it
        await state.writer.retrying("schema", store.migrate)
        state.ready = True
        metrics.ready.set(1)
        log.info("ClickHouse schema ready in %r", store)

    @app.timer(max(0.05, settings.flush_seconds / 4))
    async def flush_when_due() -> None:
        # a stream that went quiet still gets its pending batches stored and committed
        await handlers.flush_if_due()

    @app.timer(5.0)
    async def update_lag() -> None:
        for tp in app.consumer.assignment():
            highwater = app.consumer.highwater(tp)
            if highwater is None:
                continue
            position = state.positions.get(tp)
            if position is None:  # nothing processed yet on this partition in this run
                continue
            metrics.consumer_lag.labels(tp.topic, str(tp.partition)).set(max(highwater - position, 0))

    if store.is_embedded:
        @app.timer(5.0)
        async def update_engine_memory() -> None:
            # the embedded engine's share of the worker's memory (the rest is Python, Faust, aiokafka)
            if state.ready:
                with contextlib.suppress(SinkError):
                    metrics.clickhouse_memory.set(await state.writer.call(store.tracked_memory))

    from streams.web import register_views

    register_views(app, state, topics["monitoring"], topics["deadletter"])
    _ = (tickets, monitoring, changes, feedback, dead_letters, prepare_store, flush_when_due, update_lag, on_revoked)
    return app


_app: faust.App | None = None


def __getattr__(name: str) -> Any:
    """``streams.app.app``: the app configured from the environment, built on first use
    (so ``faust -A streams.app worker`` works, and importing this module has no side effects)."""
    global _app
    if name == "app":
        if _app is None:
            _app = create_app()
        return _app
    raise AttributeError(name)
