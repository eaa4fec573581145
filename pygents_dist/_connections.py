"""Pipelined commands on connections the transport keeps: its fast path.

A redis-py pipeline costs about 100 us of CPU per call before Redis sees a byte (a
``Pipeline`` object, per-command callbacks, pool locking and observability hooks), more than
Redis spends running a whole batch. The hot operations (sending turns, taking, fetching and
committing batches, reading replies and signals) therefore pack their commands with hiredis,
write them in one go on a connection held here and read the raw replies back.

redis-py still makes, authenticates and tears down these connections (TCP, TLS or unix
socket; AUTH, SELECT, protocol handshake), so every URL option behaves as elsewhere. Once a
connection is ready its socket is read by a protocol of our own (``_Link``), which parses
replies as bytes arrive and wakes the caller once, when the last reply of its round trip is
in: a pipeline whose first reply comes at once and whose last one waits (a write followed by
a blocking read) costs one wake-up, not two. Only the Redis plumbing (``_transport.py``,
``_scripts.py``) uses this module.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Sequence
from typing import Any, Protocol

import hiredis
from redis.asyncio.connection import AbstractConnection, ConnectionPool
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

from pygents_dist._redis_errors import CONNECTION_ERRORS, lost, translate
from pygents_dist.errors import NotReplicatedError

__all__ = ["Connections", "Executor", "writes"]

#: Backoff before retry n (1-based): min(_BACKOFF_CAP, _BACKOFF_BASE * 2**n) seconds.
_BACKOFF_BASE = 0.02
_BACKOFF_CAP = 1.0
#: redis-py's socket timeout when the URL and options set none.
_DEFAULT_TIMEOUT = 5.0
#: Commands that write nothing (a round trip of these only needs no replica's confirmation).
_READS = frozenset(
    b"XREAD XRANGE XREVRANGE XLEN XPENDING XINFO GET MGET HGET HMGET HGETALL HEXISTS EXISTS "
    b"ZRANGEBYSCORE ZSCORE SCAN PING INFO CLUSTER SCRIPT ROLE TIME WAIT ASKING TYPE".split()
)


def writes(commands: Sequence[Sequence[Any]]) -> bool:
    """Whether any of ``commands`` may write (scripts count as writes)."""
    for command in commands:
        name = command[0]
        word = name.split()[0] if isinstance(name, bytes) else name.split()[0].encode()
        if word.upper() not in _READS:
            return True
    return False


class Executor(Protocol):
    """What runs round trips: ``Connections``, or a cluster's (``_cluster.py``)."""

    async def execute(
        self,
        commands: Sequence[Sequence[Any]],
        what: str,
        wait_ms: int = 0,
        *,
        until_error: bool = False,
    ) -> list[Any]:
        """Run ``commands`` in one round trip (see ``Connections.execute``)."""
        ...


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
    only after every reply it owed was read (a cancelled, failed or cut-short call closes it).
    Limits: after a connection failure the whole call is sent again (up to ``retries``
    times, with exponential backoff), so its commands must tolerate running twice.

    ``replicated = (replicas, timeout_ms)`` (the durability mode): a round trip that writes
    ends with ``WAIT replicas timeout_ms``, and raises ``NotReplicatedError`` unless that many
    replicas confirmed its writes.
    """

    def __init__(self, pool: ConnectionPool, *, retries: int, limit: int) -> None:
        self.replicated: tuple[int, int] | None = None
        self._pool = pool
        self._retries = retries
        timeout = pool.connection_kwargs.get("socket_timeout", _DEFAULT_TIMEOUT)
        self._timeout: float | None = timeout
        self._idle: list[_Link] = []
        self._room = asyncio.Semaphore(limit)  # blocking reads each hold one connection

    async def execute(
        self,
        commands: Sequence[Sequence[Any]],
        what: str,
        wait_ms: int = 0,
        *,
        until_error: bool = False,
    ) -> list[Any]:
        """Run ``commands`` in one round trip; their replies in order, with an error reply
        (``ResponseError``, e.g. ``NoScriptError``) returned in its command's place.

        The whole round trip may take the socket timeout (redis-py's ``socket_timeout``,
        5 s unless set) plus ``wait_ms``, the longest a blocking command in it waits; a
        connection that takes longer counts as lost. With ``until_error``, an error reply
        ends the round trip at once: the replies up to it are returned, the connection is
        closed (Redis drops whatever it was still running for it, such as a blocking read).

        Raises:
            ConnectionLostError: Redis stayed unreachable through every retry (``what``
                names the operation in the message).
            NotReplicatedError: in the durability mode, no replica confirmed the writes.
        """
        replicated = self.replicated
        if replicated is not None and writes(commands):
            waited = [*commands, ("WAIT", *replicated)]
            replies = await self._execute(
                pack(waited), len(waited), what, wait_ms + replicated[1], until_error
            )
            if len(replies) <= len(commands):  # cut short by an error: nothing to confirm
                return replies
            acks = replies.pop()
            if not isinstance(acks, int) or acks < replicated[0]:
                raise NotReplicatedError(
                    f"{what}: {acks} of {replicated[0]} replica(s) confirmed the writes "
                    f"within {replicated[1]} ms (durability=replicated)"
                )
            return replies
        return await self._execute(pack(commands), len(commands), what, wait_ms, until_error)

    async def _execute(
        self, payload: bytes, count: int, what: str, wait_ms: int, until_error: bool
    ) -> list[Any]:
        timeout = None if self._timeout is None else self._timeout + wait_ms / 1000
        failures = 0
        async with self._room:
            while True:
                link = self._idle.pop() if self._idle else None
                try:
                    if link is None:
                        link = await self._open(what)
                    replies = await link.exchange(payload, count, timeout, until_error)
                except CONNECTION_ERRORS as exc:
                    if link is not None:
                        link.close()
                    # The idle connections most likely lost the same server: drop them too,
                    # or each would use up a retry on its own.
                    self._drop_idle()
                    failures += 1
                    if failures > self._retries:
                        raise lost(exc, what) from exc
                    await asyncio.sleep(min(_BACKOFF_CAP, _BACKOFF_BASE * 2**failures))
                    continue
                except BaseException:
                    # Cancelled or failed mid-call: replies may still be owed on it.
                    if link is not None:
                        link.close()
                    raise
                if len(replies) < count:
                    link.close()  # cut short by an error reply: the rest is still owed
                else:
                    self._idle.append(link)
                return replies

    async def _open(self, what: str) -> _Link:
        """A new connection, made and authenticated by redis-py, then read by a ``_Link``.

        Raises:
            RedisCommandError: Redis answered the handshake with an error reply, such as
                ``DENIED`` from a server in protected mode (redis-py has closed the socket).
        """
        # RESP2 whatever the pool speaks: replies are read raw, and RESP2 gives every
        # command and script one shape (arrays, nil for Lua false).
        # No socket timeout of their own: one deadline covers a whole round trip.
        options = {
            **self._pool.connection_kwargs,
            "protocol": 2,
            "socket_timeout": None,
            "socket_connect_timeout": self._connect_timeout(),
        }
        connection: AbstractConnection = self._pool.connection_class(**options)
        try:
            await connection.connect()  # type: ignore[no-untyped-call]
        except ResponseError as exc:  # not a lost connection: retrying will not help
            raise translate(exc, f"the connection for {what}") from exc
        return _Link(connection)

    def _connect_timeout(self) -> float | None:
        given: float | None = self._pool.connection_kwargs.get("socket_connect_timeout")
        return given if given is not None else self._timeout

    async def aclose(self) -> None:
        """Close the idle connections (busy ones close when their call ends)."""
        # Waiting for each close lets a TLS connection finish its shutdown; otherwise its
        # socket outlives the event loop.
        idle, self._idle = self._idle, []
        for link in idle:
            await link.aclose()

    def _drop_idle(self) -> None:
        idle, self._idle = self._idle, []
        for link in idle:
            link.close()


class _Link(asyncio.Protocol):
    """One connection's socket, read by hiredis as bytes arrive.

    Takes the transport over from a connected, authenticated redis-py connection (whose
    stream reader then sees nothing more). One round trip at a time: ``exchange`` writes a
    payload and returns when ``count`` replies are in (or an error reply, if asked).
    """

    def __init__(self, connection: AbstractConnection) -> None:
        writer = connection._writer
        if writer is None:  # pragma: no cover - connect() returned without a socket
            raise RedisConnectionError("connection not established")
        self._connection = connection
        self._loop = asyncio.get_running_loop()
        self._transport: Any = writer.transport
        # Error replies become redis-py's exception values (NoScriptError...), as before.
        parser: Any = connection._parser
        self._reader = hiredis.Reader(replyError=parser.parse_error)
        self._replies: list[Any] = []
        self._expected = 0
        self._until_error = False
        self._waiter: asyncio.Future[None] | None = None
        self._lost: Exception | None = None
        self._closed: asyncio.Future[None] = self._loop.create_future()
        self._transport.set_protocol(self)

    async def exchange(
        self, payload: bytes, count: int, timeout: float | None, until_error: bool
    ) -> list[Any]:
        """Write ``payload`` and wait for its ``count`` replies (see ``Connections.execute``)."""
        if self._lost is not None:
            raise RedisConnectionError(f"connection lost: {self._lost}")
        replies: list[Any] = []
        self._replies = replies
        self._expected, self._until_error = count, until_error
        waiter = self._waiter = self._loop.create_future()
        self._transport.write(payload)
        timer = None if timeout is None else self._loop.call_later(timeout, self._timed_out)
        try:
            await waiter
        finally:
            # Replies arriving after a cut-short round trip land elsewhere: this one's
            # count then tells the caller the connection still owes some.
            self._waiter, self._replies = None, []
            if timer is not None:
                timer.cancel()
        return replies

    def data_received(self, data: bytes) -> None:
        reader = self._reader
        replies = self._replies
        reader.feed(data)
        try:
            while (reply := reader.gets()) is not False:
                replies.append(reply)
        except Exception as exc:  # the stream is not RESP: nothing more can be trusted
            self._fail(RedisConnectionError(f"unreadable reply: {exc}"))
            self._transport.abort()
            return
        waiter = self._waiter
        if waiter is None or waiter.done():
            return
        if len(replies) >= self._expected or (
            self._until_error and replies and isinstance(replies[-1], Exception)
        ):
            waiter.set_result(None)

    def connection_lost(self, exc: Exception | None) -> None:
        self._fail(exc or RedisConnectionError("Connection closed by server."))
        if not self._closed.done():
            self._closed.set_result(None)

    def _timed_out(self) -> None:
        self._fail(RedisTimeoutError("no reply in time"))
        self._transport.abort()

    def _fail(self, exc: Exception) -> None:
        if self._lost is None:
            self._lost = exc
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            if not isinstance(exc, RedisTimeoutError | RedisConnectionError):
                exc = RedisConnectionError(f"connection lost: {exc}")
            waiter.set_exception(exc)

    def close(self) -> None:
        """Close the socket now (its last bytes are not waited for)."""
        self._transport.close()
        self._forget()  # after the close: the stream writer warns if collected open

    async def aclose(self) -> None:
        """Close the socket and wait until it is closed (a TLS shutdown included)."""
        self.close()
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(1.0):
                await asyncio.shield(self._closed)

    def _forget(self) -> None:
        # redis-py's connection no longer owns the socket: it must neither warn about it
        # when collected nor try to close it again.
        connection = self._connection
        connection._reader = connection._writer = None
