"""The Helm chart (helm/opsintel): lint, render every CI scenario, validate every object against the
Kubernetes 1.30 schemas, and check what an operator would notice: replicas, labels and selectors,
hardening, probes, settings that the worker really reads, secrets as files, the embedded-chDB
single-replica rule, dashboards for the Grafana sidecar.

Needs the helm binary: ``deploy/helm.sh`` builds it into ``.cache/bin`` (CI runs it first); a missing
binary fails these tests rather than skipping them.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from opsintel.settings import Settings
from tests.helm_chart import (
    CHART,
    CRD_KINDS,
    KUBE_VERSION,
    NAMESPACE,
    ROOT,
    SCENARIOS,
    Rendered,
    container,
    find_helm,
    notes,
    pod_spec,
    render,
    render_fails,
    run_helm,
    workloads,
)
from tests.support import SECRET_FILE_VARS, SETTING_VARS, parse_cli


# --- helm ------------------------------------------------------------------------------------------
@pytest.fixture(scope="session")
def helm() -> str:
    found = find_helm()
    if found is None:
        pytest.fail(
            "helm not found in .cache/bin/helm or on PATH: run deploy/helm.sh (builds helm v3.22.0 with "
            "`go install`, once)",
            pytrace=False,
        )
    return found


@pytest.fixture(scope="module", params=SCENARIOS)
def scenario(request: pytest.FixtureRequest, helm: str) -> tuple[str, Rendered]:
    return request.param, render(helm, request.param)


@pytest.fixture(scope="module")
def production(helm: str) -> Rendered:
    return render(helm, "production-values.yaml")


@pytest.fixture(scope="module")
def values() -> dict[str, Any]:
    return yaml.safe_load((CHART / "values.yaml").read_text())


# --- lint and schema validation ---------------------------------------------------------------------


def test_ci_scenarios_exist() -> None:
    assert {"minimal-values.yaml", "production-values.yaml"} <= set(SCENARIOS)


@pytest.mark.parametrize("values_file", SCENARIOS)
def test_lint_strict(helm: str, values_file: str) -> None:
    proc = run_helm(
        helm, "lint", "--strict", str(CHART), "-f", str(CHART / "ci" / values_file), "--kube-version", KUBE_VERSION
    )
    assert "0 chart(s) failed" in proc.stdout


def test_every_object_is_valid_kubernetes(scenario: tuple[str, Rendered]) -> None:
    name, r = scenario
    assert r.objects, f"{name} rendered nothing"
    for obj, source in zip(r.objects, r.sources, strict=True):
        if obj["kind"] in CRD_KINDS:
            continue  # no schema shipped; test_service_monitor_scrapes_the_metrics_port checks it
        try:
            kubernetes_validate.validate(obj, KUBE_VERSION, strict=True)
        except kubernetes_validate.ValidationError as e:
            pytest.fail(f"{name}: {source} ({obj['kind']}) is invalid: {e.message} at {list(e.path)}")


def test_one_kind_per_template_file(production: Rendered) -> None:
    kinds: dict[str, set[str]] = {}
    for obj, source in zip(production.objects, production.sources, strict=True):
        kinds.setdefault(source, set()).add(obj["kind"])
    assert {s: k for s, k in kinds.items() if len(k) > 1} == {}


def test_values_schema_rejects_unknown_keys_and_bad_enums(helm: str) -> None:
    assert "bogus" in render_fails(helm, "minimal-values.yaml", bogus="1")
    assert "securityProtocol" in render_fails(helm, "minimal-values.yaml", kafka__securityProtocol="TLS")
    # a password in the DSN would land in a ConfigMap
    assert "dsn" in render_fails(helm, "minimal-values.yaml", clickhouse__dsn="http://u:secret@ch:8123")
    # a worker still waiting for ClickHouse when the grace period ends would be killed mid-stop
    assert "shutdownSeconds must be below" in render_fails(
        helm, "minimal-values.yaml", worker__shutdownSeconds="60", worker__terminationGracePeriodSeconds="60")


def test_values_schema_describes_every_property() -> None:
    schema = json.loads((CHART / "values.schema.json").read_text())
    assert schema["additionalProperties"] is False

    def undescribed(node: dict[str, Any], path: str) -> Iterator[str]:
        for key, sub in node.get("properties", {}).items():
            if "description" not in sub:
                yield f"{path}{key}"
            yield from undescribed(sub, f"{path}{key}.")

    assert list(undescribed(schema, "")) == []


def test_values_yaml_is_documented_and_optional_features_are_off(values: dict[str, Any]) -> None:
    lines = (CHART / "values.yaml").read_text().splitlines()
    assert lines[0] == "# yaml-language-server: $schema=values.schema.json"
    # every key has a comment right above it, or sits under a commented key, or all its children do
    nodes: list[dict[str, Any]] = []  # {"key", "indent", "commented", "children"}
    stack: list[dict[str, Any]] = []
    for i, line in enumerate(lines):
        m = re.match(r"^(\s*)([A-Za-z_][\w.-]*):", line)
        if not m:
            continue
        j = i - 1
        while j >= 0 and lines[j].strip().startswith("#") and not lines[j].strip().startswith("# --"):
            j -= 1  # continuation lines of a "# --" comment
        node = {
            "key": m.group(2),
            "indent": len(m.group(1)),
            "children": [],
            "commented": j >= 0 and lines[j].strip().startswith("# --"),
        }
        while stack and stack[-1]["indent"] >= node["indent"]:
            stack.pop()
        (stack[-1]["children"] if stack else nodes).append(node)
        stack.append(node)

    def undocumented(node: dict[str, Any], path: str) -> list[str]:
        if node["commented"]:
            return []
        if not node["children"]:
            return [path + node["key"]]
        return [p for c in node["children"] for p in undocumented(c, f"{path}{node['key']}.")]

    assert [p for n in nodes for p in undocumented(n, "")] == []
    assert values["resources"] == {}
    for feature in (
        values["serviceMonitor"],
        values["podDisruptionBudget"],
        values["autoscaling"],
        values["networkPolicy"],
        values["persistence"],
        values["grafana"]["dashboards"],
        values["grafana"]["datasource"],
    ):
        assert feature["enabled"] is False


def test_chart_versions_follow_the_package() -> None:
    chart = yaml.safe_load((CHART / "Chart.yaml").read_text())
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert chart["apiVersion"] == "v2"
    assert chart["appVersion"] == pyproject["project"]["version"] == "0.1.0"


# --- labels and selectors ---------------------------------------------------------------------------


def test_labels_and_selectors(scenario: tuple[str, Rendered]) -> None:
    name, r = scenario
    for obj in r.objects:
        labels = obj["metadata"]["labels"]
        for key in (
            "app.kubernetes.io/name",
            "app.kubernetes.io/instance",
            "app.kubernetes.io/managed-by",
            "app.kubernetes.io/version",
            "helm.sh/chart",
        ):
            assert key in labels, f"{name}: {obj['kind']} {obj['metadata']['name']} lacks {key}"
    selectors = [r.deployment["spec"]["selector"]["matchLabels"], r.one("Service")["spec"]["selector"]]
    selectors += [o["spec"]["selector"]["matchLabels"] for o in r.kind("PodDisruptionBudget")]
    selectors += [o["spec"]["selector"]["matchLabels"] for o in r.kind("ServiceMonitor")]
    selectors += [o["spec"]["podSelector"]["matchLabels"] for o in r.kind("NetworkPolicy")]
    pod_labels = r.deployment["spec"]["template"]["metadata"]["labels"]
    for selector in selectors:
        assert "helm.sh/chart" not in selector and "app.kubernetes.io/version" not in selector
        assert selector.items() <= pod_labels.items(), "selector must match the worker pods"
    # the Service and budgets must not pick up the migration Job or the test pod
    for other in [*r.kind("Job"), *r.kind("Pod")]:
        other_labels = other["metadata"]["labels"]
        assert not selectors[1].items() <= other_labels.items(), other["metadata"]["name"]


def test_service_monitor_scrapes_the_metrics_port(production: Rendered) -> None:
    monitor = production.one("ServiceMonitor")
    service = production.one("Service")
    assert monitor["apiVersion"] == "monitoring.coreos.com/v1"
    assert monitor["spec"]["selector"]["matchLabels"].items() <= service["metadata"]["labels"].items()
    (endpoint,) = monitor["spec"]["endpoints"]
    assert endpoint["port"] in {p["name"] for p in service["spec"]["ports"]}
    assert endpoint["path"] == "/metrics"
    assert monitor["metadata"]["labels"]["release"] == "kube-prometheus-stack"


# --- pods: hardening, probes, commands ------------------------------------------------------------


def test_security_context(scenario: tuple[str, Rendered]) -> None:
    name, r = scenario
    for workload in workloads(r):
        spec = pod_spec(workload)
        assert spec["securityContext"]["runAsNonRoot"] is True
        assert spec["securityContext"]["seccompProfile"]["type"] == "RuntimeDefault"
        assert spec["automountServiceAccountToken"] is False
        for c in spec["containers"] + spec.get("initContainers", []):
            sc = c["securityContext"]
            assert sc["readOnlyRootFilesystem"] is True, f"{name}: {c['name']}"
            assert sc["allowPrivilegeEscalation"] is False
            assert sc["capabilities"]["drop"] == ["ALL"]
    # a read-only root needs writable volumes where the worker writes
    mounts = {m["mountPath"]: m["name"] for m in r.worker["volumeMounts"]}
    volumes = {v["name"]: v for v in pod_spec(r.deployment)["volumes"]}
    data_dir = r.settings_env["OPSINTEL_DATA_DIR"]
    for path in ("/tmp", data_dir):
        volume = volumes[mounts[path]]
        assert "emptyDir" in volume or "persistentVolumeClaim" in volume


def test_numba_cache_dir_of_the_image_is_writable(scenario: tuple[str, Rendered]) -> None:
    # numba ignores a read-only cache directory (and raises at import when it finds no writable one):
    # the image points NUMBA_CACHE_DIR at a volume the worker mounts writable
    name, r = scenario
    cache = re.search(r"NUMBA_CACHE_DIR=(\S+)", (ROOT / "deploy" / "Dockerfile").read_text()).group(1)
    mounts = {m["mountPath"]: m for m in r.worker["volumeMounts"]}
    volumes = {v["name"]: v for v in pod_spec(r.deployment)["volumes"]}
    under = [p for p in mounts if cache == p or cache.startswith(p.rstrip("/") + "/")]
    assert under, f"{name}: {cache} is on the read-only root filesystem"
    mount = mounts[max(under, key=len)]
    assert not mount.get("readOnly") and {"emptyDir", "persistentVolumeClaim"} & set(volumes[mount["name"]])


def test_uid_matches_the_image(production: Rendered) -> None:
    dockerfile = (ROOT / "deploy" / "Dockerfile").read_text()
    uid = re.findall(r"^USER (\d+)", dockerfile, flags=re.M)[-1]
    assert str(pod_spec(production.deployment)["securityContext"]["runAsUser"]) == uid
    data_dir = re.search(r"OPSINTEL_DATA_DIR=(\S+)", dockerfile).group(1)
    assert production.settings_env["OPSINTEL_DATA_DIR"] == data_dir


def test_probes_ask_health_on_the_web_port(scenario: tuple[str, Rendered]) -> None:
    name, r = scenario
    worker = r.worker
    (port,) = worker["ports"]
    assert port["name"] == "http"
    assert port["containerPort"] == int(r.settings_env["OPSINTEL_WEB_PORT"]) == Settings().web_port
    for probe in ("livenessProbe", "readinessProbe", "startupProbe"):
        assert worker[probe]["httpGet"] == {"path": "/health", "port": "http"}, f"{name}: {probe}"
    service_port = r.one("Service")["spec"]["ports"][0]
    assert service_port["targetPort"] == "http"


def test_container_commands_are_cli_subcommands(scenario: tuple[str, Rendered]) -> None:
    _, r = scenario
    dockerfile = (ROOT / "deploy" / "Dockerfile").read_text()
    assert 'ENTRYPOINT ["opsintel"]' in dockerfile, "the chart passes subcommands as args"
    for workload in workloads(r):
        if workload["kind"] == "Pod":
            continue  # the helm test pod runs wget, not the image
        for c in pod_spec(workload)["containers"] + pod_spec(workload).get("initContainers", []):
            assert "command" not in c, "keep the image's ENTRYPOINT"
            assert parse_cli(c["args"]).command in ("worker", "migrate")
    assert r.worker["args"] == ["worker"]


def test_image_defaults_to_the_app_version(helm: str) -> None:
    r = render(helm, "minimal-values.yaml")
    chart = yaml.safe_load((CHART / "Chart.yaml").read_text())
    assert r.worker["image"] == f"ghcr.io/opsintel/opsintel:{chart['appVersion']}"
    digest = "sha256:" + "a" * 64
    assert render(helm, "minimal-values.yaml", image__digest=digest).worker["image"].endswith("@" + digest)


# --- settings ------------------------------------------------------------------------------------


def chart_env_names(r: Rendered) -> set[str]:
    names = set(r.settings_env)
    for workload in workloads(r):
        for c in pod_spec(workload)["containers"] + pod_spec(workload).get("initContainers", []):
            names |= {e["name"] for e in c.get("env", [])}
    return {n for n in names if n.startswith("OPSINTEL_")}


def test_env_names_are_settings(scenario: tuple[str, Rendered]) -> None:
    name, r = scenario
    unknown = chart_env_names(r) - SETTING_VARS - SECRET_FILE_VARS
    assert unknown == set(), f"{name}: the worker does not read {sorted(unknown)} (opsintel/settings.py)"


def test_every_setting_can_be_set_from_values(helm: str) -> None:
    # over every CI scenario: some secrets exclude each other (ServiceNow basic auth or a bearer token,
    # ServiceDesk Plus on-premises or cloud), so no single valid scenario sets them all
    rendered: set[str] = set()
    for name in SCENARIOS:
        rendered |= set(render(helm, name).settings_env)
    secret_vars = {v.removesuffix("_FILE") for v in SECRET_FILE_VARS}
    missing = SETTING_VARS - secret_vars - rendered
    missing |= {v for v in SECRET_FILE_VARS if v not in rendered}
    assert missing == set(), f"add {sorted(missing)} to values.yaml and opsintel.settings in _helpers.tpl"


def test_settings_configmap_parses_as_settings(
    scenario: tuple[str, Rendered], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """The worker must start on these values: ints stay ints, enums are valid, the DSN is accepted,
    and every configured ITSM target has its credentials among the mounted secret files."""
    _, r = scenario
    for var in [v for v in os.environ if v.startswith("OPSINTEL_")]:
        monkeypatch.delenv(var)
    env = {k: v for k, v in r.settings_env.items() if k in SETTING_VARS}
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    for var in SECRET_FILE_VARS & set(r.settings_env):  # the mounted paths exist in the pod only: stand-ins
        stand_in = tmp_path / var
        stand_in.write_text("placeholder-secret\n")
        monkeypatch.setenv(var, str(stand_in))
    settings = Settings()
    assert settings.web_host == "0.0.0.0"
    assert str(settings.data_dir) == "/var/lib/opsintel"
    assert settings.webhook_max_bytes == 1_048_576
    assert settings.partitions == int(env["OPSINTEL_PARTITIONS"])


def test_secrets_are_mounted_files_from_existing_secrets(production: Rendered) -> None:
    assert production.kind("Secret") == [], "the chart never holds a secret itself"
    values = yaml.safe_load((CHART / "ci" / "production-values.yaml").read_text())
    expected = {
        "OPSINTEL_KAFKA_SASL_PASSWORD_FILE": values["kafka"]["sasl"]["existingSecret"],
        "OPSINTEL_KAFKA_SSL_CAFILE": values["kafka"]["tls"]["existingSecret"],
        "OPSINTEL_CLICKHOUSE_PASSWORD_FILE": values["clickhouse"]["existingSecret"],
        "OPSINTEL_WEBHOOK_TOKEN_FILE": values["webhook"]["existingSecret"],
        "OPSINTEL_ITSM_SERVICENOW_TOKEN_FILE": values["itsm"]["servicenow"]["existingSecret"],
        "OPSINTEL_ITSM_SERVICEDESK_PLUS_AUTHTOKEN_FILE": values["itsm"]["servicedeskPlus"]["existingSecret"],
        "OPSINTEL_ITSM_WEBHOOK_SECRET_FILE": values["itsm"]["webhook"]["existingSecret"],
    }
    job = production.one("Job")
    job_env = {e["name"]: e["value"] for e in container(job, "migrate")["env"]}
    for workload, env, c in (
        (production.deployment, production.settings_env, production.worker),
        (job, job_env, container(job, "migrate")),
    ):
        volumes = {v["name"]: v for v in pod_spec(workload)["volumes"]}
        for var, secret in expected.items():
            path = Path(env[var])
            mount = next(m for m in c["volumeMounts"] if Path(m["mountPath"]) == path.parent)
            assert mount["readOnly"] is True
            source = volumes[mount["name"]]["secret"]
            assert source["secretName"] == secret
            assert path.name in [item["path"] for item in source["items"]]
    assert not any("PASSWORD=" in line or "TOKEN=" in line for line in production.text.splitlines())


def test_itsm_targets_need_their_secrets(helm: str) -> None:
    """A target without credentials fails at install time, not with 401s from every push."""
    assert "itsm.servicenow.existingSecret" in render_fails(
        helm, "minimal-values.yaml", itsm__servicenow__url="https://acme.service-now.com")
    assert "exactly one of passwordKey" in render_fails(
        helm, "minimal-values.yaml", itsm__servicenow__url="https://acme.service-now.com",
        itsm__servicenow__existingSecret="sn", itsm__servicenow__passwordKey="p", itsm__servicenow__tokenKey="t")
    assert "needs itsm.servicenow.username" in render_fails(
        helm, "minimal-values.yaml", itsm__servicenow__url="https://acme.service-now.com",
        itsm__servicenow__existingSecret="sn", itsm__servicenow__passwordKey="p")
    assert "itsm.servicedeskPlus.existingSecret" in render_fails(
        helm, "minimal-values.yaml", itsm__servicedeskPlus__url="https://sdp.example")
    assert "itsm.webhook.existingSecret" in render_fails(helm, "minimal-values.yaml", itsm__webhook__url="https://h.example")
    assert "url" in render_fails(helm, "minimal-values.yaml", itsm__webhook__url="https://u:pw@h.example")
    off = render(helm, "minimal-values.yaml").settings_env
    assert off["OPSINTEL_ITSM_SERVICENOW_URL"] == off["OPSINTEL_ITSM_WEBHOOK_URL"] == ""


def test_service_catalog_is_mounted(production: Rendered) -> None:
    path = Path(production.settings_env["OPSINTEL_SERVICE_CATALOG"])
    mount = next(m for m in production.worker["volumeMounts"] if Path(m["mountPath"]) == path.parent)
    volume = next(v for v in pod_spec(production.deployment)["volumes"] if v["name"] == mount["name"])
    catalog = production.one("ConfigMap", volume["configMap"]["name"])
    values = yaml.safe_load((CHART / "ci" / "production-values.yaml").read_text())
    assert yaml.safe_load(catalog["data"][path.name]) == values["serviceCatalog"]


def test_no_catalogue_no_catalogue_setting(helm: str) -> None:
    r = render(helm, "minimal-values.yaml")
    assert "OPSINTEL_SERVICE_CATALOG" not in r.settings_env
    assert not [c for c in r.kind("ConfigMap") if c["metadata"]["name"].endswith("-catalog")]


# --- replicas, embedded chDB and migrations ------------------------------------------------------------


def test_embedded_chdb_forces_one_replica(helm: str, tmp_path: Path) -> None:
    r = render(helm, "minimal-values.yaml", replicaCount=5)
    assert r.settings_env["OPSINTEL_CLICKHOUSE_DSN"] == ""
    assert r.deployment["spec"]["replicas"] == 1
    # during a rollout the old pod must let go of the data folder before the new one opens it
    assert r.deployment["spec"]["strategy"] == {"type": "Recreate"}
    # no hook Job (it could not open the worker's data folder): the init container migrates
    assert r.kind("Job") == []
    assert container(r.deployment, "migrate")["args"] == ["migrate"]
    assert r.kind("PodDisruptionBudget") == [], "a budget on a single replica blocks node drains"
    text = notes(helm, tmp_path, "minimal-values.yaml", replicaCount=5)
    assert "exactly 1 replica" in text and "replicaCount=5 is ignored" in text
    assert "clickhouse.dsn" in text


def test_embedded_chdb_with_persistence_uses_a_claim(helm: str) -> None:
    r = render(helm, "minimal-values.yaml", persistence__enabled=True)
    claim = r.one("PersistentVolumeClaim")
    assert claim["metadata"]["annotations"]["helm.sh/resource-policy"] == "keep"
    data = next(v for v in pod_spec(r.deployment)["volumes"] if v["name"] == "data")
    assert data["persistentVolumeClaim"]["claimName"] == claim["metadata"]["name"]


def test_embedded_chdb_refuses_autoscaling_and_datasource(helm: str) -> None:
    assert "single replica" in render_fails(helm, "minimal-values.yaml", autoscaling__enabled=True)
    assert "clickhouse.dsn" in render_fails(helm, "minimal-values.yaml", grafana__datasource__enabled=True)


def test_sasl_needs_a_secret(helm: str) -> None:
    assert "existingSecret" in render_fails(helm, "minimal-values.yaml", kafka__securityProtocol="SASL_SSL")


def test_clickhouse_server_scales_out(helm: str, production: Rendered, tmp_path: Path) -> None:
    # the HPA owns the replica count; the Deployment must not reset it on every upgrade
    assert "replicas" not in production.deployment["spec"]
    hpa = production.one("HorizontalPodAutoscaler")
    assert hpa["spec"]["minReplicas"] == 4
    assert hpa["spec"]["scaleTargetRef"]["name"] == production.deployment["metadata"]["name"]
    fixed = render(helm, "production-values.yaml", autoscaling__enabled=False)
    assert fixed.deployment["spec"]["replicas"] == 4
    assert fixed.deployment["spec"]["strategy"]["type"] == "RollingUpdate"
    assert fixed.one("PodDisruptionBudget")["spec"]["maxUnavailable"] == 1
    text = notes(helm, tmp_path, "production-values.yaml", autoscaling__maxReplicas=10)
    assert "2 replica(s) will sit idle" in text


def test_migration_is_a_pre_install_pre_upgrade_hook(production: Rendered) -> None:
    job = production.one("Job")
    annotations = job["metadata"]["annotations"]
    assert annotations["helm.sh/hook"] == "pre-install,pre-upgrade"
    assert "before-hook-creation" in annotations["helm.sh/hook-delete-policy"]
    migrate = container(job, "migrate")
    assert migrate["args"] == ["migrate"]
    assert migrate["image"] == production.worker["image"]
    # hooks run before the release's ConfigMap exists: settings inline, same as the worker's
    assert "envFrom" not in migrate
    env = {e["name"]: e["value"] for e in migrate["env"]}
    assert env == {k: v for k, v in production.settings_env.items() if k != "OPSINTEL_SERVICE_CATALOG"}
    # nor does the chart's ServiceAccount exist yet at pre-install
    assert "serviceAccountName" not in pod_spec(job)


# --- NetworkPolicy, helm test -------------------------------------------------------------------------


def test_network_policy(production: Rendered) -> None:
    policy = production.one("NetworkPolicy")
    assert policy["spec"]["policyTypes"] == ["Ingress", "Egress"]
    (ingress,) = policy["spec"]["ingress"]
    assert ingress["ports"] == [{"port": "http", "protocol": "TCP"}]
    test_pod = production.one("Pod")
    peers = [p["podSelector"]["matchLabels"] for p in ingress["from"] if "podSelector" in p]
    assert any(p.items() <= test_pod["metadata"]["labels"].items() for p in peers), "helm test is blocked"
    dns = policy["spec"]["egress"][0]
    assert {p["port"] for p in dns["ports"]} == {53}


def test_helm_test_pod_asks_health(scenario: tuple[str, Rendered]) -> None:
    _, r = scenario
    pod = r.one("Pod")
    assert pod["metadata"]["annotations"]["helm.sh/hook"] == "test"
    service = r.one("Service")
    url = pod["spec"]["containers"][0]["command"][-1]
    assert url == f"http://{service['metadata']['name']}.{NAMESPACE}.svc:{service['spec']['ports'][0]['port']}/health"


# --- Grafana ----------------------------------------------------------------------------------------


def dashboard_maps(r: Rendered) -> list[dict[str, Any]]:
    return [
        o
        for o in r.kind("ConfigMap")
        if o["metadata"]["labels"].get("app.kubernetes.io/component") == "dashboards"
        and "-dashboard-" in o["metadata"]["name"]
    ]


def test_dashboards_are_configmaps_for_the_sidecar(helm: str, tmp_path: Path) -> None:
    chart = tmp_path / "opsintel"
    shutil.copytree(CHART, chart)
    shutil.rmtree(chart / "dashboards", ignore_errors=True)
    (chart / "dashboards").mkdir()
    # nothing generated yet: nothing rendered, and the chart still renders
    assert dashboard_maps(render(helm, "production-values.yaml", chart=chart)) == []
    boards = {
        "business-impact.json": {"uid": "opsintel-impact", "title": "Business impact"},
        "Problem_Queue.json": {"uid": "opsintel-problems", "title": "Problem queue", "q": "{{not a template}}"},
    }
    for file, board in boards.items():
        (chart / "dashboards" / file).write_text(json.dumps(board, indent=2, sort_keys=True))
    (chart / "dashboards" / "README.md").write_text("not a dashboard")
    r = render(helm, "production-values.yaml", chart=chart)
    maps = dashboard_maps(r)
    files = {}
    for m in maps:
        assert m["metadata"]["labels"]["grafana_dashboard"] == "1"
        assert m["metadata"]["annotations"] == {"grafana_folder": "opsintel"}
        files.update(m["data"])
    assert set(files) == set(boards)
    assert {f: json.loads(text) for f, text in files.items()} == boards
    for m in maps:
        kubernetes_validate.validate(m, KUBE_VERSION, strict=True)
    # a sidecar configured with another label
    relabelled = render(
        helm,
        "production-values.yaml",
        chart=chart,
        grafana__dashboards__label="dash",
        grafana__dashboards__labelValue="opsintel",
    )
    assert {m["metadata"]["labels"]["dash"] for m in dashboard_maps(relabelled)} == {"opsintel"}
    # off by default
    assert dashboard_maps(render(helm, "minimal-values.yaml", chart=chart)) == []


def test_chart_dashboards_dir_holds_only_generated_json() -> None:
    folder = CHART / "dashboards"
    if folder.exists():
        for path in folder.iterdir():
            assert path.suffix == ".json", f"{path.name}: the folder is `opsintel dashboards` output only"
            json.loads(path.read_text())


def test_clickhouse_datasource(production: Rendered) -> None:
    (ds_map,) = [o for o in production.kind("ConfigMap") if o["metadata"]["name"].endswith("-datasource")]
    assert ds_map["metadata"]["labels"]["grafana_datasource"] == "1"
    (provisioning,) = ds_map["data"].values()
    (ds,) = yaml.safe_load(provisioning)["datasources"]
    assert ds["type"] == "grafana-clickhouse-datasource"
    assert ds["uid"] == "opsintel-clickhouse"
    # from clickhouse.dsn https://opsintel@clickhouse.clickhouse.svc:8443
    assert ds["jsonData"] == {
        "protocol": "http",
        "secure": True,
        "host": "clickhouse.clickhouse.svc",
        "port": 8443,
        "username": "opsintel",
        "defaultDatabase": "opsintel",
    }
    assert ds["secureJsonData"]["password"].startswith("${"), "resolved by Grafana, never stored"


def test_datasource_defaults_ports_from_the_scheme(helm: str) -> None:
    r = render(helm, "minimal-values.yaml", clickhouse__dsn="http://ch.db.svc", grafana__datasource__enabled=True)
    (ds_map,) = [o for o in r.kind("ConfigMap") if o["metadata"]["name"].endswith("-datasource")]
    (ds,) = yaml.safe_load(next(iter(ds_map["data"].values())))["datasources"]
    assert (ds["jsonData"]["host"], ds["jsonData"]["port"], ds["jsonData"]["secure"]) == ("ch.db.svc", 8123, False)
    assert ds["jsonData"]["username"] == "default"
