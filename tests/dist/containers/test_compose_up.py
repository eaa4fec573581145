"""compose.yaml brought up for real: the worker image built from workers/Dockerfile, Redis with
its append-only file, two workers and the client job; four workers serving the same job; a
worker container killed mid-job losing nothing; ``stop`` draining the workers (exit 0).

Compose is ``docker compose`` where the plugin is installed, else ``docker-compose``
(Debian's 1.29, run with ``--compatibility`` for ``deploy.replicas``), under a project name
of the test's own (``-p``). The Redis image is the tier's (``PYGENTS_REDIS_IMAGE``, which
compose.yaml reads); the Dockerfile's base image must be here or pullable
(``scripts/containers-up`` makes one from this machine when no registry is reachable). At the
end ``down -v --rmi local`` removes the project's containers, volumes, network and built
images, and whatever is left with the project's label is removed by id, also after a failure;
the projects of earlier runs killed before their teardown are removed at the start.
"""

from __future__ import annotations

import ast
import os
import re
import shutil
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from pygents_dist.pytest_plugin import in_ci

pytestmark = [pytest.mark.containers, pytest.mark.integration, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[3]
PROJECT_LABEL = "com.docker.compose.project"
#: Project names are PREFIX<pid>x<hex>: the test's own, and its process's.
PREFIX = "pygentstest"
SERVICE_LABEL = "com.docker.compose.service"


def compose_command() -> list[str] | None:
    """``docker compose`` (v2) if the plugin answers, else ``docker-compose --compatibility``."""
    if shutil.which("docker"):
        done = subprocess.run(
            ["docker", "compose", "version"], capture_output=True, timeout=30, check=False
        )
        if done.returncode == 0:
            return ["docker", "compose"]
    if shutil.which("docker-compose"):
        return ["docker-compose", "--compatibility"]
    return None


class Compose:
    """compose.yaml as project ``name``, run from the repository root."""

    def __init__(self, command: list[str], name: str, redis_image: str, docker_api: Any) -> None:
        self.name = name
        self.docker = docker_api
        self._base = [*command, "-p", name, "-f", str(ROOT / "compose.yaml")]
        self._env = {k: v for k, v in os.environ.items() if not k.startswith("PYGENTS_")}
        self._env["PYGENTS_REDIS_IMAGE"] = redis_image

    def __call__(
        self, *args: str, timeout: float = 300, check: bool = True
    ) -> subprocess.CompletedProcess[str]:
        done = subprocess.run(
            [*self._base, *args],
            cwd=ROOT,
            env=self._env,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        if check and done.returncode != 0:
            raise AssertionError(
                f"{' '.join(args)} exited {done.returncode}:\n{done.stdout}\n{done.stderr}"
            )
        return done

    def containers(self, service: str | None = None) -> list[Any]:
        labels = [f"{PROJECT_LABEL}={self.name}"]
        if service is not None:
            labels.append(f"{SERVICE_LABEL}={service}")
        return list(self.docker.containers.list(all=True, filters={"label": labels}))

    def running(self, service: str) -> list[Any]:
        return [c for c in self.containers(service) if c.status == "running"]

    def logs(self, container: Any) -> str:
        return str(container.logs().decode(errors="replace"))

    def remove_everything(self) -> None:
        """Remove what the project made: containers, volumes, networks and built images."""
        self("down", "-v", "--rmi", "local", "--remove-orphans", "-t", "5", check=False)
        label = {"label": f"{PROJECT_LABEL}={self.name}"}
        for container in self.docker.containers.list(all=True, filters=label):
            container.remove(force=True, v=True)
        for volume in self.docker.volumes.list(filters=label):
            volume.remove(force=True)
        for network in self.docker.networks.list(filters=label):
            network.remove()
        for image in self.docker.images.list():
            if any(re.fullmatch(rf"{self.name}[_-]\w+:latest", tag) for tag in image.tags):
                self.docker.images.remove(image.id, force=True)


def stale_projects(docker_api: Any) -> set[str]:
    """The projects of earlier runs of this test whose process is gone (killed before its
    teardown; their workers would otherwise be restarted with the daemon, for good)."""
    names = set()
    for container in docker_api.containers.list(all=True, filters={"label": PROJECT_LABEL}):
        name = container.labels.get(PROJECT_LABEL, "")
        found = re.fullmatch(rf"{PREFIX}(\d+)x[0-9a-f]+", name)
        if found and not pid_alive(int(found.group(1))):
            names.add(name)
    return names


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def need(condition: bool, reason: str) -> None:
    if not condition:
        if in_ci():
            pytest.fail(reason, pytrace=False)
        pytest.skip(reason)


@pytest.fixture(scope="module")
def compose(docker_api: Any, tier_image: str) -> Iterator[Compose]:
    """compose.yaml under a fresh project, its images built; everything removed at the end."""
    command = compose_command()
    need(command is not None, "container tier: no docker compose / docker-compose")
    assert command is not None
    base = next(
        line.split()[1]
        for line in (ROOT / "workers" / "Dockerfile").read_text().splitlines()
        if line.startswith("FROM ")
    )
    if not docker_api.images.list(name=base):
        try:
            docker_api.images.pull(base)
        except Exception as exc:
            need(
                False,
                f"container tier: base image {base} is not here nor pullable ({exc}); "
                "scripts/containers-up makes one",
            )
    for name in stale_projects(docker_api):
        Compose(command, name, tier_image, docker_api).remove_everything()
    project = Compose(
        command, f"{PREFIX}{os.getpid()}x{uuid.uuid4().hex[:6]}", tier_image, docker_api
    )
    try:
        project("build")
        yield project
    finally:
        project.remove_everything()
        assert not project.containers()


def job_lines(output: str) -> list[str]:
    """The demo's own lines (``[tag] ...``) of a client's output."""
    return [line for line in output.splitlines() if line.startswith("[")]


def check_job(lines: list[str]) -> dict[str, int]:
    """The job completed with every finding and an intact ledger; its turns by process."""
    assert "[done] ok" in lines, "\n".join(lines)
    assert sum(line.startswith("[progress] ") for line in lines) == 6
    assert any(line.startswith("[progress] 6/6 ") for line in lines)
    assert any("ledger numbers 1..24 unique and gap-free" in line for line in lines)
    [turns] = [line for line in lines if line.startswith("[result] turns by process: ")]
    counts = ast.literal_eval(turns.split(": ", 1)[1])  # a dict printed by the demo
    assert sum(counts.values()) == 12
    return dict(counts)


def test_up_runs_the_job_on_two_workers_over_redis_with_aof(compose: Compose) -> None:
    compose("up", "--no-color", "--abort-on-container-exit", "--exit-code-from", "client")
    [client] = compose.containers("client")
    turns = check_job(job_lines(compose.logs(client)))
    workers = compose.containers("worker")
    assert len(workers) == 2  # deploy.replicas
    # The work spread over both workers (each takes at most two agents at a time).
    hosts = {c.attrs["Config"]["Hostname"] for c in workers}
    assert {process.split(":")[0] for process in turns} == hosts
    # --abort-on-container-exit stopped the workers: SIGTERM, drained, exit 0.
    for worker in workers:
        worker.reload()
        assert worker.attrs["State"]["ExitCode"] == 0, compose.logs(worker)
    [redis] = compose.containers("redis")
    assert redis.attrs["Args"][:3] == ["redis-server", "--appendonly", "yes"]


def test_redis_keeps_its_data_across_a_restart_and_four_workers_serve_the_job(
    compose: Compose,
) -> None:
    compose("up", "-d", "--scale", "worker=4", "redis", "worker")
    assert len(compose.running("worker")) == 4
    [redis] = compose.running("redis")
    info = redis.exec_run(["redis-cli", "INFO", "persistence"]).output.decode()
    assert "aof_enabled:1" in info
    token = uuid.uuid4().hex
    assert redis.exec_run(["redis-cli", "SET", "research:aof-probe", token]).exit_code == 0
    compose("restart", "redis")  # SIGTERM: Redis writes its append-only file out
    deadline = time.monotonic() + 30
    while redis.exec_run(["redis-cli", "PING"]).output.decode().strip() != "PONG":
        assert time.monotonic() < deadline
        time.sleep(0.1)
    kept = redis.exec_run(["redis-cli", "GET", "research:aof-probe"]).output.decode().strip()
    assert kept == token  # loaded back from the append-only file
    done = compose("run", "--rm", "client")
    check_job(job_lines(done.stdout))


def test_a_worker_killed_mid_job_loses_nothing(compose: Compose) -> None:
    compose("up", "-d", "--scale", "worker=2", "redis", "worker")
    assert len(compose.running("worker")) == 2
    compose("run", "-d", "client")
    [client] = compose.running("client")
    try:
        # The planner's worker is polled by the client for the whole job: kill that one as
        # soon as the searches are out.
        deadline = time.monotonic() + 60
        planned = None
        while planned is None:
            assert time.monotonic() < deadline, compose.logs(client)
            planned = re.search(r"planned by (\w+):", compose.logs(client))
            time.sleep(0.05)
        victim_host = planned.group(1)
        [victim] = [
            w for w in compose.running("worker") if w.attrs["Config"]["Hostname"] == victim_host
        ]
        victim.kill()  # SIGKILL: no drain, its leases run out
        status = client.wait(timeout=120)
        lines = job_lines(compose.logs(client))
        assert status["StatusCode"] == 0, "\n".join(lines)
        check_job(lines)
    finally:
        client.remove(force=True)


def test_stop_drains_the_workers_mid_job_they_exit_0_and_the_job_goes_on(
    compose: Compose,
) -> None:
    compose("up", "-d", "--scale", "worker=2", "redis", "worker")
    workers = compose.running("worker")
    assert len(workers) == 2
    compose("run", "-d", "client")
    [client] = compose.running("client")
    try:
        deadline = time.monotonic() + 60
        while "[dispatch]" not in compose.logs(client):  # the searches are on their way
            assert time.monotonic() < deadline, compose.logs(client)
            time.sleep(0.05)
        compose("stop", "worker")  # SIGTERM: in-flight turns finish and commit, then exit 0
        for worker in workers:
            worker.reload()
            assert worker.status == "exited"
            assert worker.attrs["State"]["ExitCode"] == 0, compose.logs(worker)
        drained = [w for w in workers if "draining" in compose.logs(w)]
        assert drained, "no worker had work in flight to drain"
        compose("start", "worker")  # the rest of the job is still queued in Redis
        status = client.wait(timeout=120)
        lines = job_lines(compose.logs(client))
        assert status["StatusCode"] == 0, "\n".join(lines)
        check_job(lines)
    finally:
        client.remove(force=True)
