"""A private Redis Cluster on loopback ports (:class:`RedisCluster`): its nodes' processes,
the cluster's creation with ``redis-cli --cluster create``, a primary's crash and failover,
and live slot moves, for tests and benchmarks. Nothing runs in Docker."""

from __future__ import annotations

import binascii
import shutil
import socket
import subprocess
import tempfile
import time
import weakref
from pathlib import Path
from types import TracebackType
from typing import Any, Self

from pygents_dist.testing._ports import _LOCALHOST, free_port
from pygents_dist.testing._processes import _kill

__all__ = ["RedisCluster"]

_SLOTS = 16384


class _NodesReaper:
    """Kills every node and removes the cluster's directory (at close, collection or exit)."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.procs: dict[int, subprocess.Popen[bytes]] = {}

    def __call__(self) -> None:
        for proc in self.procs.values():
            _kill(proc)
        shutil.rmtree(self.directory, ignore_errors=True)


def command(port: int, *args: str | int, timeout: float = 5.0) -> Any:
    """Send one command to ``127.0.0.1:port`` and return its parsed RESP2 reply (an error
    reply is returned as a ``RuntimeError``, not raised).

    Raises:
        OSError: the node does not answer.
    """
    parts = [str(a).encode() for a in args]
    payload = b"*%d\r\n" % len(parts) + b"".join(b"$%d\r\n%s\r\n" % (len(p), p) for p in parts)
    with socket.create_connection((_LOCALHOST, port), timeout=timeout) as sock:
        sock.sendall(payload)
        reader = _Reader(sock)
        return reader.reply()


class _Reader:
    def __init__(self, sock: socket.socket) -> None:
        self._sock = sock
        self._buf = b""

    def _line(self) -> bytes:
        while b"\r\n" not in self._buf:
            chunk = self._sock.recv(65536)
            if not chunk:
                raise ConnectionError("connection closed")
            self._buf += chunk
        line, self._buf = self._buf.split(b"\r\n", 1)
        return line

    def _exact(self, size: int) -> bytes:
        while len(self._buf) < size + 2:
            chunk = self._sock.recv(65536)
            if not chunk:
                raise ConnectionError("connection closed")
            self._buf += chunk
        data, self._buf = self._buf[:size], self._buf[size + 2 :]
        return data

    def reply(self) -> Any:
        line = self._line()
        kind, rest = line[:1], line[1:]
        if kind == b"+":
            return rest.decode()
        if kind == b"-":
            return RuntimeError(rest.decode())
        if kind == b":":
            return int(rest)
        if kind == b"$":
            size = int(rest)
            return None if size < 0 else self._exact(size).decode(errors="replace")
        if kind == b"*":
            size = int(rest)
            return None if size < 0 else [self.reply() for _ in range(size)]
        raise ConnectionError(f"not RESP: {line!r}")


class RedisCluster:
    """A Redis Cluster of ``primaries`` primaries, each with ``replicas`` replicas, made of
    ``redis-server`` processes from ``PATH`` on free loopback ports, in one temporary
    directory.

    Example::

        with RedisCluster() as cluster:       # 3 primaries + 3 replicas, cluster_state:ok
            url = cluster.url                 # any node: clients discover the rest
            port = cluster.primary_of(b"{alice}")
            cluster.kill(port)                # SIGKILL a primary...
            cluster.wait_failover(port)       # ...until its replica serves its slots

    Nodes persist nothing (no RDB, no AOF): a killed node's data lives on in its replica only.
    Every process is killed and the directory removed by :meth:`close`, on leaving a ``with``
    block, when the object is garbage collected, and at interpreter exit.

    Args:
        primaries: how many primaries (at least 3, as ``redis-cli --cluster create`` wants).
        replicas: replicas per primary.
        node_timeout_ms: ``cluster-node-timeout``: how long a primary may be unreachable
            before its replica takes over (failover takes about twice this).
        startup_timeout: seconds :meth:`start` waits for ``cluster_state:ok``.
    """

    def __init__(
        self,
        *,
        primaries: int = 3,
        replicas: int = 1,
        node_timeout_ms: int = 1000,
        startup_timeout: float = 30.0,
    ) -> None:
        if primaries < 3:
            raise ValueError("a Redis Cluster needs at least 3 primaries")
        if replicas < 0:
            raise ValueError("replicas must be 0 or more")
        self.node_timeout_ms = node_timeout_ms
        self.startup_timeout = startup_timeout
        self._count = primaries * (1 + replicas)
        self._replicas = replicas
        self._dir = Path(tempfile.mkdtemp(prefix="pygents-cluster-"))
        self._reaper = _NodesReaper(self._dir)
        self._finalizer = weakref.finalize(self, self._reaper)
        self.ports: list[int] = []

    # -- facts

    @property
    def url(self) -> str:
        """``redis://`` URL of the first live node (clients discover the others)."""
        port = next((p for p in self.ports if self.is_running(p)), self.ports[0])
        return f"redis://{_LOCALHOST}:{port}/0"

    @property
    def directory(self) -> Path:
        """The directory holding every node's config, log and ``nodes.conf``."""
        return self._dir

    def pids(self, *, primaries: bool = False) -> list[int]:
        """The pids of the live nodes, or of the primaries serving slots only (for measuring
        their CPU)."""
        wanted = set(self.primaries()) if primaries else None
        return [
            proc.pid
            for port, proc in self._reaper.procs.items()
            if proc.poll() is None and (wanted is None or port in wanted)
        ]

    def is_running(self, port: int) -> bool:
        """Whether the node on ``port`` is alive."""
        proc = self._reaper.procs.get(port)
        return proc is not None and proc.poll() is None

    def nodes(self) -> list[dict[str, Any]]:
        """The live nodes as the cluster sees them: ``port``, ``id``, ``role``
        (``primary``/``replica``), ``primary`` (a replica's primary id), ``slots`` [(start,
        end)], ``failed`` (flagged fail by the cluster)."""
        text = self._ask(("CLUSTER", "NODES"))
        out = []
        for line in str(text).splitlines():
            parts = line.split()
            port = int(parts[1].split("@", 1)[0].rsplit(":", 1)[1])
            flags = parts[2].split(",")
            slots = []
            for part in parts[8:]:
                if part.startswith("["):
                    continue  # a slot being migrated or imported
                start, _, end = part.partition("-")
                slots.append((int(start), int(end or start)))
            out.append(
                {
                    "port": port,
                    "id": parts[0],
                    "role": "primary" if "master" in flags else "replica",
                    "primary": None if parts[3] == "-" else parts[3],
                    "slots": slots,
                    "failed": "fail" in flags or "fail?" in flags,
                }
            )
        return out

    def primaries(self) -> list[int]:
        """Ports of the live primaries that serve slots."""
        return sorted(
            n["port"]
            for n in self.nodes()
            if n["role"] == "primary" and n["slots"] and not n["failed"]
        )

    @staticmethod
    def slot(key: bytes | str) -> int:
        """The cluster slot of ``key`` (its ``{hash tag}`` if it has one)."""
        data = key.encode() if isinstance(key, str) else key
        start = data.find(b"{")
        if start >= 0:
            end = data.find(b"}", start + 1)
            if end > start + 1:
                data = data[start + 1 : end]
        return binascii.crc_hqx(data, 0) % _SLOTS

    def primary_of(self, key: bytes | str) -> int:
        """The port of the primary serving ``key``'s slot now."""
        slot = self.slot(key)
        for node in self.nodes():
            serves = any(start <= slot <= end for start, end in node["slots"])
            if node["role"] == "primary" and not node["failed"] and serves:
                return int(node["port"])
        raise LookupError(f"no live primary serves slot {slot}")

    # -- life cycle

    def start(self) -> Self:
        """Start every node, create the cluster and return once every node says
        ``cluster_state:ok``.

        Raises:
            RuntimeError: a node exited, or ``redis-cli --cluster create`` failed.
            TimeoutError: the cluster was not ok within ``startup_timeout``.
        """
        if self.ports:
            raise RuntimeError("the cluster was started already")
        for _ in range(self._count):
            self.ports.append(self._spawn_fresh())
        created = subprocess.run(
            [
                "redis-cli",
                "--cluster",
                "create",
                *[f"{_LOCALHOST}:{p}" for p in self.ports],
                "--cluster-replicas",
                str(self._replicas),
                "--cluster-yes",
            ],
            capture_output=True,
            timeout=self.startup_timeout,
            check=False,
        )
        if created.returncode != 0:
            raise RuntimeError(f"redis-cli --cluster create failed:\n{created.stdout.decode()}")
        self.wait_ok()
        return self

    def _spawn_fresh(self) -> int:
        """Start a node on a free port and wait until it answers; its port. (Another
        process may take a port between ``free_port`` and the bind: try another one.)"""
        for _ in range(5):
            port = free_port()
            self._spawn(port)
            proc = self._reaper.procs[port]
            deadline = time.monotonic() + self.startup_timeout
            while proc.poll() is None and time.monotonic() < deadline:
                try:
                    if command(port, "PING", timeout=0.5) == "PONG":
                        return port
                except OSError:
                    time.sleep(0.02)
            _kill(proc)
            del self._reaper.procs[port]
        raise RuntimeError(f"no node would start; see the logs in {self._dir}")

    def _spawn(self, port: int) -> None:
        node_dir = self._dir / str(port)
        node_dir.mkdir(exist_ok=True)
        conf = node_dir / "redis.conf"
        conf.write_text(
            "\n".join(
                [
                    f"port {port}",
                    f"bind {_LOCALHOST}",
                    "protected-mode no",
                    "daemonize no",
                    f'dir "{node_dir}"',
                    'logfile ""',
                    'save ""',
                    "appendonly no",
                    "cluster-enabled yes",
                    f"cluster-node-timeout {self.node_timeout_ms}",
                    "cluster-config-file nodes.conf",
                    # a replica may take over however long ago it last heard its primary
                    "cluster-replica-validity-factor 0",
                    "cluster-allow-replica-migration no",
                    "repl-diskless-sync-delay 0",  # a replica syncs at once, not after 5 s
                ]
            )
            + "\n"
        )
        with (node_dir / "redis.log").open("ab") as log:
            self._reaper.procs[port] = subprocess.Popen(
                ["redis-server", str(conf)],
                cwd=node_dir,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
            )

    def _ask(self, args: tuple[str | int, ...]) -> Any:
        """``args`` answered by some live node."""
        last: Exception | None = None
        for port in self.ports:
            if not self.is_running(port):
                continue
            try:
                return command(port, *args)
            except OSError as exc:
                last = exc
        raise RuntimeError(f"no node answers: {last}")

    def _wait(self, done: Any, what: str, timeout: float | None = None) -> None:
        deadline = time.monotonic() + (timeout or self.startup_timeout)
        while True:
            try:
                if done():
                    return
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise TimeoutError(f"waited in vain for {what}")
            time.sleep(0.05)

    def _state_ok(self) -> bool:
        for port in self.ports:
            if not self.is_running(port):
                continue
            info = command(port, "CLUSTER", "INFO")
            if "cluster_state:ok" not in str(info):
                return False
            role = str(command(port, "INFO", "replication"))
            if "role:slave" in role and "master_link_status:up" not in role:
                return False  # a replica still syncing is not a failover target yet
        covered: int = sum(
            end - start + 1
            for p in self.nodes()
            if p["role"] == "primary" and not p["failed"]
            for start, end in p["slots"]
        )
        return covered == _SLOTS

    def wait_ok(self, timeout: float | None = None) -> None:
        """Wait until every live node says ``cluster_state:ok`` and live primaries serve
        every slot.

        Raises:
            TimeoutError: not within ``timeout`` (default ``startup_timeout``) seconds.
        """
        self._wait(self._state_ok, "cluster_state:ok", timeout)

    def kill(self, port: int) -> None:
        """SIGKILL the node on ``port`` (a crash) and reap it."""
        proc = self._reaper.procs.get(port)
        if proc is not None:
            _kill(proc)

    def wait_failover(self, port: int, timeout: float | None = None) -> float:
        """After :meth:`kill` of a primary: wait until another primary serves its slots and
        the cluster is ok again; the seconds it took.

        Raises:
            TimeoutError: not within ``timeout`` (default ``startup_timeout``) seconds.
        """
        started = time.monotonic()

        def replaced() -> bool:
            nodes = self.nodes()
            gone = [n for n in nodes if n["port"] == port]
            return (
                bool(gone)
                and not (
                    gone[0]["role"] == "primary" and gone[0]["slots"] and not gone[0]["failed"]
                )
                and self._state_ok()
            )

        self._wait(replaced, f"a replica to take over from {port}", timeout)
        return time.monotonic() - started

    def restart(self, port: int) -> None:
        """Start the node on ``port`` again (a killed primary comes back as a replica of the
        node that replaced it) and wait until the cluster is ok."""
        if self.is_running(port):
            raise RuntimeError(f"node {port} is running")
        self._spawn(port)
        self._wait(lambda: command(port, "PING") == "PONG", f"node {port} to answer")
        self.wait_ok()

    def move_slot(self, slot: int, to_port: int, batch: int = 100) -> None:
        """Move ``slot`` with its keys to the primary on ``to_port``, live, as
        ``redis-cli --cluster reshard`` does: SETSLOT IMPORTING/MIGRATING, MIGRATE the keys
        in batches (clients meanwhile get ``ASK``), then SETSLOT NODE on every primary
        (``MOVED`` from then on)."""
        nodes = self.nodes()
        source = next(
            n
            for n in nodes
            if n["role"] == "primary" and any(s <= slot <= e for s, e in n["slots"])
        )
        target = next(n for n in nodes if n["port"] == to_port)
        if source["port"] == to_port:
            return
        command(to_port, "CLUSTER", "SETSLOT", slot, "IMPORTING", source["id"])
        command(source["port"], "CLUSTER", "SETSLOT", slot, "MIGRATING", target["id"])
        while True:
            keys = command(source["port"], "CLUSTER", "GETKEYSINSLOT", slot, batch)
            if not keys:
                break
            got = command(
                source["port"], "MIGRATE", _LOCALHOST, to_port, "", 0, 5000, "KEYS", *keys
            )
            if isinstance(got, RuntimeError):
                raise got
        for node in nodes:
            if node["role"] == "primary" and not node["failed"]:
                command(node["port"], "CLUSTER", "SETSLOT", slot, "NODE", target["id"])

    def close(self) -> None:
        """Kill every node and delete the directory; idempotent."""
        self._finalizer()

    def __enter__(self) -> Self:
        if not self.ports:
            self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"RedisCluster({len(self.ports)} nodes, {self._dir})"
