"""The opsintel Grafana dashboards, built with grafana-foundation-sdk.

:func:`build_all` returns the dashboards (fixed uids); :func:`write_all` writes them as
deterministic JSON (sorted keys) plus Grafana provisioning files (the datasources and a
dashboard provider) - ``opsintel dashboards --out DIR`` and ``opsintel demo`` call it;
:func:`push` posts them to a Grafana HTTP API. ClickHouse panels use the
``grafana-clickhouse-datasource`` SQL query (:mod:`dashboards.clickhouse_query`) with its macros
(``$__timeFilter``, ``$__timeInterval``) and the ``service`` / ``business_unit`` variables.
"""

from __future__ import annotations

import base64
import json
import urllib.request
from collections.abc import Callable
from pathlib import Path

from grafana_foundation_sdk.models.dashboard import Dashboard

from dashboards import business_impact, pipeline_health, problem_management, trends
from dashboards.common import CLICKHOUSE_UID, PROMETHEUS_UID, to_json

__all__ = ["DASHBOARDS", "build_all", "provisioning_files", "push", "write_all"]

#: file name -> builder, in menu order
DASHBOARDS: dict[str, Callable[[], object]] = {
    "business-impact.json": business_impact.build,
    "problem-management.json": problem_management.build,
    "trends-anomalies.json": trends.build,
    "pipeline-health.json": pipeline_health.build,
}


def build_all() -> dict[str, Dashboard]:
    """File name -> built dashboard model."""
    return {name: build().build() for name, build in DASHBOARDS.items()}  # type: ignore[attr-defined]


def provisioning_files(dashboards_path: str = "/var/lib/grafana/dashboards/opsintel") -> dict[str, str]:
    """Grafana provisioning: the two datasources (fixed uids the dashboards use) and a file provider."""
    datasources = """# Written by `opsintel dashboards`: the datasources the opsintel dashboards refer to (fixed
# uids); the hosts are those of deploy/compose.yaml - edit them for another setup.
apiVersion: 1
datasources:
  - name: ClickHouse (opsintel)
    uid: @CLICKHOUSE_UID@
    type: grafana-clickhouse-datasource
    editable: false
    jsonData:
      protocol: http
      secure: false
      host: clickhouse
      port: 8123
      username: opsintel
      defaultDatabase: opsintel
    secureJsonData:
      password: ${OPSINTEL_CLICKHOUSE_PASSWORD}
  - name: Prometheus (opsintel)
    uid: @PROMETHEUS_UID@
    type: prometheus
    editable: false
    url: http://prometheus:9090
""".replace("@CLICKHOUSE_UID@", CLICKHOUSE_UID).replace("@PROMETHEUS_UID@", PROMETHEUS_UID)
    provider = f"""# Written by `opsintel dashboards`: load the opsintel dashboards from files.
apiVersion: 1
providers:
  - name: opsintel
    folder: opsintel
    type: file
    disableDeletion: true
    allowUiUpdates: false
    updateIntervalSeconds: 30
    options:
      path: {dashboards_path}
      foldersFromFilesStructure: false
"""
    return {"provisioning/datasources/opsintel.yaml": datasources, "provisioning/dashboards/opsintel.yaml": provider}


def write_all(out: Path, *, provisioning: bool = True) -> list[Path]:
    """Write every dashboard as ``out/<name>.json`` (and provisioning under ``out/provisioning``)."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    written = []
    files = {name: to_json(board) for name, board in build_all().items()}
    if provisioning:
        files.update(provisioning_files())
    for name, text in files.items():
        path = out / name
        path.parent.mkdir(parents=True, exist_ok=True)
        if not path.exists() or path.read_text() != text:
            path.write_text(text)
        written.append(path)
    return written


def push(url: str, *, token: str = "", user: str = "", password: str = "", folder_uid: str = "",
         timeout: float = 30.0) -> list[str]:
    """POST every dashboard to ``{url}/api/dashboards/db`` (overwrite); returns the uids pushed."""
    if not url.startswith(("http://", "https://")):
        raise ValueError(f"not an http(s) URL: {url!r}")
    headers = {"Content-Type": "application/json", "Accept": "application/json"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    elif user:
        headers["Authorization"] = "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()
    pushed = []
    for board in build_all().values():
        body: dict[str, object] = {"dashboard": json.loads(to_json(board)), "overwrite": True,
                                   "message": "opsintel dashboards"}
        if folder_uid:
            body["folderUid"] = folder_uid
        req = urllib.request.Request(f"{url.rstrip('/')}/api/dashboards/db", data=json.dumps(body).encode(),  # noqa: S310
                                     headers=headers, method="POST")
        # the operator's own Grafana URL; only http(s) accepted
        with urllib.request.urlopen(req, timeout=timeout) as resp:  # noqa: S310
            resp.read()
        pushed.append(str(board.uid))
    return pushed
