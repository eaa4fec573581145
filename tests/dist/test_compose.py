"""The deployment files and the demo: compose.yaml and workers/Dockerfile point at real things,
and ``python -m workers.demo`` runs the example end to end.

Docker is not needed (nor PyYAML): ``compose.yaml`` is kept in a small YAML subset (block
mappings and lists, JSON flow lists, plain or quoted scalars, comments) that ``load_yaml_subset``
reads, and a file outside the subset fails the test.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from pygents_dist.testing import RedisServer

ROOT = Path(__file__).resolve().parents[2]
_SCALAR = re.compile(r"^(?:\"(?:[^\"\\]|\\.)*\"|'[^']*'|[^#'\"\[\]{}&*!|>]+)$")


def _scalar(text: str) -> Any:
    if text.startswith("["):
        return json.loads(text)  # flow lists are written as JSON
    if not _SCALAR.match(text):
        raise ValueError(f"outside the YAML subset: {text!r}")
    if text[0] == '"':
        return json.loads(text)
    if text[0] == "'":
        return text[1:-1]
    if re.fullmatch(r"-?\d+", text):
        return int(text)
    return text


def load_yaml_subset(text: str) -> Any:
    """Parse block mappings/lists of scalars and JSON flow lists (no anchors, no multi-line
    scalars); raise ValueError on anything else."""
    lines: list[tuple[int, str]] = []
    for raw in text.splitlines():
        stripped = raw.split(" #", 1)[0].rstrip() if not raw.lstrip().startswith("#") else ""
        if stripped.strip():
            if "\t" in raw[: len(raw) - len(raw.lstrip())]:
                raise ValueError(f"tab indentation: {raw!r}")
            lines.append((len(stripped) - len(stripped.lstrip()), stripped.strip()))

    def block(i: int, indent: int) -> tuple[Any, int]:
        if lines[i][1].startswith("- "):
            items: list[Any] = []
            while i < len(lines) and lines[i][0] == indent and lines[i][1].startswith("- "):
                items.append(_scalar(lines[i][1][2:].strip()))
                i += 1
            return items, i
        mapping: dict[str, Any] = {}
        while i < len(lines) and lines[i][0] == indent:
            key, sep, rest = lines[i][1].partition(":")
            if not sep or not re.fullmatch(r"[A-Za-z0-9_.-]+", key):
                raise ValueError(f"outside the YAML subset: {lines[i][1]!r}")
            rest = rest.strip()
            i += 1
            if rest:
                mapping[key] = _scalar(rest)
            elif i < len(lines) and lines[i][0] > indent:
                mapping[key], i = block(i, lines[i][0])
            else:
                mapping[key] = None
        return mapping, i

    data, end = block(0, 0)
    if end != len(lines):
        raise ValueError(f"bad indentation at {lines[end][1]!r}")
    return data


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    data = load_yaml_subset((ROOT / "compose.yaml").read_text())
    assert isinstance(data, dict)
    return data


def _module_path(module: str) -> Path:
    return ROOT.joinpath(*module.split(".")).with_suffix(".py")


def test_yaml_subset_reader_refuses_what_it_does_not_understand() -> None:
    assert load_yaml_subset('a:\n  b: ["x", 1]\n  c:\n    - d\n    - "e f"\n') == {
        "a": {"b": ["x", 1], "c": ["d", "e f"]}
    }
    for bad in ("a: &anchor 1\n", "a: |\n  text\n", "a: {b: 1}\n", "- x\nb: 1\n"):
        with pytest.raises(ValueError):
            load_yaml_subset(bad)


def test_compose_has_redis_with_aof_two_workers_and_a_client(compose: dict[str, Any]) -> None:
    services = compose["services"]
    assert set(services) == {"redis", "worker", "client"}
    redis = services["redis"]
    # A public image by default; PYGENTS_REDIS_IMAGE names another (a local one, in CI).
    assert redis["image"] == "${PYGENTS_REDIS_IMAGE:-redis:7-alpine}"
    assert redis["command"][:3] == ["redis-server", "--appendonly", "yes"]
    assert any(v.endswith(":/data") for v in redis["volumes"])
    assert redis["healthcheck"]["test"] == ["CMD", "redis-cli", "ping"]
    assert services["worker"]["deploy"]["replicas"] >= 2
    assert services["worker"]["depends_on"]["redis"]["condition"] == "service_healthy"
    assert services["client"]["depends_on"]["worker"]["condition"] == "service_started"
    assert set(compose["volumes"]) >= {"redis-data", "research-data"}
    # Compose 1.29 (Debian's docker-compose) refuses a top-level name: the project name comes
    # from -p or COMPOSE_PROJECT_NAME.
    assert "name" not in compose


def test_every_built_service_has_a_real_context_and_dockerfile(compose: dict[str, Any]) -> None:
    built = {n: s for n, s in compose["services"].items() if "build" in s}
    assert set(built) == {"worker", "client"}
    for name, service in built.items():
        context = ROOT / service["build"]["context"]
        assert context.is_dir(), name
        assert (context / service["build"]["dockerfile"]).is_file(), name


def test_workers_and_client_share_redis_and_namespace(compose: dict[str, Any]) -> None:
    worker = compose["services"]["worker"]["environment"]
    client = compose["services"]["client"]["environment"]
    for env in (worker, client):
        assert env["PYGENTS_REDIS_URL"] == "redis://redis:6379/0"  # the redis service
    assert worker["PYGENTS_NAMESPACE"] == client["PYGENTS_NAMESPACE"]
    assert client["DEMO_WORKERS"] == "0"  # the driver uses the compose workers
    mount = compose["services"]["worker"]["volumes"][0]
    assert mount.split(":", 1)[1] == worker["RESEARCH_DIR"]


def test_worker_command_names_a_real_module_and_its_agents(compose: dict[str, Any]) -> None:
    command = compose["services"]["worker"]["command"]
    target = command[0]
    module = target.partition(":")[0]
    assert _module_path(module).is_file(), target
    assert "--metrics-port" in command and "--log-json" in command
    # Load it the way pygents-worker does, in a fresh interpreter (the registries are global).
    code = (
        "import sys; from pygents_dist._cli import _load_agents, _worker_parser; "
        "_worker_parser().parse_args(sys.argv[1:]); "
        "print(sorted(a.name for a in _load_agents(sys.argv[1])))"
    )
    done = subprocess.run(
        [sys.executable, "-c", code, *command],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    agents = json.loads(done.stdout.replace("'", '"'))
    assert {"planner", "summarizer", "searcher-0"} <= set(agents)


def test_client_entrypoint_runs_the_demo_module(compose: dict[str, Any]) -> None:
    entrypoint = compose["services"]["client"]["entrypoint"]
    assert entrypoint[:2] == ["python", "-m"]
    assert _module_path(entrypoint[2]).is_file()


def test_dockerfile_installs_the_dist_extra_and_runs_pygents_worker() -> None:
    lines = [
        line.strip()
        for line in (ROOT / "workers" / "Dockerfile").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    assert lines[0] == "FROM python:3.12-slim"
    assert "RUN pip install '.[dist]'" in lines
    assert 'ENTRYPOINT ["pygents-worker"]' in lines
    assert lines[-1] == 'CMD ["workers.research"]'
    for line in lines:
        if line.startswith("COPY "):
            *sources, _dest = line.split()[1:]
            for source in sources:
                assert (ROOT / source).exists(), line
    assert any(line.startswith("USER ") and "root" not in line for line in lines)


# -- the demo ----------------------------------------------------------------------------------


def _run_demo(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("PYGENTS_")}
    return subprocess.run(
        [sys.executable, "-m", "workers.demo", "--angles", "4"],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env={**clean, **env},
        timeout=120,
        check=False,
    )


def _check_demo_output(done: subprocess.CompletedProcess[str]) -> list[str]:
    assert done.returncode == 0, f"stdout:\n{done.stdout}\nstderr:\n{done.stderr}"
    lines = done.stdout.splitlines()
    assert any(line.startswith("[plan] 4 queries") for line in lines)
    assert sum(line.startswith("[dispatch] ") for line in lines) == 4
    assert sum(line.startswith("[progress] ") for line in lines) == 4
    assert any(line.startswith("[progress] 4/4 ") for line in lines)
    assert "[report] # Research: distributed agent runtimes" in lines
    assert any("ledger numbers 1..16 unique and gap-free" in line for line in lines)
    assert "[shutdown] workers exited with [0, 0] after SIGTERM" in lines
    return lines


@pytest.mark.slow
def test_demo_runs_end_to_end_against_the_redis_in_its_environment(
    private_redis: RedisServer,
) -> None:
    done = _run_demo({"PYGENTS_REDIS_URL": private_redis.url})
    lines = _check_demo_output(done)
    assert lines[0].startswith("[redis] using PYGENTS_REDIS_URL")
    assert lines[-1] == "[done] ok"


@pytest.mark.slow
@pytest.mark.integration
@pytest.mark.skipif(shutil.which("redis-server") is None, reason="needs redis-server on PATH")
def test_demo_starts_its_own_redis_when_none_is_configured() -> None:
    done = _run_demo({})
    lines = _check_demo_output(done)
    assert lines[0].startswith("[redis] started a private redis-server at redis://127.0.0.1:")
    assert lines[-1] == "[done] redis stopped"
