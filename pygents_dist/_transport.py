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

import asyncio
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

from pygents_dist._cluster import ClusterConnections
from pygents_dist._connections import Connections
from pygents_dist._keys import Keys
from pygents_dist._redis_errors import first_error
from pygents_dist._scripts import Scripts
from pygents_dist.errors import NotReplicatedError

__all__ = ["DURABILITY", "Entry", "Transport", "entries"]

#: The durability modes: ``"primary"`` (a write counts once the primary has it, as Redis
#: acknowledges it) and ``"replicated"`` (once a replica has confirmed it too, ``WAIT``).
DURABILITY = ("primary", "replicated")
#: How long a write waits for its replica's confirmation in the ``"replicated"`` mode.
_REPLICA_WAIT_MS = 2_000

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

    Whether the URL names a Redis Cluster node is asked of the server at the first round
    trip (``CLUSTER INFO``); on a cluster the other nodes are discovered from it and every
    command goes to the primary of its keys' slot (``_cluster.py``).

    Guarantees: the commands of one ``execute`` reach Redis in order in one write, with
    nothing of this process in between (on a cluster: those for one primary; those for
    different primaries run concurrently); a lost connection is retried (``retries`` times,
    with backoff; on a cluster, through a failover) and then raises ``ConnectionLostError``;
    an error reply raises ``RedisCommandError``. With ``durability="replicated"`` a round
    trip that writes returns only once a replica has its writes (else
    ``NotReplicatedError``); a Redis without replicas is refused at the first round trip.
    """

    def __init__(
        self,
        client: aioredis.Redis,
        keys: Keys,
        retries: int = 5,
        durability: str = "primary",
    ) -> None:
        if durability not in DURABILITY:
            raise ValueError(f"durability must be one of {DURABILITY}, got {durability!r}")
        self._redis = client
        self.keys = keys
        self.durability = durability
        pool = client.connection_pool
        self._single = Connections(pool, retries=retries, limit=pool.max_connections)
        self._connections = _Detecting(self, pool)
        self.scripts = Scripts(self._connections)
        #: The cluster's connections, once the first round trip found a cluster (else None).
        self.cluster: ClusterConnections | None = None

    @classmethod
    def from_url(
        cls, url: str, *, namespace: str = "", retries: int = 5, **options: Any
    ) -> Transport:
        """A transport for ``url`` (commands retried ``retries`` times with backoff).

        Raises:
            ValueError: redis-py cannot use the URL.
        """
        durability = options.pop("durability", "primary")
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
        return cls(client, Keys(namespace), retries, durability)

    async def aclose(self) -> None:
        """Close every connection."""
        await self._single.aclose()
        if self.cluster is not None:
            await self.cluster.aclose()
        await self._redis.aclose()

    async def is_cluster(self) -> bool:
        """Whether Redis is a cluster (asked of it at the first round trip)."""
        if not self._connections.known:
            await self._connections.detect()
        return self.cluster is not None

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

    async def scan(self, pattern: str, count: int = 500, kind: str = "") -> list[bytes]:
        """Every key matching ``pattern`` (of Redis type ``kind``, if given), by ``SCAN``
        (on a cluster, on every primary); a key may come twice."""
        found: list[bytes] = []
        if await self.is_cluster() and self.cluster is not None:
            for address in self.cluster.primaries():
                found += await self.cluster.scan(address, pattern, count, kind)
            return found
        cursor: bytes | int = 0
        typed = ("TYPE", kind) if kind else ()
        while True:
            command = ("SCAN", cursor, "MATCH", pattern, "COUNT", count, *typed)
            ((cursor, keys),) = await self.execute([command], "scan")
            found.extend(keys)
            if int(cursor) == 0:
                return found

    async def ping(self) -> None:
        """Check that Redis answers."""
        await self.execute([("PING",)], "ping")


class _Detecting:
    """A transport's connections: until the first round trip has asked Redis whether it is
    a cluster, then the single node's or the cluster's own ``execute`` (nothing in between
    on later calls)."""

    def __init__(self, transport: Transport, pool: aioredis.ConnectionPool) -> None:
        self._transport = transport
        self._pool = pool
        self._detected: asyncio.Task[None] | None = None
        #: Whether Redis was asked (and ``execute`` routes to match).
        self.known = False

    async def execute(
        self,
        commands: Sequence[Sequence[Any]],
        what: str,
        wait_ms: int = 0,
        *,
        until_error: bool = False,
    ) -> list[Any]:
        """``Connections.execute`` once Redis is known (see ``detect``)."""
        await self.detect(what)
        return await self.execute(commands, what, wait_ms, until_error=until_error)

    async def detect(self, what: str = "connect") -> None:
        """Ask Redis once whether it is a cluster, and route every later call to match
        (``what``: the operation that asks, named in errors)."""
        task = self._detected
        if task is None or (task.done() and task.exception() is not None):
            task = self._detected = asyncio.ensure_future(self._detect(what))
        await asyncio.shield(task)

    async def _detect(self, what: str) -> None:
        transport, single = self._transport, self._transport._single
        replicated = (1, _REPLICA_WAIT_MS) if transport.durability == "replicated" else None
        [info] = await single.execute([("CLUSTER", "INFO")], what)
        # A server without cluster support refuses CLUSTER INFO; so may an ACL (one node).
        if isinstance(info, bytes) and b"cluster_enabled:0" not in info:
            cluster = ClusterConnections(
                self._pool, limit=self._pool.max_connections, replicated=replicated
            )
            await cluster.refresh()
            if replicated is not None and (alone := await cluster.unreplicated()):
                raise NotReplicatedError(
                    f"durability='replicated' needs a replica of every primary; {alone} "
                    "primary(ies) of this cluster have none"
                )
            transport.cluster = cluster
            self.execute = cluster.execute  # type: ignore[method-assign]
            self.known = True
            return
        if replicated is not None:
            [role] = await single.execute([("INFO", "replication")], what)
            if isinstance(role, bytes) and b"connected_slaves:0" in role:
                raise NotReplicatedError(
                    "durability='replicated' needs a Redis with at least one replica; this "
                    "one has none (use durability='primary', or add a replica)"
                )
            single.replicated = replicated
        self.execute = single.execute  # type: ignore[method-assign]
        self.known = True

    async def aclose(self) -> None:
        """Nothing of its own: the transport closes what it made."""
