"""The Faust application: topics, agents, timers. ``faust -A streams.app worker`` runs it, and so
does ``opsintel worker``.

Agents only route: take a batch, hand it to :class:`streams.pipeline.BatchWriter`, send its dead
letters, then ack. Acking after the write is what makes a Kafka offset commit mean "this is in
ClickHouse"; a crash before the ack replays the batch, and the idempotent tables fold the replay.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field
from typing import Any, cast

import faust
from faust.streams import Stream
from faust.types import TP

from opsintel.settings import Settings, load_settings
from sinks.clickhouse import ClickHouseStore
from sinks.deadletter import DeadLetter
from streams.metrics import WorkerMetrics
from streams.pipeline import CHANGES, MONITORING, TICKETS, BatchWriter, EventKind, RawMessage

log = logging.getLogger(__name__)


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


def _headers(event: Any) -> dict[str, bytes]:
    raw = event.message.headers or {}
    items = raw.items() if hasattr(raw, "items") else raw
    return {k: bytes(v) for k, v in items if isinstance(v, bytes | bytearray)}


def create_app(settings: Settings | None = None) -> faust.App:
    """Build the worker app for ``settings`` (tests pass their own topic prefix and group)."""
    settings = settings or load_settings()
    app = faust.App(
        settings.consumer_group,
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
        broker_max_poll_records=settings.batch_size,
        stream_buffer_maxsize=max(4 * settings.batch_size, 4096),
        producer_acks=-1,
        web_host=settings.web_host,
        web_port=settings.web_port,
        web_enabled=True,
    )
    metrics = WorkerMetrics()
    store = ClickHouseStore.from_settings(settings)
    state = WorkerState(settings, store, metrics, BatchWriter(store, metrics))
    app.opsintel = state  # type: ignore[attr-defined]

    def topic(name: Any) -> faust.TopicT:
        return app.topic(settings.topic(name), key_type=bytes, value_type=bytes,
                         partitions=settings.partitions)

    tickets_topic = topic("tickets")
    monitoring_topic = topic("monitoring")
    changes_topic = topic("changes")
    deadletter_topic = topic("deadletter")

    async def send_dead_letters(letters: list[DeadLetter]) -> None:
        pending = [
            await deadletter_topic.send(key=dl.origin.encode(), value=dl.payload, headers=dl.kafka_headers())
            for dl in letters
        ]
        if pending:
            await asyncio.gather(*pending)

    async def consume(stream: faust.StreamT, kind: EventKind[Any]) -> None:
        async for batch in cast(Stream, stream).noack_take(settings.batch_size, within=settings.batch_seconds):
            messages = [
                RawMessage(ev.message.topic, ev.message.partition, ev.message.offset, ev.message.value,
                           _headers(ev))
                for ev in batch
            ]
            dead = await state.writer.process(kind, messages)
            await send_dead_letters(dead)
            for ev in batch:
                await stream.ack(ev)
                state.positions[ev.message.tp] = ev.message.offset + 1

    @app.agent(tickets_topic, name="opsintel.tickets")
    async def tickets(stream: faust.StreamT) -> None:
        await consume(stream, TICKETS)

    @app.agent(monitoring_topic, name="opsintel.monitoring")
    async def monitoring(stream: faust.StreamT) -> None:
        await consume(stream, MONITORING)

    @app.agent(changes_topic, name="opsintel.changes")
    async def changes(stream: faust.StreamT) -> None:
        await consume(stream, CHANGES)

    @app.agent(deadletter_topic, name="opsintel.deadletter")
    async def dead_letters(stream: faust.StreamT) -> None:
        async for batch in cast(Stream, stream).noack_take(settings.batch_size, within=settings.batch_seconds):
            letters = [DeadLetter.from_kafka(ev.message.value, _headers(ev)) for ev in batch]
            await state.writer.write_dead_letters(letters)
            for ev in batch:
                await stream.ack(ev)
                state.positions[ev.message.tp] = ev.message.offset + 1

    @app.task
    async def prepare_store() -> None:
        await state.writer.call(store.migrate)
        state.ready = True
        metrics.ready.set(1)
        log.info("ClickHouse schema ready in %r", store)

    @app.timer(5.0)
    async def update_lag() -> None:
        consumer = app.consumer
        for tp in consumer.assignment():
            highwater = consumer.highwater(tp)
            if highwater is None:
                continue
            position = state.positions.get(tp)
            if position is None:  # nothing processed yet on this partition in this run
                continue
            metrics.consumer_lag.labels(tp.topic, str(tp.partition)).set(max(highwater - position, 0))

    from streams.web import register_views

    register_views(app, state, monitoring_topic, deadletter_topic)
    app.opsintel_topics = {  # type: ignore[attr-defined]
        "tickets": tickets_topic,
        "monitoring": monitoring_topic,
        "changes": changes_topic,
        "deadletter": deadletter_topic,
    }
    _ = (tickets, monitoring, changes, dead_letters, prepare_store, update_lag)
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
