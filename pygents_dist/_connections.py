"""Pipelined commands on connections the transport keeps: its fast path.

A redis-py pipeline costs about 100 us of CPU per call before Redis sees a byte (a
``Pipeline`` object, per-command callbacks, pool locking and observability hooks), more than
Redis spends running a whole batch. The hot operations (sending turns, taking, fetching and
committing batches, reading replies and signals) therefore pack their commands with hiredis,
write them in one go on a connection held here and read the raw replies back.

redis-py still makes, authenticates and tears down these connections (TCP, TLS or unix
socket; AUTH, SELECT, protocol handshake), so every URL option behaves as elsewhere. Only
``_transport.py`` uses this module.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Sequence
from typing import Any

import hiredis
from redis._parsers import _AsyncHiredisParser
from redis.asyncio.connection import AbstractConnection, ConnectionPool
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

from pygents_dist.errors import ConnectionLostError

__all__ = ["CONNECTION_ERRORS", "Connections"]

CONNECTION_ERRORS = (RedisConnectionError, RedisTimeoutError, ConnectionError, OSError)
#: Backoff before retry n (1-based): min(_BACKOFF_CAP, _BACKOFF_BASE * 2**n) seconds.
_BACKOFF_BASE = 0.02
_BACKOFF_CAP = 1.0
#: redis-py's socket timeout when the URL and options set none.
_DEFAULT_TIMEOUT = 5.0


def pack(commands: Sequence[Sequence[Any]]) -> bytes:
    """The RESP encoding of ``commands`` (each a sequence of str, bytes, int or float)."""
    return b"".join([hiredis.pack_command(tuple(command)) for command in commands])


class Connections:
    """Connections for pipelined commands, made from a redis-py pool's settings.

    Example::

        connections = Connections(redis_client.connection_pool, retries=5, limit=256)
        [length] = await connections.execute([("XLEN", "stream")], "backlog")

    Guarantees: the commands of one ``execute`` go out in one write on one connection, so
    Redis runs them in order with nothing of this process in between; a connection is reused
    only after every reply it owed was read (a cancelled or failed call closes it).
    Limits: after a connection failure the whole call is sent again (up to ``retries``
    times, with exponential backoff), so its commands must tolerate running twice.
    """

    def __init__(self, pool: ConnectionPool, *, retries: int, limit: int) -> None:
        self._pool = pool
        self._retries = retries
        timeout = pool.connection_kwargs.get("socket_timeout", _DEFAULT_TIMEOUT)
        self._timeout: float | None = timeout
        self._idle: list[AbstractConnection] = []
        self._room = asyncio.Semaphore(limit)  # blocking reads each hold one connection

    async def execute(
        self, commands: Sequence[Sequence[Any]], what: str, wait_ms: int = 0
    ) -> list[Any]:
        """Run ``commands`` in one round trip; their replies in order, with an error reply
        (``ResponseError``, e.g. ``NoScriptError``) returned in its command's place.

        The whole round trip may take the socket timeout (redis-py's ``socket_timeout``,
        5 s unless set) plus ``wait_ms``, the longest a blocking command in it waits; a
        connection that takes longer counts as lost.

        Raises:
            ConnectionLostError: Redis stayed unreachable through every retry (``what``
                names the operation in the message).
        """
        payload = pack(commands)
        failures = 0
        async with self._room:
            while True:
                connection = self._idle.pop() if self._idle else self._connect()
                try:
                    replies = await self._round_trip(connection, payload, len(commands), wait_ms)
                except CONNECTION_ERRORS as exc:
                    await self._discard(connection)
                    # The idle connections most likely lost the same server: drop them too,
                    # or each would use up a retry on its own.
                    await self._discard_idle()
                    failures += 1
                    if failures > self._retries:
                        raise ConnectionLostError(
                            f"Redis unreachable during {what}: {exc}"
                        ) from exc
                    await asyncio.sleep(min(_BACKOFF_CAP, _BACKOFF_BASE * 2**failures))
                    continue
                except BaseException:
                    # Cancelled or failed mid-call: replies may still be owed on it.
                    await self._discard(connection)
                    raise
                self._idle.append(connection)
                return replies

    def _connect(self) -> AbstractConnection:
        """A new connection, made as the pool would (it connects on its first command)."""
        # RESP2 whatever the pool speaks: replies are read raw, and RESP2 gives every
        # command and script one shape (arrays, nil for Lua false).
        # No socket timeout of their own: one deadline covers a whole round trip (a timer
        # per read and write costs more than the rest of the read).
        options = {
            **self._pool.connection_kwargs,
            "protocol": 2,
            "socket_timeout": None,
            "socket_connect_timeout": self._connect_timeout(),
        }
        connection: AbstractConnection = self._pool.connection_class(**options)
        return connection

    def _connect_timeout(self) -> float | None:
        given: float | None = self._pool.connection_kwargs.get("socket_connect_timeout")
        return given if given is not None else self._timeout

    async def _round_trip(
        self, connection: AbstractConnection, payload: bytes, count: int, wait_ms: int
    ) -> list[Any]:
        if self._timeout is None:
            return await _exchange(connection, payload, count)
        try:
            async with asyncio.timeout(self._timeout + wait_ms / 1000):
                return await _exchange(connection, payload, count)
        except TimeoutError:
            raise RedisTimeoutError(f"no reply within {self._timeout}s") from None

    async def aclose(self) -> None:
        """Close the idle connections (busy ones close when their call ends)."""
        # Waiting for each close lets a TLS connection finish its shutdown; otherwise its
        # socket outlives the event loop.
        await self._discard_idle(wait=True)

    async def _discard_idle(self, wait: bool = False) -> None:
        idle, self._idle = self._idle, []
        for connection in idle:
            await self._discard(connection, wait)

    @staticmethod
    async def _discard(connection: AbstractConnection, wait: bool = False) -> None:
        # Closing a broken socket may fail too; it is gone either way.
        with contextlib.suppress(Exception):
            await connection.disconnect(nowait=not wait)


async def _exchange(connection: AbstractConnection, payload: bytes, count: int) -> list[Any]:
    await connection.send_packed_command(payload, check_health=False)
    parser = getattr(connection, "_parser", None)
    if isinstance(parser, _AsyncHiredisParser):
        # Straight from hiredis: it returns error replies as ResponseError values and raises
        # ConnectionError/OSError for a lost socket; redis-py's wrapper adds a timer and
        # formats the host name for every reply (our deadline covers the round trip).
        return [await parser.read_response() for _ in range(count)]
    replies: list[Any] = []
    for _ in range(count):
        try:
            replies.append(await connection.read_response())
        except ResponseError as error:
            replies.append(error)
    return replies
