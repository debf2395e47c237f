"""Rendering the Helm chart (helm/opsintel) for its tests: ``helm template`` with CI values files and
``--set`` overrides, the objects it prints, and what the tests look up in them."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[1]
CHART = ROOT / "helm" / "opsintel"
SCENARIOS = sorted(p.name for p in (CHART / "ci").glob("*-values.yaml"))
KUBE_VERSION = "1.30.0"
RELEASE = "oi"
NAMESPACE = "ops"
FULLNAME = f"{RELEASE}-opsintel"
#: kinds whose schema is a CRD that kubernetes-validate does not ship; checked field by field below
CRD_KINDS = {"ServiceMonitor"}


def find_helm() -> str | None:
    cached = ROOT / ".cache" / "bin" / "helm"
    if cached.is_file() and os.access(cached, os.X_OK):
        return str(cached)
    return shutil.which("helm")


def run_helm(helm: str, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "HELM_CACHE_HOME": "/tmp/opsintel-helm-cache", "KUBECONFIG": os.devnull}
    proc = subprocess.run([helm, *args], capture_output=True, text=True, env=env, timeout=60)
    if check:
        assert proc.returncode == 0, f"helm {' '.join(args)} failed:\n{proc.stdout}\n{proc.stderr}"
    return proc


def template_args(chart: Path, values: list[str], sets: dict[str, str] | None) -> list[str]:
    args = ["template", RELEASE, str(chart), "--namespace", NAMESPACE, "--kube-version", KUBE_VERSION]
    for v in values:
        args += ["-f", str(CHART / "ci" / v) if not os.path.isabs(v) else v]
    for key, value in (sets or {}).items():
        args += ["--set", f"{key}={value}"]
    return args


class Rendered:
    """The objects of one `helm template`, with the template each came from."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.objects: list[dict[str, Any]] = []
        self.sources: list[str] = []
        for chunk in re.split(r"^---\s*$", text, flags=re.M):
            source = re.search(r"^# Source: (\S+)", chunk, flags=re.M)
            obj = yaml.safe_load(chunk)
            if obj:
                self.objects.append(obj)
                self.sources.append(source.group(1) if source else "?")

    def kind(self, kind: str) -> list[dict[str, Any]]:
        return [o for o in self.objects if o["kind"] == kind]

    def one(self, kind: str, name: str | None = None) -> dict[str, Any]:
        found = [o for o in self.kind(kind) if name is None or o["metadata"]["name"] == name]
        assert len(found) == 1, f"expected one {kind} {name or ''}, found {len(found)}"
        return found[0]

    @property
    def deployment(self) -> dict[str, Any]:
        return self.one("Deployment")

    @property
    def worker(self) -> dict[str, Any]:
        return container(self.deployment, "worker")

    @property
    def settings_env(self) -> dict[str, str]:
        return self.one("ConfigMap", FULLNAME)["data"]


def _sets(sets: dict[str, Any]) -> dict[str, str]:
    """Keyword arguments as ``--set`` values: ``a__b=True`` is ``a.b=true``."""
    return {k.replace("__", "."): str(v).lower() if isinstance(v, bool) else str(v) for k, v in sets.items()}


def render(helm: str, *values: str, chart: Path = CHART, **sets: Any) -> Rendered:
    return Rendered(run_helm(helm, *template_args(chart, list(values), _sets(sets))).stdout)


def render_fails(helm: str, *values: str, **sets: Any) -> str:
    proc = run_helm(helm, *template_args(CHART, list(values), _sets(sets)), check=False)
    assert proc.returncode != 0, "helm template should have refused these values"
    return proc.stderr


def container(workload: dict[str, Any], name: str) -> dict[str, Any]:
    spec = pod_spec(workload)
    found = [c for c in spec["containers"] + spec.get("initContainers", []) if c["name"] == name]
    assert found, f"no container {name}"
    return found[0]


def pod_spec(obj: dict[str, Any]) -> dict[str, Any]:
    if obj["kind"] == "Pod":
        return obj["spec"]
    return obj["spec"]["template"]["spec"]


def workloads(r: Rendered) -> Iterator[dict[str, Any]]:
    yield from (o for o in r.objects if o["kind"] in ("Deployment", "Job", "Pod"))


def notes(helm: str, tmp_path: Path, *values: str, **sets: Any) -> str:
    """NOTES.txt as rendered (`helm template` skips it, `helm install --dry-run` needs a cluster): a
    copy of the chart renders it through `tpl` into a ConfigMap."""
    chart = tmp_path / "opsintel"
    shutil.copytree(CHART, chart)
    (chart / "notes-src.txt").write_text((CHART / "templates" / "NOTES.txt").read_text())
    (chart / "templates" / "zz-notes.yaml").write_text(
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: notes\ndata:\n"
        '  notes: {{ tpl (.Files.Get "notes-src.txt") . | toJson }}\n'
    )
    return render(helm, *values, chart=chart, **sets).one("ConfigMap", "notes")["data"]["notes"]
