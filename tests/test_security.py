"""Security: SQL built only with parameters and quoted identifiers; secrets never leak; the
webhook receiver authenticates and limits what it accepts.

The SQL-injection and webhook tests run the real path (Kafka → worker → ClickHouse → HTTP API);
the secret tests run real worker and CLI processes and scan everything they print.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from opsintel.events import TicketEvent
from opsintel.settings import Settings
from sinks.clickhouse import ClickHouseStore, queries
from sinks.exceptions import SinkError
from streams.ingest import INPUT_TOPICS, Ingestor, OffsetProgress
from tests.support import ROOT, WorkerProcess, free_port, settings_of, wait_until

#: strings that break naively built SQL (quotes, comments, statement ends, backslashes, the store's
#: own ``{db}`` placeholder and parameter syntax, a NUL, and unusual unicode)
EVIL = [
    "'; DROP TABLE opsintel.incidents; --",
    "Robert'); DROP TABLE `ticket_events`;--",
    "x\\' OR 1=1 --",
    "` OR 1=1; SELECT * FROM system.users; --",
    "{db}.incidents",
    "{closed:Array(String)}",
    "/* comment */ UNION ALL SELECT 1",
    "a\\",
    'double "quoted"',
    "nul\x00byte \u202eevil 🔥",
]
SECRETS = {
    "OPSINTEL_KAFKA_SASL_PASSWORD": "kafka-s3cret-Aq7",
    "OPSINTEL_WEBHOOK_TOKEN": "hook-t0ken-Zp9",
}
FILE_SECRET = "clickhouse-s3cret-Lm4"  # via OPSINTEL_CLICKHOUSE_PASSWORD_FILE
DSN_SECRET = "dsn-s3cret-Xy2"  # written into the DSN itself, as people do




def post(url: str, body: bytes, headers: dict[str, str]) -> int:
    req = urllib.request.Request(url, data=body, method="POST", headers=headers)
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return int(r.status)
    except urllib.error.HTTPError as e:
        return int(e.code)


# --- SQL ------------------------------------------------------------------------------------------------------
@pytest.mark.integration
def test_sql_looking_text_travels_the_whole_path_verbatim(worker: WorkerProcess) -> None:
    """Tickets whose service, state, priority and text are SQL fragments go through Kafka, the
    worker and ClickHouse, and the summary API returns them exactly; every table is still there."""
    settings = settings_of(worker.env)
    t0 = datetime(2016, 3, 1, tzinfo=UTC)
    ingestor = Ingestor(settings)
    n = 0
    for i, evil in enumerate(EVIL):
        for j in range(i + 1):  # a distinct count per service, so the ranking is unambiguous
            ingestor.send_event(TicketEvent(
                event_id=f"evil:{i}:{j}:{evil}", source="sql-test", ticket_id=f"INC'{i}-{j}; --", kind="created",
                version=0, event_time=t0 + timedelta(minutes=n), state=f"New {evil}", priority=evil,
                service=evil, description=evil * 3, caller=evil, ci=evil))
            n += 1
    ingestor.flush()
    ingestor.close()
    with OffsetProgress(settings, [settings.topic(t) for t in INPUT_TOPICS]) as progress:
        wait_until(lambda: progress.remaining() == 0, message="the worker to commit every offset")
    with urllib.request.urlopen(f"{worker.url}/api/summary", timeout=30) as r:
        summary = json.load(r)
    assert summary["rows"]["ticket_events"] == n and summary["rows"]["incidents"] == n
    top = {row["service"]: row["open"] for row in summary["top_services_by_open_incidents"]}
    assert top == {evil: i + 1 for i, evil in enumerate(EVIL)}
    assert {row["state"] for row in summary["incidents_by_state"]} == {f"New {e}" for e in EVIL}
    assert {row["priority"] for row in summary["incidents_by_priority"]} == set(EVIL)


def test_sql_injection_in_names_and_values_at_the_store(tmp_path: Path) -> None:
    """A database name and parameter values full of SQL syntax are quoted and bound, never run."""
    database = "ops`intel'; DROP DATABASE system; --"
    store = ClickHouseStore(f"chdb://{tmp_path / 'ch'}", database)
    try:
        store.migrate()
        t0 = datetime(2016, 3, 1, tzinfo=UTC)
        events = [TicketEvent(event_id=f"e{i}", source="s", ticket_id=f"T{i}", kind="created", version=0,
                              event_time=t0, state="Open", service=evil) for i, evil in enumerate(EVIL)]
        store.insert_ticket_events(events, [0] * len(events), list(range(len(events))))
        for evil in EVIL:
            got = store.query("SELECT count() FROM {db}.ticket_events FINAL WHERE service = {s:String}", {"s": evil})
            assert got == [(1,)], evil
        assert store.table_counts(["ticket_events", "incidents"]) == {"ticket_events": len(EVIL),
                                                                      "incidents": len(EVIL)}
        top = queries.summary(store, top=len(EVIL))["top_services_by_open_incidents"]
        assert sorted(r["service"] for r in top) == sorted(EVIL)
        assert store.query("SELECT name FROM system.databases WHERE name = {d:String}", {"d": database}) == [
            (database,)]
    finally:
        store.close()


# --- secrets ---------------------------------------------------------------------------------------------------
def assert_no_secret(text: str, where: str) -> None:
    for secret in [*SECRETS.values(), FILE_SECRET, DSN_SECRET]:
        assert secret not in text, f"{where} leaks a secret ({secret[:6]}…)"


def test_secrets_stay_out_of_repr_config_and_store_errors(tmp_path: Path) -> None:
    secret_file = tmp_path / "ch-password"
    secret_file.write_text(FILE_SECRET + "\n")
    port = free_port()  # nothing listens there
    env = dict(os.environ, **SECRETS, OPSINTEL_CLICKHOUSE_PASSWORD_FILE=str(secret_file),
               OPSINTEL_CLICKHOUSE_DSN=f"http://opsintel:{DSN_SECRET}@127.0.0.1:{port}")
    out = subprocess.run([sys.executable, "-m", "opsintel.cli", "config"], env=env, cwd=ROOT, capture_output=True,
                         text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert_no_secret(out.stdout + out.stderr, "`opsintel config`")
    shown = json.loads(out.stdout)
    assert shown["clickhouse_password"] == shown["kafka_sasl_password"] == shown["webhook_token"] == "********"

    settings = Settings(kafka_sasl_password=SECRETS["OPSINTEL_KAFKA_SASL_PASSWORD"], clickhouse_password=FILE_SECRET,
                        webhook_token=SECRETS["OPSINTEL_WEBHOOK_TOKEN"],
                        clickhouse_dsn=f"https://opsintel:{DSN_SECRET}@127.0.0.1:{port}")
    assert_no_secret(json.dumps(settings.redacted()), "Settings.redacted()")
    plain = settings.model_copy(update={"clickhouse_dsn": f"https://opsintel@127.0.0.1:{port}"})
    assert_no_secret(repr(plain) + str(plain), "repr(Settings)")
    store = ClickHouseStore.from_settings(settings)
    assert_no_secret(repr(store), "repr(store)")
    for dsn, password in ((f"http://opsintel:{DSN_SECRET}@127.0.0.1:{port}", ""),
                          (f"http://opsintel@127.0.0.1:{port}", FILE_SECRET)):
        broken = ClickHouseStore(dsn, "opsintel", password=password)
        with pytest.raises(SinkError) as err:
            broken.migrate()
        chain = []
        e: BaseException | None = err.value
        while e is not None:  # the message of every exception in the chain, as a traceback shows them
            chain.append(f"{type(e).__name__}: {e}")
            e = e.__cause__ or e.__context__
        assert_no_secret("\n".join(chain) + repr(broken), f"the store error for {dsn.split('@')[0]}…")


def test_a_password_inside_the_dsn_stays_out_of_repr_settings() -> None:
    settings = Settings(clickhouse_dsn=f"https://opsintel:{DSN_SECRET}@ch.example:8443")
    assert_no_secret(repr(settings) + str(settings), "repr(Settings)")


@pytest.mark.integration
def test_worker_logs_hold_no_secret_even_when_everything_fails(worker_env: dict[str, str], tmp_path: Path) -> None:
    """A worker with every secret set, debug logging, and an unreachable ClickHouse (password in the
    DSN and in a file): its whole output is scanned for the secret values. (The webhook token in a
    worker's log is checked by the webhook test.)"""
    secret_file = tmp_path / "ch-password"
    secret_file.write_text(FILE_SECRET)
    port = free_port()
    env = dict(worker_env, **SECRETS, OPSINTEL_LOG_LEVEL="debug",
               OPSINTEL_CLICKHOUSE_PASSWORD_FILE=str(secret_file),
               OPSINTEL_CLICKHOUSE_DSN=f"http://opsintel:{DSN_SECRET}@127.0.0.1:{port}")
    log = tmp_path / "worker.log"
    with log.open("wb") as out:
        proc = subprocess.Popen([sys.executable, "-m", "opsintel.cli", "worker"], env=env, stdout=out,
                                stderr=subprocess.STDOUT, cwd=ROOT)
    try:
        # (today the worker exits when ClickHouse is unreachable at start-up: streams/app.py runs the
        # schema migration once instead of through the retrying writer; reported to the lead)
        wait_until(lambda: log.read_text(errors="replace").count("cannot connect to ClickHouse") >= 1
                   or proc.poll() is not None, timeout=90, message="the worker to report ClickHouse failures")
    finally:
        proc.terminate()
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    text = log.read_text(errors="replace")
    assert f"127.0.0.1', port={port}" in text and "cannot connect to ClickHouse" in text  # it logged the failure …
    assert_no_secret(text, "the worker log")  # … without the secrets


@pytest.mark.integration
def test_sasl_failure_output_holds_no_secret(kafka_bootstrap: str, tmp_path: Path) -> None:
    """SASL credentials against a broker that does not speak SASL: the error output names the
    problem, never the password."""
    env = dict(os.environ, **SECRETS, OPSINTEL_KAFKA_BOOTSTRAP=kafka_bootstrap,
               OPSINTEL_KAFKA_SECURITY_PROTOCOL="SASL_PLAINTEXT", OPSINTEL_KAFKA_SASL_USERNAME="opsintel",
               OPSINTEL_TOPIC_PREFIX=f"sasl{time.time_ns()}.", OPSINTEL_DATA_DIR=str(tmp_path / "var"))
    try:
        out = subprocess.run([sys.executable, "-m", "opsintel.cli", "-v", "topics"], env=env, cwd=ROOT,
                             capture_output=True, text=True, timeout=90)
        text = out.stdout + out.stderr
        assert out.returncode != 0
    except subprocess.TimeoutExpired as e:  # still retrying: what it printed so far counts
        text = (e.stdout or b"").decode(errors="replace") + (e.stderr or b"").decode(errors="replace")
    assert_no_secret(text, "`opsintel topics` with SASL")


# --- the webhook receiver ----------------------------------------------------------------------------------------
@pytest.mark.integration
def test_webhook_demands_a_token_and_limits_type_size_and_rate(worker_env: dict[str, str], tmp_path: Path) -> None:
    env = dict(worker_env, OPSINTEL_WEBHOOK_TOKEN=SECRETS["OPSINTEL_WEBHOOK_TOKEN"],
               OPSINTEL_WEBHOOK_MAX_BYTES="4096")
    w = WorkerProcess(env, tmp_path / "w.log").start()
    try:
        url = f"{w.url}/alertmanager"
        good = {"Content-Type": "application/json", "Authorization": f"Bearer {SECRETS['OPSINTEL_WEBHOOK_TOKEN']}"}
        body = b'{"version":"4","status":"firing","alerts":[]}'
        assert post(url, body, {"Content-Type": "application/json"}) == 401
        assert post(url, body, dict(good, Authorization="Bearer " + SECRETS["OPSINTEL_WEBHOOK_TOKEN"][:-1])) == 401
        assert post(url, body, dict(good, Authorization=SECRETS["OPSINTEL_WEBHOOK_TOKEN"])) == 401  # no scheme
        assert post(url, body, dict(good, **{"Content-Type": "text/plain"})) == 415
        assert post(url, body, dict(good, **{"Content-Type": "application/x-www-form-urlencoded"})) == 415
        assert post(url, b"{" + b" " * 5000 + b"}", good) == 413
        assert post(url, body, good) == 200
        codes = [post(url, body, good) for _ in range(80)]  # a burst above the limit (50, then 20/s)
        assert 429 in codes and codes.count(200) >= 40
        unauthenticated = [post(url, body, {"Content-Type": "application/json"}) for _ in range(5)]
        assert set(unauthenticated) == {401}  # the wrong token is refused before anything else
    finally:
        w.stop()
    assert_no_secret((tmp_path / "w.log").read_text(errors="replace"), "the worker log")
