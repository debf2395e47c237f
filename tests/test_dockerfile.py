"""deploy/Dockerfile: the image runs the worker the way the tests do, as a non-root user, with no
build tools in the final stage, and a build context that contains what ``pip install .`` needs.

No docker engine is needed: the Dockerfile is parsed and checked against pyproject.toml, the CLI and
.dockerignore.
"""

from __future__ import annotations

import fnmatch
import json
import re
import shlex
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from opsintel.cli import build_parser
from opsintel.settings import Settings

ROOT = Path(__file__).resolve().parents[1]
DOCKERFILE = ROOT / "deploy" / "Dockerfile"
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
BUILD_TOOLS = ("gcc", "g++", "build-essential", "make", "clang", "python3-dev", "libc6-dev")


@dataclass
class Stage:
    base: str
    name: str | None
    instructions: list[tuple[str, str]] = field(default_factory=list)  # (INSTRUCTION, raw arguments)

    def all(self, instruction: str) -> list[str]:
        return [args for ins, args in self.instructions if ins == instruction]

    def last(self, instruction: str) -> str:
        found = self.all(instruction)
        assert found, f"stage {self.name or self.base} has no {instruction}"
        return found[-1]


def parse_dockerfile(text: str) -> tuple[dict[str, str], list[Stage]]:
    """Global ARG defaults and the stages, with line continuations joined and comments dropped."""
    logical: list[str] = []
    pending = ""
    for line in text.splitlines():
        if line.lstrip().startswith("#") or not line.strip():
            continue
        if line.rstrip().endswith("\\"):
            pending += line.rstrip()[:-1] + " "
            continue
        logical.append(pending + line)
        pending = ""
    args: dict[str, str] = {}
    stages: list[Stage] = []
    for entry in logical:
        instruction, _, rest = entry.strip().partition(" ")
        instruction, rest = instruction.upper(), rest.strip()
        if instruction == "FROM":
            words = rest.split()
            base = re.sub(r"\$\{(\w+)\}", lambda m: args.get(m.group(1), m.group(0)), words[0])
            name = words[2] if len(words) >= 3 and words[1].upper() == "AS" else None
            stages.append(Stage(base, name))
        elif not stages and instruction == "ARG":
            key, _, default = rest.partition("=")
            args[key] = default
        else:
            stages[-1].instructions.append((instruction, rest))
    return args, stages


def exec_form(args: str) -> list[str]:
    value = json.loads(args)
    assert isinstance(value, list), f"not exec form (a JSON array): {args}"
    return value


def env_of(stage: Stage) -> dict[str, str]:
    env: dict[str, str] = {}
    for args in stage.all("ENV"):
        for token in shlex.split(args):
            key, _, value = token.partition("=")
            env[key] = value
    return env


@pytest.fixture(scope="module")
def stages() -> list[Stage]:
    return parse_dockerfile(DOCKERFILE.read_text())[1]


@pytest.fixture(scope="module")
def final(stages: list[Stage]) -> Stage:
    return stages[-1]


def test_multi_stage_on_python_311_slim(stages: list[Stage]) -> None:
    assert len(stages) >= 2, "the builder stage keeps build tools out of the image"
    assert stages[-1].base.startswith("python:3.11-slim"), stages[-1].base
    builder = stages[0]
    assert builder.name, "the builder stage needs a name for COPY --from"
    assert any("pip install ." in run for run in builder.all("RUN"))


def test_final_stage_has_no_build_tools(final: Stage) -> None:
    runs = " ".join(final.all("RUN"))
    for tool in BUILD_TOOLS:
        assert not re.search(rf"(^|[\s=]){re.escape(tool)}($|\s)", runs), f"{tool} installed in the final stage"
    assert not any("pip install" in run for run in final.all("RUN")), "the final stage only copies the venv"
    copies_from = [c for c in final.all("COPY") if c.startswith("--from=")]
    assert copies_from, "the final stage must copy the virtualenv from the builder"


def test_runs_as_uid_10001(final: Stage) -> None:
    user = final.last("USER")
    assert user.split(":")[0] == "10001", "numeric uid, so Kubernetes runAsNonRoot can verify it"
    assert "--uid 10001" in " ".join(final.all("RUN"))


def test_entrypoint_is_the_console_script_and_cmd_the_worker(final: Stage) -> None:
    entrypoint = exec_form(final.last("ENTRYPOINT"))
    cmd = exec_form(final.last("CMD"))
    scripts = PYPROJECT["project"]["scripts"]
    assert entrypoint == ["opsintel"]
    # the tests start the worker as `python -m opsintel.cli worker`: same module, same subcommand
    assert scripts["opsintel"] == "opsintel.cli:main"
    assert cmd == ["worker"]
    assert build_parser().parse_args(cmd).command == "worker"


def test_web_port_data_dir_and_volume(final: Stage) -> None:
    env = env_of(final)
    port = Settings().web_port
    assert final.last("EXPOSE").split() == [str(port)]
    assert env["OPSINTEL_DATA_DIR"] == "/var/lib/opsintel"
    assert env["OPSINTEL_WEB_HOST"] == "0.0.0.0", "bound to loopback, EXPOSE would be useless"
    assert exec_form(final.last("VOLUME")) == [env["OPSINTEL_DATA_DIR"]]
    # every OPSINTEL_* the image sets is a real setting
    fields = {f"OPSINTEL_{name.upper()}" for name in Settings.model_fields}
    assert {k for k in env if k.startswith("OPSINTEL_")} <= fields


def test_healthcheck_asks_health_with_python(final: Stage) -> None:
    healthcheck = final.last("HEALTHCHECK")
    options, _, command = healthcheck.partition("CMD ")
    argv = exec_form(command)
    assert argv[0] == "python", "slim has no curl: the interpreter is already there"
    assert "/health" in argv[-1]
    assert "OPSINTEL_WEB_PORT" in argv[-1], "follows the configured port"
    assert "--timeout=" in options


def test_build_context_has_what_pip_install_needs(stages: list[Stage]) -> None:
    """Every package in pyproject is copied, every copied path exists and .dockerignore keeps it."""
    builder = stages[0]
    copied = []
    for copy in builder.all("COPY"):
        words = [w for w in copy.split() if not w.startswith("--")]
        copied.extend(words[:-1])
    packages = {p.split(".")[0] for p in PYPROJECT["tool"]["setuptools"]["packages"]}
    assert packages <= set(copied), f"packages not copied: {packages - set(copied)}"
    readme = PYPROJECT["project"].get("readme")
    if readme:
        assert readme in copied, "pyproject names a readme: pip install . fails without it"
    ignored = [
        line.strip()
        for line in (ROOT / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    for path in copied:
        assert (ROOT / path).exists(), f"COPY {path}: missing from the repo"
        assert not any(fnmatch.fnmatch(path, pattern) for pattern in ignored), f"{path} is in .dockerignore"
    for heavy in ("var", ".venv", ".git"):
        assert heavy in ignored, f"{heavy}/ would be sent to the builder"
