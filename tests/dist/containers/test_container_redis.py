"""The container tier's Redis really is a container, started through testcontainers, reached on
loopback, and removed by id when closed, after a failed test, and after its owner was killed."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import textwrap
import uuid
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import redis

from pygents_dist.testing import (
    CONTAINER_LABEL,
    OWNER_LABEL,
    ContainerRedis,
    sweep_stale_containers,
)

pytestmark = [pytest.mark.containers, pytest.mark.integration, pytest.mark.slow]

pytest_plugins = ["pytester"]


def exists(docker_api: Any, container_id: str) -> bool:
    return bool(docker_api.containers.list(all=True, filters={"id": container_id}))


def test_the_session_redis_runs_in_a_container_seen_through_the_docker_api(
    container_redis: ContainerRedis, redis_url: str, docker_api: Any, tier_image: str
) -> None:
    container = docker_api.containers.get(container_redis.container_id)
    assert container.status == "running"
    assert container.attrs["Config"]["Image"] == tier_image
    assert container.labels[CONTAINER_LABEL] == "redis"
    assert container.labels["org.testcontainers"] == "true"  # started by testcontainers
    # Published on loopback only, and the URL is that mapping.
    [binding] = container.attrs["NetworkSettings"]["Ports"]["6379/tcp"]
    url = urlsplit(redis_url)
    assert binding["HostIp"] == "127.0.0.1"
    assert (url.hostname, url.port) == ("127.0.0.1", int(binding["HostPort"]))
    # The server at the URL is the one inside: a value written through the URL is read by
    # redis-cli in the container, and both see the same server run id.
    key, value = f"t{uuid.uuid4().hex[:8]}:probe", uuid.uuid4().hex
    with redis.Redis.from_url(redis_url, decode_responses=True) as r:
        r.set(key, value, ex=60)
        run_id = r.info("server")["run_id"]
    inside = container.exec_run(["redis-cli", "GET", key])
    assert inside.exit_code == 0
    assert inside.output.decode().strip() == value
    info = container.exec_run(["redis-cli", "INFO", "server"]).output.decode()
    assert f"run_id:{run_id}" in info


def test_the_reaper_is_used_only_where_its_image_can_be_had(
    container_redis: ContainerRedis, docker_api: Any
) -> None:
    from testcontainers.core.config import testcontainers_config as config

    if "TESTCONTAINERS_RYUK_DISABLED" in os.environ:
        pytest.skip("TESTCONTAINERS_RYUK_DISABLED is set: the reaper is the user's choice")
    here = bool(docker_api.images.list(name=config.ryuk_image))
    assert container_redis.reaper is here
    assert config.ryuk_disabled is not here


def test_a_container_is_removed_by_id_when_closed(docker_api: Any, tier_image: str) -> None:
    endpoint = ContainerRedis(tier_image)
    try:
        container_id = endpoint.container_id
        assert (
            docker_api.containers.get(container_id).labels[OWNER_LABEL].endswith(f":{os.getpid()}")
        )
        with redis.Redis.from_url(endpoint.url) as r:
            assert r.ping()
    finally:
        endpoint.close()
    assert not exists(docker_api, container_id)
    endpoint.close()  # idempotent


def test_the_container_of_a_killed_process_is_removed_by_the_next_one(
    docker_api: Any, tier_image: str
) -> None:
    code = (
        "import sys, time; from pygents_dist.testing import ContainerRedis; "
        "c = ContainerRedis(sys.argv[1]); print(c.container_id, flush=True); time.sleep(120)"
    )
    child = subprocess.Popen(
        [sys.executable, "-c", code, tier_image], stdout=subprocess.PIPE, text=True
    )
    try:
        assert child.stdout is not None
        container_id = child.stdout.readline().strip()
        assert container_id, "the child started no container"
        child.send_signal(signal.SIGKILL)  # no cleanup code runs
        child.wait(10)
        assert exists(docker_api, container_id)
        assert container_id in sweep_stale_containers(docker_api)
        assert not exists(docker_api, container_id)
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
        if child.stdout is not None:
            child.stdout.close()
        for leftover in docker_api.containers.list(
            all=True, filters={"label": f"{OWNER_LABEL}={socket.gethostname()}:{child.pid}"}
        ):
            leftover.remove(force=True, v=True)


def test_the_tier_removes_its_container_after_a_failed_test(
    pytester: pytest.Pytester, docker_api: Any, tier_image: str, tmp_path: Path
) -> None:
    record = tmp_path / "container-id"
    pytester.makeconftest(
        """
        import pytest

        @pytest.fixture(scope="session")
        def redis_server(container_redis):
            return container_redis
        """
    )
    pytester.makepyfile(
        textwrap.dedent(
            f"""
            import redis

            def test_fails(container_redis, redis_url):
                open({str(record)!r}, "w").write(container_redis.container_id)
                with redis.Redis.from_url(redis_url) as r:
                    assert r.ping()
                assert False, "a failing test"
            """
        )
    )
    result = pytester.runpytest_subprocess(
        "-p", "no:cacheprovider", "-p", "no:randomly", "--redis-image", tier_image
    )
    result.assert_outcomes(failed=1)
    container_id = record.read_text()
    assert container_id
    assert not exists(docker_api, container_id)
    assert any("container tier: ContainerRedis(" in line for line in result.outlines)
