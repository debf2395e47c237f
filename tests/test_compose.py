"""deploy/compose.yaml: the local stack is wired the way the worker and the Helm chart expect.

No docker engine is needed: the file is parsed (with compose's ``${VAR:-default}`` interpolation) and
each service's image, command, ports, mounts and environment are checked against Settings, the CLI,
the Dockerfile, the Helm chart and deploy/kafka.sh.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml

from opsintel.settings import Settings
from tests.support import SECRET_FILE_VARS, SETTING_VARS, parse_cli

ROOT = Path(__file__).resolve().parents[1]
DEPLOY = ROOT / "deploy"
CHART = ROOT / "helm" / "opsintel"
OPSINTEL_SERVICES = ("migrate", "worker", "ingest")


def interpolate(value: Any) -> Any:
    """Compose's ``${VAR:-default}`` with an empty environment: the defaults the file ships."""
    if isinstance(value, str):
        return re.sub(r"\$\{(\w+)(?::?-([^}]*))?\}", lambda m: m.group(2) or "", value)
    if isinstance(value, list):
        return [interpolate(v) for v in value]
    if isinstance(value, dict):
        return {k: interpolate(v) for k, v in value.items()}
    return value


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return interpolate(yaml.safe_load((DEPLOY / "compose.yaml").read_text()))


@pytest.fixture(scope="module")
def services(compose: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return compose["services"]


@pytest.fixture(scope="module")
def chart_values() -> dict[str, Any]:
    return yaml.safe_load((CHART / "values.yaml").read_text())


def env_of(service: dict[str, Any]) -> dict[str, str]:
    env = service.get("environment", {})
    if isinstance(env, list):
        env = dict(item.split("=", 1) for item in env)
    return {k: str(v) for k, v in env.items()}


def published(service: dict[str, Any]) -> dict[int, str]:
    """container port → host binding, from the short syntax ``[ip:]host:container``."""
    out = {}
    for spec in service.get("ports", []):
        *host, container = str(spec).split(":")
        out[int(container)] = ":".join(host)
    return out


def mounts(service: dict[str, Any]) -> dict[str, str]:
    """target → source of the short-syntax volumes."""
    out = {}
    for spec in service.get("volumes", []):
        source, target, *_ = spec.split(":")
        out[target] = source
    return out


def test_the_stack_has_every_service(services: dict[str, Any]) -> None:
    assert {"kafka", "clickhouse", "grafana", "prometheus", *OPSINTEL_SERVICES} <= set(services)


@pytest.mark.parametrize("name", OPSINTEL_SERVICES)
def test_opsintel_services_build_the_image_the_chart_deploys(
    services: dict[str, Any], chart_values: dict[str, Any], name: str
) -> None:
    service = services[name]
    build = service["build"]
    assert (DEPLOY / build["context"]).resolve() == ROOT, "the Dockerfile copies from the repo root"
    assert (DEPLOY / build["context"] / build["dockerfile"]).resolve() == DEPLOY / "Dockerfile"
    chart = yaml.safe_load((CHART / "Chart.yaml").read_text())
    assert service["image"] == f"{chart_values['image']['repository']}:{chart['appVersion']}"
    # the same hardening as the chart's securityContext
    assert service["read_only"] is True
    assert service["cap_drop"] == ["ALL"]
    assert str(service["user"]).split(":")[0] == str(chart_values["podSecurityContext"]["runAsUser"])
    assert "/tmp" in service["tmpfs"]


@pytest.mark.parametrize("name", OPSINTEL_SERVICES)
def test_commands_parse_with_the_cli(services: dict[str, Any], name: str) -> None:
    args = parse_cli(services[name]["command"])
    assert args.command == name


@pytest.mark.parametrize("name", OPSINTEL_SERVICES)
def test_environment_names_are_settings(services: dict[str, Any], name: str) -> None:
    names = {k for k in env_of(services[name]) if k.startswith("OPSINTEL_")}
    assert names - SETTING_VARS - SECRET_FILE_VARS == set()


def test_settings_parse_and_point_at_the_stack(services: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> None:
    for var in [v for v in os.environ if v.startswith("OPSINTEL_")]:
        monkeypatch.delenv(var)
    env = env_of(services["worker"])
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    settings = Settings()
    kafka_host, kafka_port = settings.kafka_bootstrap.split(":")
    assert kafka_host == "kafka"
    assert f"PLAINTEXT://kafka:{kafka_port}" in env_of(services["kafka"])["KAFKA_ADVERTISED_LISTENERS"]
    dsn = urlsplit(settings.clickhouse_dsn)
    assert (dsn.scheme, dsn.hostname, dsn.port) == ("http", "clickhouse", 8123), "a server, not embedded chDB"
    clickhouse = env_of(services["clickhouse"])
    assert dsn.username == clickhouse["CLICKHOUSE_USER"]
    assert settings.clickhouse_password.get_secret_value() == clickhouse["CLICKHOUSE_PASSWORD"]
    assert settings.clickhouse_database == clickhouse["CLICKHOUSE_DB"]
    assert settings.web_host == "0.0.0.0"


def test_worker_port_and_data_dir(services: dict[str, Any], chart_values: dict[str, Any]) -> None:
    worker = services["worker"]
    port = Settings().web_port
    assert int(env_of(worker)["OPSINTEL_WEB_PORT"]) == port == chart_values["worker"]["port"]
    assert port in published(worker)
    dockerfile = (DEPLOY / "Dockerfile").read_text()
    data_dir = re.search(r"OPSINTEL_DATA_DIR=(\S+)", dockerfile).group(1)
    assert env_of(worker)["OPSINTEL_DATA_DIR"] == data_dir
    assert data_dir in mounts(worker), "worker state must survive a container restart"
    assert "healthcheck" not in worker, "the image's HEALTHCHECK (GET /health) applies"


def test_numba_cache_dir_of_the_image_is_writable(services: dict[str, Any]) -> None:
    # the root filesystem is read-only: the image's NUMBA_CACHE_DIR must be on a tmpfs or a volume
    worker = services["worker"]
    assert worker["read_only"] is True
    cache = re.search(r"NUMBA_CACHE_DIR=(\S+)", (DEPLOY / "Dockerfile").read_text()).group(1)
    writable = [*worker.get("tmpfs", []), *mounts(worker)]
    assert any(cache == p or cache.startswith(p.rstrip("/") + "/") for p in writable), (cache, writable)


def test_host_ports_bind_to_loopback(services: dict[str, Any]) -> None:
    for name, service in services.items():
        for container, host in published(service).items():
            assert host.startswith("127.0.0.1:"), f"{name}:{container} is published on every interface"


def test_start_order_and_one_shots(services: dict[str, Any]) -> None:
    worker = services["worker"]["depends_on"]
    assert worker["kafka"]["condition"] == "service_healthy"
    assert worker["clickhouse"]["condition"] == "service_healthy"
    assert worker["migrate"]["condition"] == "service_completed_successfully"
    assert services["ingest"]["depends_on"]["worker"]["condition"] == "service_healthy"
    for name in ("migrate", "ingest"):
        assert services[name]["restart"] == "no"
        assert services[name]["healthcheck"] == {"disable": True}, "a one-shot has no /health"
    for name in ("kafka", "clickhouse"):
        assert services[name]["healthcheck"]["test"], f"{name} needs a healthcheck for depends_on"


def test_demo_ingest_reads_a_shipped_file(services: dict[str, Any]) -> None:
    ingest = services["ingest"]
    args = parse_cli(ingest["command"])
    (path,) = args.paths
    source = mounts(ingest)[str(Path(path).parent)]
    assert (DEPLOY / source / Path(path).name).is_file(), f"{path} is not in {source}"


def test_kafka_matches_the_local_broker_version(services: dict[str, Any]) -> None:
    pom = (DEPLOY / "kafka" / "pom.xml").read_text()
    version = re.search(r"<kafka.version>(.+)</kafka.version>", pom).group(1)
    assert services["kafka"]["image"] == f"apache/kafka:{version}"
    env = env_of(services["kafka"])
    assert env["KAFKA_PROCESS_ROLES"] == "broker,controller", "KRaft, no ZooKeeper"
    assert int(env["KAFKA_NUM_PARTITIONS"]) == Settings().partitions


def test_prometheus_scrapes_the_worker(services: dict[str, Any]) -> None:
    config_mount = mounts(services["prometheus"])["/etc/prometheus/prometheus.yml"]
    config_path = DEPLOY / config_mount
    config = yaml.safe_load(config_path.read_text())
    job = next(j for j in config["scrape_configs"] if j["job_name"] == "opsintel-worker")
    assert job["metrics_path"] == "/metrics"
    targets = [t for c in job["static_configs"] for t in c["targets"]]
    assert targets == [f"worker:{Settings().web_port}"]
    promtool = shutil.which("promtool")
    if promtool:  # deploy/setup.sh installs it; without it the structure above is what is checked
        proc = subprocess.run([promtool, "check", "config", str(config_path)], capture_output=True, text=True)
        assert proc.returncode == 0, proc.stdout + proc.stderr


def test_grafana_provisions_the_chart_datasource_and_the_dashboards(
    services: dict[str, Any], chart_values: dict[str, Any]
) -> None:
    grafana = services["grafana"]
    volumes = mounts(grafana)
    datasources = DEPLOY / volumes["/etc/grafana/provisioning/datasources"]
    (ds,) = [
        d
        for f in sorted(datasources.glob("*.yaml"))
        for d in yaml.safe_load(f.read_text())["datasources"]
        if d["type"] == "grafana-clickhouse-datasource"
    ]
    assert ds["uid"] == chart_values["grafana"]["datasource"]["uid"], "dashboards refer to one uid"
    assert (ds["jsonData"]["host"], ds["jsonData"]["port"]) == ("clickhouse", 8123)
    assert ds["jsonData"]["username"] == env_of(services["clickhouse"])["CLICKHOUSE_USER"]
    password_var = re.fullmatch(r"\$\{(\w+)\}", ds["secureJsonData"]["password"]).group(1)
    assert password_var in env_of(grafana), "Grafana resolves the password from its environment"
    assert "grafana-clickhouse-datasource" in env_of(grafana)["GF_INSTALL_PLUGINS"]
    # the dashboard provider reads the folder `opsintel dashboards --out var/dashboards` writes
    providers = DEPLOY / volumes["/etc/grafana/provisioning/dashboards"]
    (provider,) = [p for f in sorted(providers.glob("*.yaml")) for p in yaml.safe_load(f.read_text())["providers"]]
    dashboards_source = next(src for target, src in volumes.items() if target == provider["options"]["path"])
    assert (DEPLOY / dashboards_source).resolve() == ROOT / "var" / "dashboards"


def test_secrets_are_not_baked_into_the_image() -> None:
    dockerfile = (DEPLOY / "Dockerfile").read_text()
    secret_vars = {v.removesuffix("_FILE") for v in SECRET_FILE_VARS}
    assert not any(var in dockerfile for var in secret_vars)
