"""What each agent does with a batch, without Faust: write, detect, publish, dead-letter.

Order per batch, and why: (1) raw events to ClickHouse; (2) the partition's detectors learn them
and their changed problem records are written and published; (3) the detectors' state is
checkpointed with the offsets it includes; (4) dead letters are sent; only then (5) the agent
acks the batch, so Kafka commits an offset only when everything it caused is durable. A crash at
any point replays the batch into idempotent tables and detectors that skip what they have seen.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import msgspec

from opsintel.problems import Feedback, ProblemRecord, decode_feedback, decode_problem, encode_problem
from opsintel.settings import Settings
from sinks.deadletter import DeadLetter
from sinks.itsm import ItsmDelivery
from streams.detection import PartitionedDetector
from streams.impact_stage import ImpactStage
from streams.pipeline import BatchWriter, EventKind, RawMessage

log = logging.getLogger(__name__)

#: sends one Kafka message; the returned awaitable resolves when the broker has it
Send = Callable[[str, bytes, bytes, list[tuple[str, bytes]] | None], Awaitable[Awaitable[Any]]]


class StreamHandlers:
    def __init__(self, settings: Settings, writer: BatchWriter, stages: Sequence[PartitionedDetector],
                 send: Send, impact: ImpactStage | None = None, itsm: ItsmDelivery | None = None) -> None:
        self.settings = settings
        self.writer = writer
        self.stages = list(stages)
        self.send = send
        self.impact = impact
        self.itsm = itsm
        # the agents share each partition's detectors: one agent's checkpoint must never include
        # what another agent's batch has learned but not yet published (a crash would then skip
        # re-publishing it), so learn -> publish -> checkpoint runs one batch at a time
        self._detecting = asyncio.Lock()

    async def events(self, kind: EventKind[Any], messages: Sequence[RawMessage]) -> None:
        """Tickets, changes, alerts: store, detect, checkpoint, dead-letter."""
        done = await self.writer.process(kind, messages)
        if done.events:
            if self.impact is not None:
                await self.impact.process(done.events)
            async with self._detecting:
                for stage in self.stages:
                    await self.publish(await stage.learn(done.events, done.messages))
                    await self.publish_anomalies(stage.pop_anomalies())
                for stage in self.stages:
                    await stage.checkpoint()
        await self.send_dead_letters(done.dead_letters)

    async def feedback(self, messages: Sequence[RawMessage]) -> None:
        """Human decisions on problems: apply to the owning partition's detector, publish the result."""
        dead: list[DeadLetter] = []
        decisions: list[tuple[Feedback, RawMessage]] = []
        for msg in messages:
            try:
                decisions.append((decode_feedback(msg.value or b""), msg))
            except (msgspec.DecodeError, msgspec.ValidationError, ValueError) as e:
                dead.append(_undecodable(msg, e))
        async with self._detecting:
            for fb, msg in decisions:
                known = False
                for stage in self.stages:
                    applied, records = await stage.apply_feedback(fb, msg)
                    known |= applied
                    await self.publish(records)
                if not known:
                    # no detector tracks it any more (its group expired): record the decision on the stored
                    # record, so the queue shows it, even though nothing will re-raise the group anyway
                    changed = await self.writer.retrying("problems", self.writer.store.record_decision, fb)
                    log.info("decision %s on %s applied to the stored record (%s)", fb.action, fb.problem_id,
                             "found" if changed else "no such problem")
            for stage in self.stages:
                await stage.checkpoint()
        await self.dead_letter(dead)

    async def push_problems(self, messages: Sequence[RawMessage]) -> None:
        """Problem records from the problems topic to every configured ITSM; returns once each has
        the newest version of every problem in the batch (retrying as long as it takes)."""
        if self.itsm is None:
            return
        records: list[ProblemRecord] = []
        dead: list[DeadLetter] = []
        for msg in messages:
            if msg.value is None:  # a tombstone of the compacted topic: nothing to push
                continue
            try:
                records.append(decode_problem(msg.value))
            except (msgspec.DecodeError, msgspec.ValidationError, ValueError) as e:
                dead.append(_undecodable(msg, e))
        await self.dead_letter(dead)
        await self.itsm.deliver(records)

    async def dead_letter(self, letters: Sequence[DeadLetter]) -> None:
        """Count and send dead letters of records an agent could not decode."""
        for dl in letters:
            self.writer.metrics.dead_lettered.labels(dl.origin_topic, dl.reason_code).inc()
        await self.send_dead_letters(letters)

    async def dead_letters(self, messages: Sequence[RawMessage]) -> None:
        letters = [DeadLetter.from_kafka(m.value, m.headers) for m in messages]
        await self.writer.write_dead_letters(letters)

    async def publish(self, records: Sequence[ProblemRecord]) -> None:
        """Problem records to ClickHouse (latest version wins) and to the compacted problems topic."""
        if not records:
            return
        await self.writer.retrying("problems", self.writer.store.insert_problems, list(records))
        self.writer.metrics.written.labels("problems").inc(len(records))
        topic = self.settings.topic("problems")
        pending = [await self.send(topic, r.problem_id.encode(), encode_problem(r), None) for r in records]
        await asyncio.gather(*pending)

    async def publish_anomalies(self, rows: Sequence[Any]) -> None:
        """Anomaly rows to ClickHouse (deterministic ids: replays fold) and to the anomalies topic."""
        if not rows:
            return
        await self.writer.retrying("anomalies", self.writer.store.insert_anomalies, list(rows))
        self.writer.metrics.written.labels("anomalies").inc(len(rows))
        topic = self.settings.topic("anomalies")
        pending = [await self.send(topic, r.service.encode(), msgspec.json.encode(r), None) for r in rows]
        await asyncio.gather(*pending)

    async def send_dead_letters(self, letters: Sequence[DeadLetter]) -> None:
        topic = self.settings.topic("deadletter")
        pending = [await self.send(topic, dl.origin.encode(), dl.payload, dl.kafka_headers()) for dl in letters]
        if pending:
            await asyncio.gather(*pending)


def _undecodable(msg: RawMessage, error: Exception) -> DeadLetter:
    # msgspec.ValidationError subclasses DecodeError: well-formed JSON of the wrong shape is "validation"
    wrong_shape = isinstance(error, msgspec.ValidationError) or not isinstance(error, msgspec.DecodeError)
    code = "validation" if wrong_shape else "bad_json"
    return DeadLetter.for_record(msg.value or b"", reason=f"{code}: {error}", origin=msg.origin,
                                 origin_topic=msg.topic)
