"""Redis Cluster: commands routed to the primary that serves their keys' slot, redirects and
failovers followed.

``ClusterConnections`` has the interface of ``Connections`` (``execute``, ``aclose``) and holds
one ``Connections`` per primary, made from the seed pool's settings (so TLS, user and password
work as on one node). A round trip becomes one pipeline per primary, sent concurrently: the
commands for one primary keep their order, those for different primaries run independently.
Every caller that needs a cross-slot order (a lease recorded before the take, a turn appended
before its signal) sends the steps in separate round trips (``_leases.py``, ``_streams.py``).

A command's slot is its first key's (the hash tag if it has one; ``EVALSHA`` its first KEY,
``XREAD`` its first stream). This module is where cluster replies are handled, in one place:

- ``MOVED``: the slot map is read again (``CLUSTER SLOTS``) and the command sent where it
  says; ``ASK`` (a slot being migrated): the command goes to the named node behind
  ``ASKING``, once;
- ``TRYAGAIN``, ``CLUSTERDOWN``, ``LOADING``, ``MASTERDOWN``, ``READONLY`` and a lost
  connection (a primary failing over): the map is read again after a backoff and the
  commands sent again, for up to ``FAILOVER_BUDGET_S`` seconds (a failover takes about
  twice ``cluster-node-timeout``), then ``ConnectionLostError``.

Commands resent after a lost connection may have run already: as on one node, every round
trip must tolerate running twice (``Connections``).
"""

from __future__ import annotations

import asyncio
import binascii
import contextlib
import time
from collections.abc import Sequence
from typing import Any

from redis.asyncio.connection import ConnectionPool

from pygents_dist._connections import Connections
from pygents_dist._redis_errors import CONNECTION_ERRORS, cluster_redirect, first_error, lost
from pygents_dist.errors import ConnectionLostError

__all__ = ["FAILOVER_BUDGET_S", "SLOTS", "ClusterConnections", "key_slot"]

SLOTS = 16384
#: The longest a round trip keeps retrying through redirects and failovers.
FAILOVER_BUDGET_S = 30.0
_BACKOFF_BASE = 0.02
_BACKOFF_CAP = 0.5
#: Commands whose key is their third word (a subcommand comes first).
_SUBCOMMAND_KEYED = frozenset({b"XGROUP", b"XINFO", b"OBJECT", b"MEMORY"})
_SCRIPTED = frozenset({b"EVALSHA", b"EVAL", b"EVALSHA_RO", b"EVAL_RO", b"FCALL", b"FCALL_RO"})
_STREAM_READS = frozenset({b"XREAD", b"XREADGROUP"})
#: Keyless commands sent to every primary (the script cache is per node).
_BROADCAST = frozenset({b"SCRIPT", b"FUNCTION"})
_KEYLESS = frozenset({b"PING", b"INFO", b"CLUSTER", b"WAIT", b"ASKING", b"ROLE", b"TIME"})
type _Address = tuple[str, int]
#: Keys whose slots ``_target`` remembers.
_SLOTS_CACHED = 100_000


def key_slot(key: bytes | str) -> int:
    """The cluster slot of ``key``: CRC16 of its ``{hash tag}`` (if it has a non-empty one)
    or of the whole key, modulo 16384."""
    data = key.encode() if isinstance(key, str) else bytes(key)
    start = data.find(b"{")
    if start >= 0:
        end = data.find(b"}", start + 1)
        if end > start + 1:
            data = data[start + 1 : end]
    return binascii.crc_hqx(data, 0) % SLOTS


#: Where the key is in the usual commands (looked up by the name object as sent).
_KEY_AT: dict[Any, int] = {
    name: 1
    for word in [
        *("XADD", "XACK", "XDEL", "XLEN", "XRANGE", "XREVRANGE", "XPENDING", "GET", "SET"),
        *("DEL", "HGET", "HSET", "HMGET", "HDEL", "HGETALL", "HEXISTS", "HSETNX", "ZADD"),
        *("ZREM", "ZRANGEBYSCORE", "ZSCORE", "PEXPIRE", "EXISTS"),
    ]
    for name in (word, word.encode())
}


def _word(part: Any) -> bytes:
    return part.upper() if isinstance(part, bytes) else str(part).upper().encode()


def _command_key(command: Sequence[Any]) -> Any:
    """The key that decides where ``command`` goes; None for a keyless command."""
    at = _KEY_AT.get(command[0])
    if at is not None:  # the usual commands, by their exact name
        return command[at]
    if command[0] == "EVALSHA":  # the scripts: their first KEY
        return command[3] if int(command[2]) > 0 else None
    name = _word(command[0])
    if b" " in name:  # "XGROUP CREATE" packed as one word: its words count as two
        return _command_key([*name.split(), *command[1:]])
    if name in _SCRIPTED:
        return command[3] if int(command[2]) > 0 else None
    if name in _STREAM_READS:
        for i, part in enumerate(command):
            if _word(part) == b"STREAMS":
                return command[i + 1]
        return None
    if name in _SUBCOMMAND_KEYED:
        return command[2] if len(command) > 2 else None
    if name in _KEYLESS or name in _BROADCAST or len(command) < 2:
        return None
    return command[1]


class ClusterConnections:
    """Connections to every primary of a Redis Cluster, found from one seed node.

    Example::

        cluster = ClusterConnections(seed_pool, limit=256)
        await cluster.refresh()
        [length] = await cluster.execute([("XLEN", "pyg1:{alice}:turns")], "backlog")

    Guarantees: the commands one ``execute`` sends to one primary go out in order in one
    write; redirects and failovers are followed for up to ``FAILOVER_BUDGET_S`` seconds.
    Limits: commands for different primaries run concurrently, in no set order.
    """

    def __init__(
        self, seed: ConnectionPool, *, limit: int, replicated: tuple[int, int] | None = None
    ) -> None:
        self.replicated = replicated
        self._seed = seed
        self._limit = limit
        kwargs = seed.connection_kwargs
        self._seed_address: _Address = (
            str(kwargs.get("host", "localhost")),
            int(kwargs.get("port", 6379)),
        )
        self._nodes: dict[_Address, Connections] = {}
        self._slots: list[_Address] = []
        self._refreshing: asyncio.Task[None] | None = None
        self._slot_of: dict[Any, int] = {}

    # -- topology

    def primaries(self) -> list[_Address]:
        """The primaries serving slots, as last read."""
        return sorted(set(self._slots))

    def address_of(self, key: bytes | str) -> _Address:
        """The primary serving ``key``'s slot, as last read."""
        return self._slots[key_slot(key)]

    def _node(self, address: _Address) -> Connections:
        node = self._nodes.get(address)
        if node is None:
            host, port = address
            pool = ConnectionPool(
                connection_class=self._seed.connection_class,
                **{**self._seed.connection_kwargs, "host": host, "port": port},
            )
            # No retries of its own: a lost node is a question for the slot map (failover).
            node = self._nodes[address] = Connections(pool, retries=0, limit=self._limit)
            node.replicated = self.replicated
        return node

    async def health(self) -> dict[str, Any]:
        """The cluster as one node sees it: ``state`` (``ok``/``fail``) and ``nodes``, each
        ``{node, role, replicas (of a primary), slots (count), failed}``."""
        info, text = await self.execute([("CLUSTER", "INFO"), ("CLUSTER", "NODES")], "health")
        fields = dict(
            line.split(":", 1) for line in bytes(info).decode().splitlines() if ":" in line
        )
        nodes: list[dict[str, Any]] = []
        replicas: dict[str, int] = {}
        ids: dict[str, dict[str, Any]] = {}
        for line in bytes(text).decode().splitlines():
            parts = line.split()
            flags = parts[2].split(",")
            slots = 0
            for part in parts[8:]:
                if not part.startswith("["):
                    start, _, end = part.partition("-")
                    slots += int(end or start) - int(start) + 1
            node = {
                "node": parts[1].split("@", 1)[0],
                "role": "primary" if "master" in flags else "replica",
                "slots": slots,
                "failed": "fail" in flags or "fail?" in flags,
            }
            if "slave" in flags and not node["failed"]:
                replicas[parts[3]] = replicas.get(parts[3], 0) + 1
            ids[parts[0]] = node
            nodes.append(node)
        for node_id, node in ids.items():
            if node["role"] == "primary":
                node["replicas"] = replicas.get(node_id, 0)
        nodes.sort(key=lambda n: (n["role"] != "primary", n["node"]))
        return {"state": fields.get("cluster_state", "?").strip(), "nodes": nodes}

    async def unreplicated(self) -> int:
        """How many primaries serving slots have no replica (``CLUSTER NODES``: ``CLUSTER
        SLOTS`` leaves out a replica that has not received a write yet)."""
        (text,) = await self.execute([("CLUSTER", "NODES")], "cluster nodes")
        serving, copied = set(), set()
        for line in bytes(text).decode().splitlines():
            parts = line.split()
            flags = parts[2].split(",")
            if "fail" in flags:
                continue
            if "master" in flags and len(parts) > 8:
                serving.add(parts[0])
            elif "slave" in flags:
                copied.add(parts[3])
        return len(serving - copied)

    async def refresh(self) -> None:
        """Read the slot map again (one refresh at a time; callers share it)."""
        task = self._refreshing
        if task is None or task.done():
            task = self._refreshing = asyncio.ensure_future(self._read_slots())
        await asyncio.shield(task)

    async def _read_slots(self) -> None:
        known = [*dict.fromkeys([*self.primaries(), *self._nodes, self._seed_address])]
        last: BaseException | None = None
        for address in known:
            try:
                (reply,) = await self._node(address).execute([("CLUSTER", "SLOTS")], "slots")
            except (ConnectionLostError, *CONNECTION_ERRORS) as exc:
                last = exc
                continue
            if isinstance(reply, Exception):
                last = reply
                continue
            slots: list[_Address] = [self._seed_address] * SLOTS
            covered = 0
            for entry in reply:
                start, end, primary = int(entry[0]), int(entry[1]), entry[2]
                host = primary[0].decode() if primary[0] else address[0]
                for slot in range(start, end + 1):
                    slots[slot] = (host, int(primary[1]))
                covered += end - start + 1
            if covered < SLOTS:  # a node mid-failover: its slots are not served yet
                last = ConnectionLostError(f"{SLOTS - covered} slots without a primary")
                if self._slots:
                    continue
            self._slots = slots
            return
        raise lost(last or RuntimeError("no node"), "reading the cluster's slot map")

    # -- running commands

    async def execute(
        self,
        commands: Sequence[Sequence[Any]],
        what: str,
        wait_ms: int = 0,
        *,
        until_error: bool = False,
    ) -> list[Any]:
        """``Connections.execute`` over the cluster: each command on the primary of its
        slot (keyless ones on the first primary; ``SCRIPT``/``FUNCTION`` on every one),
        their replies in the commands' order.

        Raises:
            ConnectionLostError: the cluster did not serve the commands within
                ``FAILOVER_BUDGET_S`` seconds.
        """
        if not self._slots:
            await self.refresh()
        # The common case first: every command on one primary, no redirect, no failure.
        first = self._target(commands[0])
        if first is not None and all(self._target(c) == first for c in commands[1:]):
            try:
                replies = await self._node(first).execute(
                    commands, what, wait_ms, until_error=until_error
                )
            except (ConnectionLostError, *CONNECTION_ERRORS):
                pass  # failing over? the general way below finds out
            else:
                if not any(cluster_redirect(reply) for reply in replies):
                    return replies
        results: list[Any] = [_NO_REPLY] * len(commands)
        todo = list(range(len(commands)))
        asked: dict[int, _Address] = {}
        deadline = time.monotonic() + FAILOVER_BUDGET_S + wait_ms / 1000
        failures = 0
        while todo:
            groups: dict[_Address, list[int]] = {}
            for i in todo:
                for address in self._targets(commands[i], asked.get(i)):
                    groups.setdefault(address, []).append(i)
            runs = [
                self._run(
                    address,
                    [commands[i] for i in indices],
                    indices,
                    asked,
                    what,
                    wait_ms,
                    until_error,
                )
                for address, indices in groups.items()
            ]
            # one primary: no task to make (gather wraps each coroutine in one)
            outcomes = [await runs[0]] if len(runs) == 1 else await asyncio.gather(*runs)
            again: list[int] = []
            backoff = stale = False
            problem: BaseException | None = None
            for indices, outcome in zip(groups.values(), outcomes, strict=True):
                if isinstance(outcome, BaseException):  # the node is gone: failing over?
                    again += indices
                    backoff = stale = True
                    problem = outcome
                    continue
                for i, reply in zip(indices, outcome, strict=False):
                    redirect = cluster_redirect(reply)
                    if redirect is None:
                        if results[i] is _NO_REPLY or not isinstance(reply, Exception):
                            results[i] = reply  # a broadcast keeps its first good reply
                        continue
                    code, target = redirect
                    again.append(i)
                    problem = reply
                    if code == "ASK" and target is not None:
                        asked[i] = target
                    else:
                        asked.pop(i, None)
                        stale = True
                        backoff = backoff or code != "MOVED"
                if until_error and len(outcome) < len(indices):
                    # Cut short by an error reply: what it cut off did not run.
                    if outcome and cluster_redirect(outcome[-1]) is not None:
                        again += indices[len(outcome) :]
                    else:
                        return _until_missing(results)
            todo = sorted(set(again))
            if not todo:
                break
            failures += 1
            if time.monotonic() > deadline:
                raise lost(problem or RuntimeError("no reply"), what)
            if backoff:
                await asyncio.sleep(min(_BACKOFF_CAP, _BACKOFF_BASE * 2**failures))
            if stale:
                # Every node known may be down for now: the next round tries again.
                with contextlib.suppress(ConnectionLostError):
                    await self.refresh()
        return _until_missing(results) if until_error else results

    def _target(self, command: Sequence[Any]) -> _Address | None:
        """The primary of ``command``'s slot (None for a keyless one). Slots of recent keys
        are remembered: most commands name the same few keys again and again."""
        key = _command_key(command)
        if key is None:
            return None
        slot = self._slot_of.get(key)
        if slot is None:
            if len(self._slot_of) >= _SLOTS_CACHED:
                self._slot_of.clear()
            slot = self._slot_of[key] = key_slot(key)
        return self._slots[slot]

    def _targets(self, command: Sequence[Any], asked: _Address | None) -> list[_Address]:
        if asked is not None:
            return [asked]
        target = self._target(command)
        if target is not None:
            return [target]
        if _word(command[0]).split()[0] in _BROADCAST:
            return self.primaries()
        return [self._slots[0]]

    async def _run(
        self,
        address: _Address,
        commands: list[Sequence[Any]],
        indices: list[int],
        asked: dict[int, _Address],
        what: str,
        wait_ms: int,
        until_error: bool,
    ) -> list[Any] | BaseException:
        """One primary's share of a round trip; its replies, or the exception that lost it."""
        asking = [i for i in indices if i in asked]
        sent: list[Sequence[Any]] = []
        for i, command in zip(indices, commands, strict=True):
            if i in asking:
                sent.append(("ASKING",))
            sent.append(command)
        try:
            replies = await self._node(address).execute(
                sent, what, wait_ms, until_error=until_error
            )
        except (ConnectionLostError, *CONNECTION_ERRORS) as exc:
            return exc
        if not asking:
            return replies
        out, at = [], 0
        for i in indices:
            if i in asking:
                at += 1  # ASKING's +OK
            if at >= len(replies):
                break
            out.append(replies[at])
            at += 1
        return out

    async def execute_on(
        self, address: _Address, commands: Sequence[Sequence[Any]], what: str
    ) -> list[Any]:
        """``commands`` on the primary at ``address`` (a keyless command such as ``SCAN``
        that is about that primary's keys); error replies raised.

        Raises:
            ConnectionLostError: the node did not answer.
            RedisCommandError: an error reply.
        """
        replies = await self._node(address).execute(commands, what)
        first_error(replies, what)
        return replies

    async def scan(
        self, address: _Address, pattern: str, count: int, kind: str = ""
    ) -> list[bytes]:
        """The keys matching ``pattern`` (of type ``kind``, if given) on the primary at
        ``address`` (``SCAN``).

        Raises:
            ConnectionLostError: the node did not answer.
        """
        found: list[bytes] = []
        cursor: bytes | int = 0
        while True:
            typed = ("TYPE", kind) if kind else ()
            command = ("SCAN", cursor, "MATCH", pattern, "COUNT", count, *typed)
            ((cursor, keys),) = await self.execute_on(address, [command], "scan")
            found.extend(keys)
            if int(cursor) == 0:
                return found

    async def aclose(self) -> None:
        """Close every node's idle connections."""
        for node in self._nodes.values():
            await node.aclose()


class _NoReply:
    """Placeholder of a command that got no reply (cut short)."""


_NO_REPLY: Any = _NoReply()


def _until_missing(results: list[Any]) -> list[Any]:
    for i, got in enumerate(results):
        if got is _NO_REPLY:
            return results[:i]
    return results
