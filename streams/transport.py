"""A Faust Kafka transport that hands the agents whole runs of records instead of one message each.

Faust's consumer loop (``Consumer._drain_messages``) turns every fetched record into a
``ConsumerMessage``, then an ``Event``, puts it on the agent's queue, and the agent's stream
tracks, acks and counts it: about 75 µs per message on this machine, a floor of ~13 k messages/s
before any work is done. The agents of the high-volume input topics work in batches anyway, so
for those topics (:data:`RECORD_RUNS`) this consumer delivers **one Faust event per partition per
fetch**, whose value is the tuple of that fetch's records (aiokafka ``ConsumerRecord``) for the
partition, in offset order. Everything else stays Faust's own machinery:

* the event's message is the run's *last* record (offset, timestamp); the offsets before it are
  registered with Faust's gap tracking (``Consumer._add_gap``, the mechanism Faust uses for
  offsets a transaction marker occupies), so acking the one event lets Faust commit the whole
  run - and only once the agent has acked it, after the batch is durable;
* read offsets, generation ids, flow control, rebalances, seeks and commits are Faust's;
* other topics (feedback, dead letters) get Faust's per-message delivery, without the task per
  message Faust's loop spends on an interruptible wait while no rebalance is under way;
* once the consumer has caught up (a fetch returns fewer records than it may), it waits
  ``linger`` seconds before fetching again, so that a live stream arrives in runs of that many
  seconds' worth of records rather than a few records each (each batch pays the detectors'
  per-call work and a publish). A backlog is fetched without pause;
* the broker may hold a fetch that finds no new data for :data:`FETCH_MAX_WAIT_MS`, not Faust's
  1.5 s (see ``_ConsumerThread``).

One rule needs care: a delivery that is in flight when a rebalance starts waits for the flow to
resume, which is *after* Faust has sought the partitions back to their committed offsets. Its
(stale) offset must not be recorded as read then - the refetch would silently drop every record
between the committed offset and it - and the rest of that fetch is stale too. Faust's own loop
avoids this by abandoning the delivery as soon as the rebalance starts.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from typing import Any, cast

from faust.serializers.codecs import Codec
from faust.transport.consumer import CONSUMER_FETCHING
from faust.transport.drivers import aiokafka as faust_aiokafka
from faust.types import TP
from mode import Service


class RecordRuns(Codec):
    """The "serializer" of a run-delivered topic: the value already is the tuple of records.

    Sending through such a topic passes bytes through unchanged.
    """

    def _loads(self, s: Any) -> Any:
        return s

    def _dumps(self, s: Any) -> bytes:
        return cast(bytes, s)


#: value serializer marking a topic for run delivery (see the module docstring)
RECORD_RUNS = RecordRuns()


#: how long the broker may hold a fetch that found no new data (Faust hard-codes 1,500 ms)
FETCH_MAX_WAIT_MS = 100


class _ConsumerThread(faust_aiokafka.AIOKafkaConsumerThread):
    def _create_worker_consumer(self, transport: Any) -> Any:
        consumer = super()._create_worker_consumer(transport)
        # aiokafka keeps one fetch in flight per broker, for the partitions that had nothing
        # buffered when it was sent; if those get no record, the others wait for the broker's
        # fetch.max.wait - measured: every ~1.8 s a 1.4 s stall at 1,000 events/s, the bulk of the
        # event-to-problem latency. Faust passes no setting for it; aiokafka reads it at start().
        consumer._fetch_max_wait_ms = FETCH_MAX_WAIT_MS
        return consumer


class RunDeliveryConsumer(faust_aiokafka.Consumer):
    def _new_consumer_thread(self) -> faust_aiokafka.AIOKafkaConsumerThread:
        return _ConsumerThread(self, loop=self.loop, beacon=self.beacon)

    def highwater(self, tp: TP) -> int | None:  # type: ignore[override]  # (aiokafka returns None too)
        """The last-known high watermark of ``tp``; None if unknown, or if ``tp`` is no longer assigned.

        The assignment is the consumer thread's and may change between listing it and this call (a
        rebalance): aiokafka then fails an assertion, which must fail neither the batch asking (the
        worker would stop) nor the fetch loop (here, in :meth:`_deliver`).
        """
        try:
            return cast(int | None, super().highwater(tp))
        except AssertionError:  # aiokafka: "Partition is not assigned"
            return None

    _run_topic_names: frozenset[str] | None = None

    def _run_topics(self) -> frozenset[str]:
        # the app's topics are fixed once it consumes: found on the first fetch, not on every one
        if self._run_topic_names is None:
            self._run_topic_names = frozenset(t.get_topic_name() for t in self.app.topics
                                              if getattr(t, "value_serializer", None) is RECORD_RUNS)
        return self._run_topic_names

    async def _drain_messages(self, fetcher: Any) -> None:  # pragma: no cover - exercised by every worker test
        consumer_should_stop = cast(Service, self)._stopped.is_set
        fetcher_should_stop = cast(Service, fetcher)._stopped.is_set
        # seconds to wait before the next fetch after one that was not full: the worker's
        # batch_seconds (0 for an app that is not the opsintel worker: fetch at once)
        state = getattr(self.app, "opsintel", None)
        linger = float(state.settings.batch_seconds) if state is not None else 0.0
        full = self.app.conf.broker_max_poll_records or 1
        try:
            while not (consumer_should_stop() or fetcher_should_stop()):
                self.diag.set_flag(CONSUMER_FETCHING)
                records, active = await self._wait_next_records(1.0)
                await self.sleep(0)
                if records is not None and not self.should_stop:
                    if self.flow_active:
                        await self._deliver(records, active)
                        if linger and sum(map(len, records.values())) < full:
                            # caught up: let the next fetch gather up to `linger` seconds of records
                            # (Kafka's fetch.min.bytes / fetch.max.wait, which Faust does not expose),
                            # so a live stream makes batches of that much, not of a few records each
                            await self.sleep(linger)
                    else:
                        try:  # as Faust's getmany: a fetch made while the flow was stopped is dropped
                            await self.perform_seek()
                        except Exception as ex:
                            self.log.warning(f"exception performing seek when flow not active {ex}")
                self.diag.unset_flag(CONSUMER_FETCHING)
        except self.consumer_stopped_errors:
            if self.transport.app.should_stop:
                self.log.info("Broker stopped consumer, shutting down...")
                return
            raise
        except asyncio.CancelledError:
            if self.transport.app.should_stop:
                return
            raise
        except Exception as exc:
            self.log.exception("Drain messages raised: %r", exc)
            raise
        finally:
            self.diag.unset_flag(CONSUMER_FETCHING)

    async def _deliver(self, records: Mapping[TP, Sequence[Any]], active: set[TP] | None) -> None:
        app = self.app
        generation = app.consumer_generation_id
        run_topics = self._run_topics()
        for tp, batch in records.items():
            if not self.flow_active or app.consumer_generation_id != generation:
                return  # a rebalance: what is left of this fetch is stale
            if not (active is None or tp in active or tp in self._buffered_partitions):
                continue
            end = self.highwater(tp)
            if end is not None:
                app.monitor.track_tp_end_offset(tp, end)
            if tp.topic in run_topics:
                delivered = await self._deliver_run(tp, batch, generation)
            else:
                delivered = await self._deliver_each(tp, batch, generation)
            if not delivered:
                return

    def _fresh(self, tp: TP, batch: Sequence[Any]) -> Sequence[Any]:
        read = self._read_offset[tp]
        if read is None:
            return batch
        return [r for r in batch if r.offset >= read] if batch and batch[0].offset < read else batch

    async def _before(self, tp: TP, first: int) -> None:
        """Faust's bookkeeping before a delivery at offset ``first``: a gap since the last read, and
        a commit every ``broker_commit_every`` acks."""
        read = self._read_offset[tp]
        if read and first - read > 1 and self.app.topics.acks_enabled_for(tp.topic):
            await self._add_gap(tp, read + 1, first)
        if self._commit_every is not None and self._n_acked >= self._commit_every:
            self._n_acked = 0
            await self.commit()

    async def _deliver_run(self, tp: TP, batch: Sequence[Any], generation: int) -> bool:
        run = self._fresh(tp, batch)
        if not run:
            return True
        if self.suspend_flow.is_set():
            return False  # a rebalance is starting: the seek after it refetches this
        last = run[-1]
        await self._before(tp, run[0].offset)
        if len(run) > 1 and self.app.topics.acks_enabled_for(tp.topic):
            await self._add_gap(tp, run[0].offset, last.offset - 1)  # committed with the run's last record
        message = self._to_message(tp, last)
        cast(Any, message).value = tuple(run)  # the run is the value (RECORD_RUNS)
        await self.callback(message)
        if self.app.consumer_generation_id != generation:
            return False  # it straddled a rebalance: stale (Faust's streams skip it), record nothing
        self._read_offset[tp] = last.offset
        return True

    async def _deliver_each(self, tp: TP, batch: Sequence[Any], generation: int) -> bool:
        since_yield = 0
        for record in self._fresh(tp, batch):
            since_yield += 1
            if since_yield > 100:
                await asyncio.sleep(0)
                since_yield = 0
            if not self.flow_active or self.app.consumer_generation_id != generation:
                return False
            await self._before(tp, record.offset)
            message = self._to_message(tp, record)
            if self.suspend_flow.is_set():  # a rebalance is under way: keep Faust's interruptible wait
                await self.wait_first(self.callback(message), self.suspend_flow.wait())
            else:
                await self.callback(message)
                if self.app.consumer_generation_id != generation:
                    return False
            self._read_offset[tp] = record.offset
        return True


class RunDeliveryTransport(faust_aiokafka.Transport):
    Consumer = RunDeliveryConsumer
