"""The README's demo on a fresh laptop that has Docker but no ``redis-server``: it starts a
Redis container through the fixtures' container path (and removes it); and against a Redis
that refuses it (protected mode) it prints one ``error:`` line, not a traceback."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import pytest

from pygents_dist.testing import CONTAINER_LABEL, OWNER_LABEL
from tests.dist.test_compose import ROOT, _check_demo_output

pytestmark = [pytest.mark.containers, pytest.mark.integration, pytest.mark.slow]


def path_without(program: str, shadow: Path) -> str:
    """``PATH`` with every directory holding ``program`` replaced by a copy of links to all its
    other entries (in ``shadow``), so ``program`` is not found and everything else is."""
    dirs = []
    for i, entry in enumerate(os.environ.get("PATH", "").split(os.pathsep)):
        if entry and (Path(entry) / program).exists():
            copy = shadow / str(i)
            copy.mkdir(parents=True)
            for item in Path(entry).iterdir():
                if item.name != program:
                    (copy / item.name).symlink_to(item)
            entry = str(copy)
        dirs.append(entry)
    return os.pathsep.join(dirs)


def demo_env(**extra: str) -> dict[str, str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("PYGENTS_")}
    return {**clean, **extra}


def test_the_demo_without_redis_server_runs_redis_in_a_container(
    docker_api: Any, tier_image: str, tmp_path: Path
) -> None:
    hidden = path_without("redis-server", tmp_path / "path")
    assert shutil.which("redis-server", path=hidden) is None
    demo = subprocess.Popen(
        [sys.executable, "-m", "workers.demo", "--angles", "4"],
        cwd=ROOT,
        env=demo_env(PATH=hidden, PYGENTS_REDIS_IMAGE=tier_image),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    owner = {"label": f"{OWNER_LABEL}={socket.gethostname()}:{demo.pid}"}
    try:
        out, err = demo.communicate(timeout=180)
        done = subprocess.CompletedProcess(demo.args, demo.returncode, out, err)
        lines = _check_demo_output(done)
        assert lines[0].startswith(
            "[redis] no redis-server on PATH: started a Redis container at redis://127.0.0.1:"
        )
        assert lines[-1] == "[done] redis stopped"
        assert not docker_api.containers.list(all=True, filters=owner)  # removed by the demo
    finally:
        if demo.poll() is None:
            demo.send_signal(signal.SIGKILL)
            demo.wait()
        for leftover in docker_api.containers.list(all=True, filters=owner):
            leftover.remove(force=True, v=True)


def test_a_redis_that_refuses_the_demo_is_one_error_line(docker_api: Any, tier_image: str) -> None:
    # Protected mode on: clients reaching it through the port mapping are not on its
    # loopback, so Redis answers DENIED.
    container = docker_api.containers.run(
        tier_image,
        ["redis-server", "--protected-mode", "yes"],
        detach=True,
        ports={"6379/tcp": ("127.0.0.1", None)},
        labels={CONTAINER_LABEL: "redis", OWNER_LABEL: f"{socket.gethostname()}:{os.getpid()}"},
    )
    try:
        container.reload()
        port = container.attrs["NetworkSettings"]["Ports"]["6379/tcp"][0]["HostPort"]
        url = f"redis://127.0.0.1:{port}/0"
        for workers in ("0", "1"):  # the client's refusal, and a worker's
            done = subprocess.run(
                [sys.executable, "-m", "workers.demo", "--workers", workers, "--angles", "1"],
                cwd=ROOT,
                env=demo_env(PYGENTS_REDIS_URL=url, PYGENTS_NAMESPACE=f"d{uuid.uuid4().hex[:6]}"),
                capture_output=True,
                text=True,
                timeout=120,
                check=False,
            )
            assert done.returncode == 1, done.stderr
            assert "Traceback" not in done.stderr
            first = done.stderr.splitlines()[0]
            assert first.startswith("error: ") and "DENIED" in first and "protected mode" in first
            assert len(first) < 400
    finally:
        container.remove(force=True, v=True)
