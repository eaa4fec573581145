"""The transport's pipelined fast path (``_connections.py``) against a real Redis: replies
come back in order, a call cancelled mid-wait never hands its late reply to the next call,
and an unreachable Redis is reported as ``ConnectionLostError``."""

from __future__ import annotations

import asyncio

import pytest
import redis.asyncio as aioredis
from redis.exceptions import ResponseError

from pygents_dist import ConnectionLostError, _directory, _replies, _streams
from pygents_dist._transport import Transport
from pygents_dist.errors import RedisCommandError
from pygents_dist.testing import RedisServer, free_port
from tests.dist.helpers import eventually

pytestmark = pytest.mark.integration


async def test_replies_come_back_in_order_with_errors_in_place(
    redis_url: str, key_prefix: str
) -> None:
    transport = Transport.from_url(redis_url, namespace=key_prefix)
    try:
        key = f"{key_prefix}:x"
        got = await transport.execute_raw(
            [("SET", key, "v"), ("LPUSH", key, "wrong type"), ("GET", key), ("XLEN", key)],
            "test",
        )
        assert got[0] == b"OK"
        assert isinstance(got[1], ResponseError) and "WRONGTYPE" in str(got[1])
        assert got[2] == b"v"
        assert isinstance(got[3], ResponseError)
    finally:
        await transport.aclose()


async def test_an_error_reply_is_raised_as_ours_naming_the_operation(
    redis_url: str, key_prefix: str
) -> None:
    transport = Transport.from_url(redis_url, namespace=key_prefix)
    key = f"{key_prefix}:x"
    try:
        with pytest.raises(RedisCommandError, match="Redis refused probe: WRONGTYPE") as info:
            await transport.execute([("SET", key, "v"), ("LPUSH", key, "x"), ("DEL", key)], "probe")
        assert (info.value.code, info.value.operation) == ("WRONGTYPE", "probe")
        assert isinstance(info.value.__cause__, ResponseError)
        assert await transport.execute([("EXISTS", key)], "probe") == [0]  # the DEL ran too
    finally:
        await transport.aclose()


async def test_a_cancelled_wait_never_answers_the_next_call(
    redis_url: str, key_prefix: str
) -> None:
    transport = Transport.from_url(redis_url, namespace=key_prefix)
    redis = aioredis.Redis.from_url(redis_url)
    stream = f"{key_prefix}:replies"
    try:
        waiting = asyncio.ensure_future(_replies.read_reply(transport, stream, b"0-0", 10_000))

        async def blocked() -> bool:
            clients = await redis.client_list()
            return any(c.get("cmd") == "xread" for c in clients)

        await eventually(blocked, "the read to block in Redis")
        waiting.cancel()
        with pytest.raises(asyncio.CancelledError):
            await waiting
        # The entry wakes the cancelled read's connection, had it been kept: its reply would
        # then answer the next command sent on it.
        await redis.xadd(stream, {b"k": b"e"})
        for _ in range(5):
            assert await _streams.backlog(transport, ["nobody"]) == [0]
            assert not await _directory.is_declared(transport, "nobody")
        entries = await _replies.read_reply(transport, stream, b"0-0", 100)
        assert [fields for _id, fields in entries] == [{b"k": b"e"}]
    finally:
        await redis.aclose()
        await transport.aclose()


async def test_an_unreachable_redis_is_a_connection_lost_error() -> None:
    url = f"redis://127.0.0.1:{free_port()}/0"
    transport = Transport.from_url(url, retries=1)
    try:
        with pytest.raises(ConnectionLostError, match="during backlog"):
            await _streams.backlog(transport, ["a"])
    finally:
        await transport.aclose()


async def test_calls_resume_after_redis_restarts(private_redis: RedisServer) -> None:
    transport = Transport.from_url(private_redis.url)
    try:
        assert await _streams.backlog(transport, ["a"]) == [0]
        private_redis.restart(kill=True)
        assert await _streams.backlog(transport, ["a"]) == [0]  # a stale connection is replaced
    finally:
        await transport.aclose()


async def test_a_waiting_send_that_finds_its_script_gone_neither_waits_nor_sends_twice(
    private_redis: RedisServer,
) -> None:
    # The send's script runs by EVALSHA with a blocking read behind it in the same round
    # trip. After SCRIPT FLUSH (as after a Redis restart) the script reply is NOSCRIPT: the
    # round trip must end there, not after the read's 2 s, and the turn be stored once.
    transport = Transport.from_url(private_redis.url)
    store = aioredis.Redis.from_url(private_redis.url)
    turns, reply = transport.keys.turns("a"), transport.keys.reply("a", "t1")
    try:
        await _streams.send_turns(transport, [("a", "t0", b"warm", b"")])  # the script is loaded
        await store.delete(turns)
        await store.script_flush()

        async def answer() -> None:
            await eventually(lambda: store.xlen(turns), "the turn to arrive", 5.0)
            await store.xadd(reply, {b"k": b"e"})

        answering = asyncio.ensure_future(answer())
        entries = await asyncio.wait_for(
            _streams.send_turns(transport, [("a", "t1", b"envelope", b"")], wait=reply), 1.5
        )
        await answering
        assert [fields for _id, fields in entries] == [{b"k": b"e"}]
        assert [f[b"id"] for _id, f in await store.xrange(turns)] == [b"t1"]
    finally:
        await store.aclose()
        await transport.aclose()


_DENIED = (
    b"-DENIED Redis is running in protected mode because protected mode is enabled and no "
    b"password is set for the default user. In this mode connections are only accepted from "
    b"the loopback interface.\r\n"
)


async def test_a_refused_handshake_is_ours_at_once_not_a_lost_connection() -> None:
    """A Redis that refuses every client (protected mode, reached from outside) answers the
    handshake with ``DENIED``: one RedisCommandError, no retries, no raw redis-py error."""
    connections = 0

    async def refuse(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal connections
        connections += 1
        await reader.read(1024)  # the handshake's first command
        writer.write(_DENIED)
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(refuse, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    transport = Transport.from_url(f"redis://127.0.0.1:{port}/0", namespace="t")
    try:
        with pytest.raises(RedisCommandError) as info:
            await transport.execute([("PING",)], "probe")
    finally:
        await transport.aclose()
        server.close()
        await server.wait_closed()
    assert connections == 1
    assert str(info.value).startswith("Redis refused the connection for probe: DENIED Redis is")
    assert info.value.code == "DENIED"
