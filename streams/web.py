"""The worker's HTTP endpoints (on Faust's web server, ``OPSINTEL_WEB_PORT``).

* ``GET /health`` - 200 once the store is ready, else 503 (probes, the Docker healthcheck);
* ``GET /metrics`` - Prometheus text format;
* ``POST /alertmanager`` - Alertmanager webhook (v4 JSON): alerts go to the monitoring topic,
  bad alerts to the dead-letter topic. Requires the bearer token ``OPSINTEL_WEBHOOK_TOKEN`` (disabled
  while none is set),
  ``application/json`` only, body size and request rate limited;
* ``GET /api/summary``, ``GET /api/problems[?status=&service=&limit=]``, ``GET /api/problems/{id}``
  - fixed read queries, served by the worker that owns the store (the embedded chDB store admits
  one process, so the CLI asks the worker while it runs).
"""

from __future__ import annotations

import hmac
import time
from functools import partial
from typing import TYPE_CHECKING, Any

import faust
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from opsintel.events import encode
from sinks.clickhouse import queries
from sinks.deadletter import DeadLetter
from sinks.exceptions import SinkError
from streams.adapters._base import Rejected
from streams.adapters.alertmanager import parse_alertmanager_payload

if TYPE_CHECKING:
    from streams.app import WorkerState


class TokenBucket:
    """A small rate limiter: ``rate`` requests per second, bursts up to ``burst``."""

    def __init__(self, rate: float, burst: float) -> None:
        self.rate, self.burst = rate, burst
        self.tokens = burst
        self.stamp = time.monotonic()

    def take(self) -> bool:
        now = time.monotonic()
        self.tokens = min(self.burst, self.tokens + (now - self.stamp) * self.rate)
        self.stamp = now
        if self.tokens >= 1:
            self.tokens -= 1
            return True
        return False


def register_views(app: faust.App, state: WorkerState, monitoring_topic: faust.TopicT,
                   deadletter_topic: faust.TopicT) -> None:
    settings = state.settings
    metrics = state.metrics
    bucket = TokenBucket(rate=20.0, burst=50.0)

    @app.page("/health")
    async def health(self: faust.web.View, request: faust.web.Request) -> faust.web.Response:
        status = 200 if state.ready else 503
        return self.json({"status": "ok" if state.ready else "starting"}, status=status)

    @app.page("/metrics")
    async def prometheus(self: faust.web.View, request: faust.web.Request) -> faust.web.Response:
        return self.bytes(generate_latest(metrics.registry), content_type=CONTENT_TYPE_LATEST.split(";")[0])

    @app.page("/api/summary")
    async def summary(self: faust.web.View, request: faust.web.Request) -> faust.web.Response:
        try:
            data = await state.writer.call(queries.summary, state.store)
        except SinkError as e:
            return self.json({"error": str(e)}, status=503)
        return self.json(data)

    class Problems(faust.web.View):
        async def get(self, request: faust.web.Request) -> faust.web.Response:
            q = request.query
            try:
                limit = min(int(q.get("limit", "50")), 1000)
            except ValueError:
                return self.json({"error": "limit must be an integer"}, status=400)
            try:
                rows = await state.writer.call(
                    partial(queries.problems, state.store, status=q.get("status", ""), service=q.get("service", ""),
                            limit=limit)
                )
            except SinkError as e:
                return self.json({"error": str(e)}, status=503)
            return self.json(rows)

    class Problem(faust.web.View):
        async def get(self, request: faust.web.Request, problem_id: str) -> faust.web.Response:
            try:
                row = await state.writer.call(queries.problem, state.store, problem_id)
            except SinkError as e:
                return self.json({"error": str(e)}, status=503)
            return self.json(row) if row else self.json({"error": "no such problem"}, status=404)

    app.page("/api/problems")(Problems)
    app.page("/api/problems/{problem_id}")(Problem)

    class AlertmanagerWebhook(faust.web.View):
        async def post(self, request: faust.web.Request) -> faust.web.Response:
            code, body = await receive(request)
            metrics.webhook_requests.labels(str(code)).inc()
            return self.json(body, status=code)

    async def receive(request: Any) -> tuple[int, dict[str, Any]]:
        token = settings.webhook_token.get_secret_value()
        if not token:  # an unauthenticated receiver would let anyone inject alerts: off until configured
            return 503, {"error": "webhook disabled: set OPSINTEL_WEBHOOK_TOKEN "
                                  "(Alertmanager: http_config.authorization)"}
        sent = request.headers.get("Authorization", "")
        if not hmac.compare_digest(sent.encode(), f"Bearer {token}".encode()):
            return 401, {"error": "missing or wrong bearer token"}
        if not bucket.take():
            return 429, {"error": "rate limit exceeded"}
        if request.content_type != "application/json":
            return 415, {"error": "Content-Type must be application/json"}
        limit = settings.webhook_max_bytes
        if request.content_length is not None and request.content_length > limit:
            return 413, {"error": f"body larger than {limit} bytes"}
        body = await request.content.read(limit + 1)
        if len(body) > limit:
            return 413, {"error": f"body larger than {limit} bytes"}
        accepted = rejected = 0
        received = f"webhook:{time.time_ns()}"
        for i, item in enumerate(parse_alertmanager_payload(body, source="alertmanager-webhook")):
            if isinstance(item, Rejected):
                dl = DeadLetter.for_record(item.raw, reason=item.reason, origin=f"{received}:{i}",
                                           origin_topic=monitoring_topic.get_topic_name())
                await deadletter_topic.send(key=dl.origin.encode(), value=dl.payload, headers=dl.kafka_headers())
                metrics.count_dead_letters([dl])
                rejected += 1
            else:
                await monitoring_topic.send(key=item.partition_key.encode(), value=encode(item))
                accepted += 1
        return 200, {"accepted": accepted, "rejected": rejected}

    app.page("/alertmanager")(AlertmanagerWebhook)
