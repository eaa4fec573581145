"""Redis access for one process: the connections, the scripts, and running commands on them.

The Redis plumbing is three modules: ``_connections.py`` (pipelined round trips on sockets
redis-py connected), ``_scripts.py`` (the Lua scripts) and this one, which builds both from a
URL and is the only holder of a redis-py client (kept to make and close the connection pool).
Error replies and lost connections leave this layer translated by ``_redis_errors.py``.

The operations themselves (sending turns, leases, batches, replies, dead letters, control)
are small modules of functions over a ``Transport``: ``_streams.py``, ``_directory.py``,
``_leases.py``, ``_batches.py``, ``_replies.py``, ``_dead_letters.py``, ``_control.py`` and
``_lock.py``.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import redis.asyncio as aioredis

try:
    import hiredis
except ImportError:  # pragma: no cover - redis[hiredis] is a dependency
    hiredis = None  # type: ignore[assignment]
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from pygents_dist._connections import Connections
from pygents_dist._keys import Keys
from pygents_dist._redis_errors import first_error
from pygents_dist._scripts import Scripts

__all__ = ["Entry", "Transport", "entries"]

#: A stream entry: (entry id, {field: value}) with bytes throughout.
type Entry = tuple[bytes, dict[bytes, bytes]]


def entries(raw: Any) -> list[Entry]:
    """Stream entries from a raw ``XRANGE``/``XREAD`` reply (fields as a flat list)."""
    out: list[Entry] = []
    for item in raw or ():
        entry_id, fields = item[0], item[1]
        if isinstance(fields, list):
            fields = dict(zip(fields[::2], fields[1::2], strict=False))
        out.append((entry_id, fields or {}))
    return out


def _hiredis_packing(base: type[Any]) -> type[Any]:
    """``base`` (a redis-py asyncio connection class) packing commands with hiredis's C
    packer, as redis-py's sync client does: its asyncio connections pack in Python, which
    costs more than the rest of a pipelined command. Values hiredis does not take (bool,
    bytearray) go through redis-py's packer and its errors."""

    class HiredisPacking(base):  # type: ignore[misc]
        def pack_command(self, *args: Any) -> list[bytes]:
            first = args[0]
            if isinstance(first, str):
                args = (*first.encode().split(), *args[1:])
            elif b" " in first:
                args = (*first.split(), *args[1:])
            try:
                return [hiredis.pack_command(args)]
            except TypeError:
                packed: list[bytes] = super().pack_command(*args)
                return packed

        def pack_commands(self, commands: Iterable[Sequence[Any]]) -> list[bytes]:
            return [b"".join([chunk for cmd in commands for chunk in self.pack_command(*cmd)])]

    HiredisPacking.__name__ = HiredisPacking.__qualname__ = f"HiredisPacking{base.__name__}"
    return HiredisPacking


class Transport:
    """Redis access for one process: a connection pool, the scripts, the key names.

    Example::

        transport = Transport.from_url("redis://localhost:6379/0", namespace="demo")
        await transport.ping()
        [length] = await transport.execute([("XLEN", transport.keys.dead)], "dlq")
        await transport.aclose()

    ``from_url`` accepts ``redis://``, ``rediss://`` (TLS) and ``unix://`` URLs with user and
    password; ``ssl_ca_certs`` and friends pass through to redis-py. One transport may be
    shared by any number of clients and workers of one event loop (``Client(transport=...)``,
    ``Worker(..., transport=...)``); whoever made it closes it.

    Guarantees: the commands of one ``execute`` reach Redis in order in one write, with
    nothing of this process in between; a lost connection is retried (``retries`` times, with
    backoff) and then raises ``ConnectionLostError``; an error reply raises
    ``RedisCommandError``.
    """

    def __init__(self, client: aioredis.Redis, keys: Keys, retries: int = 5) -> None:
        self._redis = client
        self.keys = keys
        pool = client.connection_pool
        self._connections = Connections(pool, retries=retries, limit=pool.max_connections)
        self.scripts = Scripts(self._connections)

    @classmethod
    def from_url(
        cls, url: str, *, namespace: str = "", retries: int = 5, **options: Any
    ) -> Transport:
        """A transport for ``url`` (commands retried ``retries`` times with backoff).

        Raises:
            ValueError: redis-py cannot use the URL.
        """
        retry = Retry(ExponentialBackoff(cap=1.0, base=0.02), retries)
        client = aioredis.Redis.from_url(
            url,
            retry=retry,
            retry_on_error=[RedisConnectionError, RedisTimeoutError],
            health_check_interval=15,
            socket_keepalive=True,
            max_connections=options.pop("max_connections", 256),
            **options,
        )
        pool = client.connection_pool
        if hiredis is not None:
            pool.connection_class = _hiredis_packing(pool.connection_class)
        return cls(client, Keys(namespace), retries)

    async def aclose(self) -> None:
        """Close every connection."""
        await self._connections.aclose()
        await self._redis.aclose()

    async def execute(
        self, commands: Sequence[Sequence[Any]], what: str, wait_ms: int = 0
    ) -> list[Any]:
        """Run ``commands`` in one round trip; their replies (RESP2 shapes, bytes).

        ``wait_ms``: the longest a blocking command among them waits. ``what`` names the
        operation in errors.

        Raises:
            ConnectionLostError: Redis stayed unreachable through the retries.
            RedisCommandError: a command got an error reply (the first such is raised, after
                every command ran).
        """
        results = await self._connections.execute(commands, what, wait_ms)
        first_error(results, what)
        return results

    async def execute_raw(
        self,
        commands: Sequence[Sequence[Any]],
        what: str,
        wait_ms: int = 0,
        *,
        until_error: bool = False,
    ) -> list[Any]:
        """``execute``, but error replies are returned in their commands' places (as
        redis-py's exceptions) for a caller to whom one is part of the protocol; see
        ``Connections.execute`` for ``until_error``. Pass the rest to
        ``_redis_errors.first_error``."""
        return await self._connections.execute(commands, what, wait_ms, until_error=until_error)

    async def ping(self) -> None:
        """Check that Redis answers."""
        await self.execute([("PING",)], "ping")
