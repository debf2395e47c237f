"""A Faust Kafka transport whose consumer hands messages over without a task per message.

Faust's consumer loop (``Consumer._drain_messages``) delivers every fetched message with
``await self.wait_first(callback(message), self.suspend_flow.wait())``: two tasks, a set and an
``asyncio.wait`` per message, so that a rebalance (which sets ``suspend_flow``) can interrupt a
delivery. Profiling showed that as the largest single cost of Faust's per-message path. While
the flow is active we await the delivery directly; when a rebalance suspends the flow we fall
back to Faust's interruptible wait, so rebalances behave as before. Everything else (fetching,
offsets, gaps, commits) is Faust's own code.

One difference needs care: Faust's interruptible wait returns as soon as a rebalance starts, so
it records the message's offset as read *before* the partitions are sought back to their
committed offsets. A direct delivery that is in flight when the rebalance starts waits for the
flow to resume, which is *after* that seek; recording its (stale) offset then would make the
refetch silently drop the messages between the committed offset and it. So a delivery that
straddled a rebalance records nothing and abandons the stale fetch.
"""

from __future__ import annotations

import asyncio
from typing import Any, cast

from faust.transport.consumer import CONSUMER_FETCHING
from faust.transport.drivers import aiokafka as faust_aiokafka
from mode import Service


class DirectDeliveryConsumer(faust_aiokafka.Consumer):
    async def _drain_messages(self, fetcher: Any) -> None:  # pragma: no cover - exercised by every worker test
        callback = self.callback
        getmany = self.getmany
        consumer_should_stop = cast(Service, self)._stopped.is_set
        fetcher_should_stop = cast(Service, fetcher)._stopped.is_set
        get_read_offset = self._read_offset.__getitem__
        set_read_offset = self._read_offset.__setitem__
        acks_enabled_for = self.app.topics.acks_enabled_for
        suspended = self.suspend_flow.is_set
        app = self.app
        yield_every = 100
        since_yield = 0
        try:
            while not (consumer_should_stop() or fetcher_should_stop()):
                self.diag.set_flag(CONSUMER_FETCHING)
                ait = getmany(timeout=1.0)
                await self.sleep(0)
                if not self.should_stop:
                    async for tp, message in ait:
                        since_yield += 1
                        if since_yield > yield_every:
                            await asyncio.sleep(0)
                            since_yield = 0
                        offset = message.offset
                        r_offset = get_read_offset(tp)
                        if r_offset is None or offset >= r_offset:
                            gap = offset - (r_offset or 0)
                            if gap > 1 and r_offset and acks_enabled_for(message.topic):
                                await self._add_gap(tp, r_offset + 1, offset)
                            if self._commit_every is not None and self._n_acked >= self._commit_every:
                                self._n_acked = 0
                                await self.commit()
                            if suspended():  # a rebalance is under way: keep Faust's interruptible wait
                                await self.wait_first(callback(message), self.suspend_flow.wait())
                            else:
                                generation = app.consumer_generation_id
                                await callback(message)
                                if app.consumer_generation_id != generation:
                                    # a rebalance completed while this delivery waited for the flow to
                                    # resume: the partitions were sought back to their committed offsets
                                    # since, so this message (and the rest of ``ait``) is stale - Faust's
                                    # streams skip it - and recording its offset as read would make the
                                    # refetch drop every message from the committed offset up to it
                                    break
                            set_read_offset(tp, offset)
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


class DirectDeliveryTransport(faust_aiokafka.Transport):
    Consumer = DirectDeliveryConsumer
