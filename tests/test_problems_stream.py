"""Problem records through the stream: raised by the worker, the same as an offline replay, and
a problem manager's decision applied back through the feedback topic."""

from __future__ import annotations

from collections import defaultdict

import pytest

from detectors import RecurringIncidentDetector
from opsintel.cli import main as cli
from opsintel.problems import ProblemRecord, decode_problem
from sinks.clickhouse import ClickHouseStore
from streams.adapters import read_events
from streams.ingest import Ingestor
from tests.support import SHARED_DATA, WorkerProcess, drain, get_json, settings_of, wait_until

pytestmark = [pytest.mark.integration, pytest.mark.slow]

# the recurring detector watches a signature for two weeks before it may raise it, and the bundled
# slice covers about two weeks: this test needs the full log (../shared/data, present in CI)
LOG = SHARED_DATA / "servicenow" / "incident_event_log.csv.gz"








def offline_replay(partition_of: dict[str, int]) -> dict[str, ProblemRecord]:
    """The same detector over the same events, one instance per Kafka partition, in file order."""
    detectors: dict[int, RecurringIncidentDetector] = defaultdict(RecurringIncidentDetector)
    latest: dict[str, ProblemRecord] = {}
    events = sorted(read_events("servicenow-csv", LOG), key=lambda e: e.event_time)  # type: ignore[union-attr]
    for ev in events:
        det = detectors[partition_of[ev.event_id]]  # type: ignore[union-attr]
        det.learn_one(ev)  # type: ignore[arg-type]
        for rec in det.pop_updates():
            latest[rec.problem_id] = rec
    return latest


def test_stream_raises_the_same_problems_as_an_offline_replay_and_applies_feedback(
    worker: WorkerProcess, monkeypatch: pytest.MonkeyPatch
) -> None:
    from kafka import KafkaConsumer

    assert LOG.exists(), f"{LOG} is missing (the shared data folder sits beside the repository)"
    settings = settings_of(worker.env)
    ingestor = Ingestor(settings)
    try:
        ingestor.ingest("servicenow-csv", [LOG])
    finally:
        ingestor.close()
    drain(settings, timeout=600, extra_topics=["feedback"])

    streamed = {r["problem_id"]: r for r in get_json(f"{worker.url}/api/problems?limit=1000")}
    assert streamed, "the demo slice should raise at least one recurring problem"

    consumer = KafkaConsumer(settings.topic("problems"), **settings.kafka_client_options(),
                             auto_offset_reset="earliest", consumer_timeout_ms=5000)
    on_topic: dict[str, ProblemRecord] = {}
    for m in consumer:
        rec = decode_problem(m.value)
        assert m.key == rec.problem_id.encode()
        if rec.problem_id not in on_topic or rec.version > on_topic[rec.problem_id].version:
            on_topic[rec.problem_id] = rec
    consumer.close()
    assert {pid: r.version for pid, r in on_topic.items()} == {pid: r["version"] for pid, r in streamed.items()}

    # a problem manager rejects one problem from the terminal; the worker applies it
    target = max((r for r in streamed.values() if r["kind"] == "recurring"), key=lambda r: r["incident_count"])
    for key, value in worker.env.items():
        if key.startswith("OPSINTEL_"):
            monkeypatch.setenv(key, value)
    assert cli(["problems", "reject", target["problem_id"], "--by", "pm@example.com", "--note", "known noise"]) == 0
    wait_until(lambda: get_json(f"{worker.url}/api/problems/{target['problem_id']}")["status"] == "rejected",
               timeout=120, message="the rejection to be applied")
    shown = get_json(f"{worker.url}/api/problems/{target['problem_id']}")
    assert shown["feedback_action"] == "reject"
    assert len(shown["incidents"]) > 0

    worker.stop()
    store = ClickHouseStore(f"chdb://{settings.data_dir / 'clickhouse'}", settings.clickhouse_database)
    try:
        partition_of = dict(store.query("SELECT event_id, kafka_partition FROM {db}.ticket_events FINAL"))
        snapshots = store.query("SELECT partition, positions FROM {db}.detector_state FINAL "
                                "WHERE detector = 'recurring' ORDER BY partition")
    finally:
        store.close()
    assert snapshots and all(p[settings.topic("tickets")] > 0 for _, p in snapshots)
    replayed = offline_replay(partition_of)
    recurring = {pid: r for pid, r in streamed.items() if r["kind"] == "recurring"}
    assert recurring, "the full log raises recurring problems"
    assert {pid: (r.incident_count, r.version) for pid, r in replayed.items()} == {
        pid: (r["incident_count"], r["version"]) for pid, r in recurring.items()
    }
