"""pygents_dist.testing: private redis-servers, the TCP proxy and worker processes, for real."""

import asyncio
import gc
import os
import signal
import socket
from pathlib import Path

import pytest
import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import AuthenticationError, ConnectionError

from pygents_dist import testing
from pygents_dist.testing import (
    ExternalRedis,
    RedisServer,
    TcpProxy,
    WorkerPool,
    WorkerProcess,
    free_port,
    resolve_redis,
)

# Everything here runs redis-server or Python child processes.
pytestmark = [pytest.mark.integration, pytest.mark.slow]


def client(url: str, **kwargs: object) -> aioredis.Redis:
    """A client that fails at once instead of retrying with backoff."""
    return aioredis.from_url(url, retry=Retry(NoBackoff(), 0), socket_timeout=5, **kwargs)


def assert_no_process(pid: int) -> None:
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)


# --- RedisServer ------------------------------------------------------------------------------


def test_free_port_can_be_bound() -> None:
    port = free_port()
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", port))


async def test_server_serves_on_its_loopback_port(private_redis: RedisServer) -> None:
    assert private_redis.url == f"redis://127.0.0.1:{private_redis.port}"
    async with client(private_redis.url) as r:
        assert await r.ping()
        assert (await r.config_get("save"))["save"] == ""


def test_kill_ends_and_reaps_the_process(private_redis: RedisServer) -> None:
    pid = private_redis.pid
    private_redis.kill()
    assert not private_redis.is_running()
    assert_no_process(pid)
    with pytest.raises(RuntimeError, match="not running"):
        _ = private_redis.pid


@pytest.mark.parametrize("private_redis", [{"appendonly": True}], indirect=True)
async def test_aof_keeps_acknowledged_keys_across_kill_and_restart(
    private_redis: RedisServer,
) -> None:
    port = private_redis.port
    async with client(private_redis.url) as r:
        await r.set("k1", "v1")
    private_redis.kill()
    private_redis.start()
    async with client(private_redis.url) as r:
        assert await r.get("k1") == b"v1"
        await r.set("k2", "v2")
    private_redis.restart()
    assert private_redis.port == port
    async with client(private_redis.url) as r:
        assert await r.mget("k1", "k2") == [b"v1", b"v2"]


async def test_restart_without_persistence_loses_keys(private_redis: RedisServer) -> None:
    async with client(private_redis.url) as r:
        await r.set("k", "v")
    private_redis.restart()
    async with client(private_redis.url) as r:
        assert await r.get("k") is None


@pytest.mark.parametrize("private_redis", [{"password": 'p@ss w"rd'}], indirect=True)
async def test_password_is_required_and_carried_by_the_url(private_redis: RedisServer) -> None:
    async with client(private_redis.url) as r:
        assert await r.ping()
    async with client(f"redis://127.0.0.1:{private_redis.port}") as r:
        with pytest.raises(AuthenticationError):
            await r.ping()


@pytest.mark.parametrize("private_redis", [{"acl_user": ("alice", "s3cret")}], indirect=True)
async def test_acl_user_has_every_permission(private_redis: RedisServer) -> None:
    assert private_redis.url.startswith("redis://alice:s3cret@")
    async with client(private_redis.url) as r:
        assert await r.acl_whoami() == "alice"
        await r.xadd("{a}:s", {"f": "v"})
        assert await r.eval("return redis.call('XLEN', KEYS[1])", 1, "{a}:s") == 1
    async with client(f"redis://alice:wrong@127.0.0.1:{private_redis.port}") as r:
        with pytest.raises(AuthenticationError):
            await r.ping()


@pytest.mark.parametrize("private_redis", [{"tls": True}], indirect=True)
async def test_tls_server_is_reached_with_its_ca(private_redis: RedisServer) -> None:
    assert private_redis.ca_path is not None
    assert private_redis.url.startswith("rediss://127.0.0.1:")
    async with client(private_redis.url, ssl_ca_certs=str(private_redis.ca_path)) as r:
        assert await r.ping()
    async with client(private_redis.url_with_ca) as r:
        assert await r.ping()
    async with client(private_redis.url) as r:
        with pytest.raises(ConnectionError, match=r"(?i)certificate"):
            await r.ping()


def test_close_kills_the_server_and_removes_its_directory() -> None:
    server = RedisServer().start()
    pid, directory = server.pid, server.directory
    server.close()
    server.close()
    assert_no_process(pid)
    assert not directory.exists()
    with pytest.raises(RuntimeError, match="closed"):
        server.start()


def test_garbage_collected_server_is_killed() -> None:
    server = RedisServer().start()
    pid, directory = server.pid, server.directory
    del server
    gc.collect()
    assert_no_process(pid)
    assert not directory.exists()


def test_taken_port_is_replaced_unless_fixed() -> None:
    with socket.socket() as squatter:
        server = RedisServer()
        wanted = server.port
        squatter.bind(("127.0.0.1", wanted))
        with server:
            assert server.port != wanted
        with pytest.raises(RuntimeError, match="in use"), RedisServer(port=wanted):
            pass


def test_from_options_rejects_unknown_or_mistyped_options() -> None:
    with pytest.raises(TypeError, match="unknown"):
        RedisServer.from_options({"appendonly": True, "aof": True})
    with pytest.raises(TypeError, match="appendonly"):
        RedisServer.from_options({"appendonly": "yes"})
    with pytest.raises(TypeError, match="acl_user"):
        RedisServer.from_options({"acl_user": "alice"})


def test_resolve_redis_prefers_redis_url() -> None:
    endpoint = resolve_redis(environ={"REDIS_URL": "redis://10.0.0.1:7000/3"})
    assert isinstance(endpoint, ExternalRedis)
    assert endpoint.url == "redis://10.0.0.1:7000/3"
    named = resolve_redis(
        environ={"PYGENTS_REDIS_URL": "redis://h:1"}, url_variable="PYGENTS_REDIS_URL"
    )
    assert isinstance(named, ExternalRedis)
    assert named.url == "redis://h:1"


async def test_resolve_redis_prefers_a_local_redis_server_to_docker(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def no_container(*args: object, **kwargs: object) -> None:
        raise AssertionError("Docker was asked although redis-server is on PATH")

    monkeypatch.setattr(testing, "docker_available", lambda: True)
    monkeypatch.setattr(testing, "ContainerRedis", no_container)
    endpoint = resolve_redis(environ={})
    try:
        assert isinstance(endpoint, RedisServer)
        async with client(endpoint.url) as r:
            assert await r.ping()
    finally:
        endpoint.close()


def test_resolve_redis_uses_docker_when_no_redis_server_is_on_path(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """resolve_redis lives in a private module; patching the public names must still reach it."""

    class FakeContainer:
        url = "redis://container.invalid:6379"

        def __init__(self, image: str) -> None:
            self.image = image

        def close(self) -> None:
            pass

    monkeypatch.setattr(testing, "docker_available", lambda: True)
    monkeypatch.setattr(testing, "ContainerRedis", FakeContainer)
    hidden = {"PATH": str(tmp_path)}  # no redis-server there
    endpoint = resolve_redis(environ=hidden)
    assert isinstance(endpoint, FakeContainer)
    assert endpoint.image == "redis:7-alpine"  # the public default...
    endpoint = resolve_redis(environ={**hidden, "PYGENTS_REDIS_IMAGE": "mine/redis:1"})
    assert isinstance(endpoint, FakeContainer)
    assert endpoint.image == "mine/redis:1"  # ...unless the environment names another
    endpoint = resolve_redis(environ=hidden, image="given:2")
    assert isinstance(endpoint, FakeContainer)
    assert endpoint.image == "given:2"


def test_resolve_redis_without_any_redis_says_what_to_install(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    def broken(image: str) -> None:
        raise RuntimeError("image gone\nwith a second line")

    with pytest.raises(testing.NoRedisError) as no_docker:
        resolve_redis(environ={"PATH": str(tmp_path)}, use_docker=False)
    message = str(no_docker.value)
    assert "\n" not in message
    assert "REDIS_URL is not set" in message
    assert "install redis-server" in message
    monkeypatch.setattr(testing, "ContainerRedis", broken)
    with pytest.raises(testing.NoRedisError, match=r"container did not start: image gone$"):
        resolve_redis(environ={"PATH": str(tmp_path)}, use_docker=True)


# --- TcpProxy ---------------------------------------------------------------------------------


async def test_cut_breaks_connections_and_refuses_new_ones_until_restore(
    private_redis: RedisServer,
) -> None:
    with TcpProxy.for_url(private_redis.url) as proxy:
        async with client(proxy.url_for(private_redis.url)) as r:
            await r.set("k", "v")
            assert proxy.active_connections == 1
            proxy.cut()
            assert proxy.active_connections == 0
            with pytest.raises(ConnectionError):
                await r.get("k")
            with pytest.raises(ConnectionError):
                await r.get("k")  # a new connection is refused too
            proxy.restore()
            assert await r.get("k") == b"v"


async def test_stall_holds_bytes_until_restore(private_redis: RedisServer) -> None:
    with TcpProxy.for_url(private_redis.url) as proxy:
        reader, writer = await asyncio.open_connection(proxy.host, proxy.port)
        try:
            writer.write(b"PING\r\n")
            assert await reader.readline() == b"+PONG\r\n"
            proxy.stall()
            writer.write(b"PING\r\n")
            with pytest.raises(TimeoutError):  # asserting an absence needs a bound
                await asyncio.wait_for(reader.readline(), 0.2)
            proxy.restore()
            assert await reader.readline() == b"+PONG\r\n"
        finally:
            writer.close()
            await writer.wait_closed()


async def test_stopped_proxy_starts_again_on_its_port(private_redis: RedisServer) -> None:
    proxy = TcpProxy.for_url(private_redis.url).start()
    try:
        port = proxy.port
        proxy.stop()
        proxy.start()
        assert proxy.port == port
        async with client(proxy.url_for(private_redis.url)) as r:
            assert await r.ping()
    finally:
        proxy.stop()


def test_url_for_swaps_only_host_and_port() -> None:
    with TcpProxy("10.0.0.1", 6380) as proxy:
        url = proxy.url_for("rediss://u:p%40w@10.0.0.1:6380/2?ssl_ca_certs=%2Fca.crt")
        assert url == f"rediss://u:p%40w@127.0.0.1:{proxy.port}/2?ssl_ca_certs=%2Fca.crt"
        assert proxy.url_for("redis://h:1") == f"redis://127.0.0.1:{proxy.port}"


# --- WorkerProcess, against a stand-in `python -m pygents_dist` --------------------------------

FAKE_MAIN = """\
import importlib, os, signal, sys

mode = os.environ.get("FAKE_MODE", "serve")
print("argv", *sys.argv[1:], flush=True)
print("env", os.environ.get("FAKE_VAR"), flush=True)
importlib.import_module(sys.argv[2])
if mode == "exit":
    print("boom", file=sys.stderr, flush=True)
    sys.exit(3)
if mode == "stubborn":
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
else:
    def term(signum, frame):
        print("TERM", flush=True)
        sys.exit(0)
    signal.signal(signal.SIGTERM, term)
if mode != "silent":
    print("READY w-" + str(os.getpid()), flush=True)
while True:
    signal.pause()
"""


@pytest.fixture
def fake_paths(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> list[Path]:
    """Run children in a directory holding a stand-in `pygents_dist` package (`python -m` puts
    the working directory first on sys.path); returns PYTHONPATH entries for a user module."""
    fake = tmp_path / "fake"
    (fake / "pygents_dist").mkdir(parents=True)
    (fake / "pygents_dist" / "__init__.py").write_text("")
    (fake / "pygents_dist" / "__main__.py").write_text(FAKE_MAIN)
    monkeypatch.chdir(fake)
    user = tmp_path / "user"
    user.mkdir()
    (user / "myagents.py").write_text('print("imported myagents", flush=True)')
    return [user]


def test_wait_ready_returns_worker_id_and_output_is_kept(fake_paths: list[Path]) -> None:
    with WorkerProcess(
        "myagents",
        redis_url="redis://127.0.0.1:1",
        args=["--concurrency", "2"],
        pythonpath=fake_paths,
        env={"FAKE_VAR": "x1"},
    ) as worker:
        worker_id = worker.wait_ready(10)
        assert worker_id == worker.worker_id == f"w-{worker.pid}"
        assert worker.output == [
            "argv worker myagents --redis-url redis://127.0.0.1:1 --concurrency 2",
            "env x1",
            "imported myagents",
            f"READY {worker_id}",
        ]
        assert worker.wait_for_line("^env ") == "env x1"
        worker.terminate()
        assert worker.wait(10) == 0
        assert worker.output[-1] == "TERM"


def test_kill_sends_sigkill(fake_paths: list[Path]) -> None:
    with WorkerProcess("myagents", redis_url="r", pythonpath=fake_paths) as worker:
        worker.wait_ready(10)
        worker.kill()
        assert worker.returncode == -signal.SIGKILL
        assert not worker.is_running()


def test_wait_ready_raises_with_output_when_worker_exits(fake_paths: list[Path]) -> None:
    env = {"FAKE_MODE": "exit"}
    with WorkerProcess("myagents", redis_url="r", pythonpath=fake_paths, env=env) as worker:
        with pytest.raises(RuntimeError, match=r"(?s)exited \(status 3\).*boom"):
            worker.wait_ready(10)
        with pytest.raises(RuntimeError, match="not ready"):
            _ = worker.worker_id


def test_wait_ready_times_out_with_output(fake_paths: list[Path]) -> None:
    env = {"FAKE_MODE": "silent"}
    with WorkerProcess("myagents", redis_url="r", pythonpath=fake_paths, env=env) as worker:
        worker.wait_for_line("imported")
        with pytest.raises(TimeoutError, match="imported myagents"):
            worker.wait_ready(0.1)
        pid = worker.pid
    assert_no_process(pid)


def test_pool_terminates_workers_and_kills_the_stubborn(fake_paths: list[Path]) -> None:
    with WorkerPool("r", pythonpath=fake_paths, grace=0.2) as pool:
        polite = pool("myagents")
        stubborn = pool("myagents", env={"FAKE_MODE": "stubborn"})
        assert polite.worker_id != stubborn.worker_id
    assert polite.returncode == 0
    assert stubborn.returncode == -signal.SIGKILL
    assert pool.workers == [polite, stubborn]


def test_pool_cleans_up_a_worker_that_failed_to_start(fake_paths: list[Path]) -> None:
    with WorkerPool("r", pythonpath=fake_paths) as pool:
        with pytest.raises(RuntimeError, match="boom"):
            pool("myagents", env={"FAKE_MODE": "exit"})
        (failed,) = pool.workers
    assert failed.returncode == 3
