"""Security: TLS and ACL logins, signed turns with key rotation, payload size and nesting limits.

Every test runs real workers against a real redis-server (a private one for TLS and ACL).
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
from collections.abc import Callable, Mapping
from typing import Any

import pytest
import redis.asyncio as aioredis

from pygents_dist import (
    Client,
    ConnectionLostError,
    DeadLetteredError,
    DeadLetterReason,
    Limits,
    PayloadError,
    _dead_letters,
    _streams,
)
from pygents_dist._wire import encode_turn, new_turn_id, sign
from pygents_dist.errors import RedisPermissionError
from pygents_dist.testing import RedisServer, WorkerPool, WorkerProcess
from tests.dist.conftest import APPS

type StartOps = Callable[..., WorkerProcess]

#: The command categories workers, clients and the ops CLI need (the README's ACL example).
NAMESPACE_ACL = "+@read +@write +@stream +@scripting +@connection +@keyspace -@dangerous +time"


@pytest.fixture
def start_ops(worker_factory: WorkerPool, redis_url: str) -> StartOps:
    """Start a ready worker serving ``tests/dist/apps/ops_app.py`` (on ``url`` if given)."""

    def start(
        *args: str, url: str | None = None, env: Mapping[str, str] | None = None
    ) -> WorkerProcess:
        url = url or redis_url
        return worker_factory(
            "ops_app",
            redis_url=url,
            args=("--lease-ms", "1500", "--log-level", "WARNING", *args),
            pythonpath=[APPS],
            env={"PYGENTS_REDIS_URL": url, **(env or {})},
        )

    return start


async def dead_reasons(client: Client) -> dict[str, str]:
    """Dead letters: turn id -> reason."""
    return {
        f[b"id"].decode(): f[b"reason"].decode()
        for _entry, f in await _dead_letters.dead_letters(client.transport, 1000)
    }


# -- transport security ------------------------------------------------------------------------


@pytest.mark.parametrize("private_redis", [{"tls": True}], indirect=True)
async def test_worker_and_client_talk_over_tls(
    private_redis: RedisServer, start_ops: StartOps
) -> None:
    url = private_redis.url_with_ca
    assert url.startswith("rediss://") and "ssl_ca_certs=" in url
    start_ops(url=url)
    async with Client(url) as client:
        assert await client.call("front", "echo", kwargs={"value": "over tls"}) == "over tls"
        assert [v async for v in client.stream("front", "count", kwargs={"n": 3})] == [0, 1, 2]


@pytest.mark.parametrize("private_redis", [{"tls": True}], indirect=True)
async def test_tls_client_without_the_ca_refuses_the_server(private_redis: RedisServer) -> None:
    async with Client(private_redis.url + "/0") as client:  # system CAs do not know this one
        with pytest.raises(ConnectionLostError, match="certificate"):
            await client.transport.ping()


@pytest.mark.parametrize("private_redis", [{"acl_user": ("agents", "s3cret pass")}], indirect=True)
async def test_acl_user_and_password_in_the_url(
    private_redis: RedisServer, start_ops: StartOps
) -> None:
    url = private_redis.url
    assert "agents:s3cret%20pass@" in url
    start_ops(url=url)
    async with Client(url) as client:
        assert await client.call("front", "echo", kwargs={"value": 1}) == 1
    async with Client(url.replace("s3cret%20pass", "wrong")) as intruder:
        with pytest.raises(ConnectionLostError, match="invalid username-password"):
            await intruder.transport.ping()


async def test_an_acl_user_limited_to_the_namespace_can_run_everything(
    private_redis: RedisServer, start_ops: StartOps, key_prefix: str
) -> None:
    admin: Any = aioredis.Redis.from_url(private_redis.url)  # execute_command is untyped
    try:
        rule = f"on >pw resetkeys ~{key_prefix}:* resetchannels -@all {NAMESPACE_ACL}"
        await admin.execute_command("ACL", "SETUSER", "agents", *rule.split())
        await admin.set("other:secret", "x")
    finally:
        await admin.aclose()
    url = private_redis.url.replace("redis://", "redis://agents:pw@")
    start_ops(url=url)
    async with Client(url) as client:
        assert await client.call("front", "forward", kwargs={"value": "v"}) == "sent"
        assert [v async for v in client.stream("front", "count", kwargs={"n": 2})] == [0, 1]
        with pytest.raises(DeadLetteredError):
            await client.call("front", "count", kwargs={})
    for args in (("status",), ("dlq", "list"), ("pause", "sink"), ("resume", "sink")):
        done = await asyncio.to_thread(
            subprocess.run,
            [sys.executable, "-m", "pygents_dist", "--redis-url", url, *args],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert done.returncode == 0, done.stderr
    async with Client(url, namespace="other") as outsider:
        # Refused by the ACL: our error (also a PermissionError), naming the operation.
        with pytest.raises(RedisPermissionError, match="Redis refused directory: NOPERM") as info:
            await outsider.agents()
        assert isinstance(info.value, PermissionError) and info.value.code == "NOPERM"
    denied = await asyncio.to_thread(
        subprocess.run,
        [
            sys.executable,
            "-m",
            "pygents_dist",
            "--redis-url",
            url,
            "--namespace",
            "other",
            "status",
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert denied.returncode == 1
    assert denied.stderr.startswith("error: Redis refused directory: NOPERM"), denied.stderr
    assert denied.stderr.count("\n") == 1


# -- signed turns --------------------------------------------------------------------------------


async def test_workers_accept_either_rotation_key_and_sign_their_own_sends(
    start_ops: StartOps, redis_url: str
) -> None:
    worker = start_ops("--log-level", "INFO", env={"PYGENTS_SECRETS": "key-new, key-old"})
    for secret in ("key-new", "key-old"):
        async with Client(redis_url, secret=secret) as client:
            assert await client.call("front", "echo", kwargs={"value": secret}) == secret
            # forward's send to sink is signed by the worker (with key-new), so sink runs it
            assert await client.call("front", "forward", kwargs={"value": secret}) == "sent"
            await asyncio.to_thread(worker.wait_for_line, f"noted {secret}", 15)
    async with Client(redis_url) as client:
        assert await dead_reasons(client) == {}


async def test_unsigned_and_forged_turns_are_dead_lettered_as_bad_signature(
    raw_redis: aioredis.Redis, start_ops: StartOps, redis_url: str
) -> None:
    start_ops(env={"PYGENTS_SECRETS": "key-new,key-old"})
    refused: list[str] = []
    for secret in (None, "guessed-key"):
        async with Client(redis_url, secret=secret) as client:
            with pytest.raises(DeadLetteredError) as info:
                await client.call("front", "echo", kwargs={"value": "x"})
            assert info.value.reason == DeadLetterReason.BAD_SIGNATURE
            refused.append(info.value.turn_id)

    # A man in the middle keeps a valid signature but changes the arguments.
    async with Client(redis_url) as client:
        turn_id = new_turn_id()
        kwargs = {"value": "harmless"}
        original = encode_turn(
            turn_id=turn_id, agent="front", tool="echo", args=[], kwargs=kwargs, timeout=5
        )
        tampered = original.replace(b"harmless", b"EVILEVIL")
        stream = client.transport.keys.turns("front")
        await raw_redis.xadd(
            stream, {b"id": turn_id, b"m": tampered, b"s": sign(original, b"key-new")}
        )
        await _streams.signal(client.transport, ["front"])
        with pytest.raises(DeadLetteredError) as info:
            await asyncio.wait_for(anext(aiter(client.results("front", turn_id)), None), 15)
        assert info.value.reason == DeadLetterReason.BAD_SIGNATURE
        reasons = await dead_reasons(client)
    assert reasons == dict.fromkeys([*refused, turn_id], "bad_signature")


# -- size and nesting limits ---------------------------------------------------------------------


async def test_oversized_or_deep_arguments_are_refused_at_send_and_nothing_is_sent(
    raw_redis: aioredis.Redis, start_ops: StartOps, redis_url: str
) -> None:
    start_ops()
    async with Client(redis_url, limits=Limits(max_bytes=4096, max_depth=8)) as client:
        with pytest.raises(PayloadError, match="over the 4096-byte limit"):
            await client.send("front", "echo", kwargs={"value": "x" * 5000})
        deep: list[object] = []
        for _ in range(10):
            deep = [deep]
        with pytest.raises(PayloadError, match="nested deeper than 8"):
            await client.send("front", "echo", kwargs={"value": deep})
        assert await raw_redis.xlen(client.transport.keys.turns("front")) == 0
        assert await client.call("front", "echo", kwargs={"value": [[["ok"]]]}) == [[["ok"]]]


async def test_worker_limits_dead_letter_what_a_laxer_sender_sent(
    start_ops: StartOps, redis_url: str
) -> None:
    start_ops("--max-message-bytes", "2048", "--max-depth", "8")
    async with Client(redis_url) as client:  # default limits: 1 MiB, depth 32
        with pytest.raises(DeadLetteredError, match="too large") as big:
            await client.call("front", "echo", kwargs={"value": "x" * 10_000})
        deep: list[object] = []
        for _ in range(12):
            deep = [deep]
        with pytest.raises(DeadLetteredError, match="nested deeper than 8") as nested:
            await client.call("front", "echo", kwargs={"value": deep})
        assert big.value.reason == nested.value.reason == DeadLetterReason.UNDECODABLE
        assert await client.call("front", "echo", kwargs={"value": "fine"}) == "fine"
        reasons = await dead_reasons(client)
    assert reasons == {big.value.turn_id: "undecodable", nested.value.turn_id: "undecodable"}
