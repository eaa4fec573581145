"""Real Redis servers, network faults and worker processes for tests and benchmarks.

Nothing here is a fake: :class:`RedisServer` runs ``redis-server`` from ``PATH``,
:class:`TcpProxy` sits on a real socket between a client and Redis, and :class:`WorkerProcess`
runs ``python -m pygents_dist worker`` as a child process. Every object that starts a process
kills it when closed, when garbage collected, and at interpreter exit, so a failing test never
leaks one. This module imports only the standard library (``testcontainers`` is imported only
when :func:`resolve_redis` decides to start a container).

The pytest fixtures built on these live in :mod:`pygents_dist.pytest_plugin`.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import os
import re
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import threading
import time
import warnings
import weakref
from collections.abc import Callable, Coroutine, Iterable, Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import IO, Literal, Protocol, Self
from urllib.parse import quote, urlsplit, urlunsplit

__all__ = [
    "ContainerRedis",
    "ExternalRedis",
    "RedisEndpoint",
    "RedisServer",
    "TcpProxy",
    "WorkerPool",
    "WorkerProcess",
    "docker_available",
    "free_port",
    "resolve_redis",
]

_LOCALHOST = "127.0.0.1"


def free_port(host: str = _LOCALHOST) -> int:
    """Return a TCP port that is free on ``host`` right now.

    The port is released before returning, so another process may take it before the caller
    binds it; :class:`RedisServer` retries with a new port when that happens.
    """
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
        return port


class _Reaper:
    """Kills a child and removes a directory; run at close, garbage collection or exit."""

    def __init__(self, directory: Path | None = None) -> None:
        self.proc: subprocess.Popen[bytes] | None = None
        self.directory = directory

    def __call__(self) -> None:
        if self.proc is not None:
            _kill(self.proc)
        if self.directory is not None:
            shutil.rmtree(self.directory, ignore_errors=True)


def _kill(proc: subprocess.Popen[bytes]) -> None:
    """SIGKILL the child and reap it.

    Children stay in the caller's process group, so a signal to the whole test run (Ctrl-C, a
    CI runner stopping it) reaches them too, even when no cleanup code gets to run.
    """
    if proc.poll() is None:
        proc.kill()
    proc.wait()


# --- Redis ------------------------------------------------------------------------------------


class RedisEndpoint(Protocol):
    """A Redis to test against, whatever started it: has a URL and is closed after use."""

    @property
    def url(self) -> str:
        """The ``redis://`` or ``rediss://`` URL of the server."""
        ...

    def close(self) -> None:
        """Release the server (stop what was started; leave alone what was not)."""
        ...


class ExternalRedis:
    """A Redis given by URL (``REDIS_URL``) that this process did not start and never stops."""

    kind: Literal["env"] = "env"

    def __init__(self, url: str) -> None:
        """Wrap ``url``; nothing is contacted."""
        self._url = url

    @property
    def url(self) -> str:
        """The URL as given."""
        return self._url

    def close(self) -> None:
        """Do nothing: the server belongs to someone else."""

    def __repr__(self) -> str:
        return f"ExternalRedis({self._url!r})"


def _quote_conf(value: str) -> str:
    """Quote a value for a redis.conf line (redis parses it with ``sdssplitargs``)."""
    if any(ord(ch) < 32 or ord(ch) == 127 for ch in value):
        raise ValueError(f"control characters are not supported in redis.conf values: {value!r}")
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


_CA_CONF = """\
[req]
distinguished_name = dn
prompt = no
x509_extensions = v3_ca
[dn]
CN = pygents_dist test CA
[v3_ca]
basicConstraints = critical, CA:TRUE
keyUsage = critical, keyCertSign, cRLSign
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid:always
"""

_SERVER_EXT = """\
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature, keyEncipherment
extendedKeyUsage = serverAuth
subjectAltName = IP:127.0.0.1, DNS:localhost
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid
"""


def _openssl(args: str, cwd: Path) -> None:
    cmd = ["openssl", *args.split()]
    done = subprocess.run(cmd, cwd=cwd, capture_output=True, timeout=30, check=False)
    if done.returncode != 0:
        err = done.stderr.decode(errors="replace")
        raise RuntimeError(f"{' '.join(cmd)} failed ({done.returncode}): {err}")


def _make_tls_files(directory: Path) -> None:
    """Write a throwaway CA (ca.crt) and a server cert for 127.0.0.1/localhost it signed."""
    (directory / "ca.cnf").write_text(_CA_CONF)
    (directory / "server.ext").write_text(_SERVER_EXT)
    key = "-newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -noenc"
    _openssl(f"req -x509 -new -config ca.cnf {key} -keyout ca.key -out ca.crt -days 2", directory)
    _openssl(
        f"req -new -config ca.cnf -subj /CN=localhost {key} -keyout server.key -out server.csr",
        directory,
    )
    serial = int.from_bytes(os.urandom(8), "big")
    _openssl(
        f"x509 -req -in server.csr -CA ca.crt -CAkey ca.key -set_serial {serial} -days 2"
        " -extfile server.ext -out server.crt",
        directory,
    )


def _resp(*parts: str) -> bytes:
    out = [f"*{len(parts)}\r\n".encode()]
    for part in parts:
        data = part.encode()
        out.append(b"$%d\r\n%s\r\n" % (len(data), data))
    return b"".join(out)


class RedisServer:
    """A private ``redis-server`` on a free loopback port, in its own temporary directory.

    The server listens on 127.0.0.1 only, with protected mode off. Without ``appendonly`` it
    persists nothing (``save ""``), so a restart comes back empty; with it, every write is
    fsynced to the AOF before it is acknowledged, so a restart (even after :meth:`kill`) brings
    back every acknowledged write. :meth:`restart` reuses the port and the directory.

    The process is killed and the directory removed by :meth:`close`, on leaving a ``with``
    block, when the object is garbage collected, and at interpreter exit.

    Args:
        appendonly: keep an AOF with ``appendfsync always``.
        password: password of the ``default`` user (``requirepass``).
        acl_user: ``(user, password)`` of an extra ACL user with every permission
            (``~* &* +@all``); the URL then logs in as that user.
        tls: serve TLS only (``port 0``, ``tls-port``), with a throwaway CA written by the
            ``openssl`` CLI to :attr:`ca_path`; clients need no certificate.
        port: the port to use; a free one by default.
        executable: the ``redis-server`` binary.
        startup_timeout: seconds :meth:`start` waits for PING to answer.
    """

    def __init__(
        self,
        *,
        appendonly: bool = False,
        password: str | None = None,
        acl_user: tuple[str, str] | None = None,
        tls: bool = False,
        port: int | None = None,
        executable: str = "redis-server",
        startup_timeout: float = 10.0,
    ) -> None:
        self.appendonly = appendonly
        self.password = password
        self.acl_user = acl_user
        self.tls = tls
        self.executable = executable
        self.startup_timeout = startup_timeout
        self._port_fixed = port is not None
        self._port = port if port is not None else free_port()
        self._dir = Path(tempfile.mkdtemp(prefix="pygents-redis-"))
        self._reaper = _Reaper(self._dir)
        self._finalizer = weakref.finalize(self, self._reaper)
        self._proc: subprocess.Popen[bytes] | None = None
        if tls:
            _make_tls_files(self._dir)

    @classmethod
    def from_options(cls, options: Mapping[str, object]) -> RedisServer:
        """Build a server from a dict of constructor options (as pytest's ``request.param``).

        Raises:
            TypeError: an unknown option, or a value of the wrong type.
        """
        known = {"appendonly", "password", "acl_user", "tls", "port", "startup_timeout"}
        unknown = set(options) - known
        if unknown:
            raise TypeError(f"unknown RedisServer options: {sorted(unknown)}")

        def flag(name: str) -> bool:
            value = options.get(name, False)
            if not isinstance(value, bool):
                raise TypeError(f"RedisServer option {name!r} must be a bool, got {value!r}")
            return value

        password = options.get("password")
        if password is not None and not isinstance(password, str):
            raise TypeError(f"RedisServer option 'password' must be a str, got {password!r}")
        acl = options.get("acl_user")
        acl_user: tuple[str, str] | None = None
        if acl is not None:
            if not (
                isinstance(acl, tuple | list)
                and len(acl) == 2
                and isinstance(acl[0], str)
                and isinstance(acl[1], str)
            ):
                raise TypeError(f"RedisServer option 'acl_user' must be (user, password): {acl!r}")
            acl_user = (acl[0], acl[1])
        port = options.get("port")
        if port is not None and not isinstance(port, int):
            raise TypeError(f"RedisServer option 'port' must be an int, got {port!r}")
        timeout = options.get("startup_timeout", 10.0)
        if not isinstance(timeout, int | float):
            raise TypeError(f"RedisServer option 'startup_timeout' must be a number: {timeout!r}")
        return cls(
            appendonly=flag("appendonly"),
            password=password,
            acl_user=acl_user,
            tls=flag("tls"),
            port=port,
            startup_timeout=float(timeout),
        )

    # -- facts

    @property
    def host(self) -> str:
        """The address the server listens on (always 127.0.0.1)."""
        return _LOCALHOST

    @property
    def port(self) -> int:
        """The port, fixed for the server's life (kept across restarts)."""
        return self._port

    @property
    def url(self) -> str:
        """``redis://`` (``rediss://`` with TLS) URL, with the ACL user or password in it."""
        scheme = "rediss" if self.tls else "redis"
        auth = ""
        if self.acl_user is not None:
            auth = f"{quote(self.acl_user[0], safe='')}:{quote(self.acl_user[1], safe='')}@"
        elif self.password is not None:
            auth = f":{quote(self.password, safe='')}@"
        return f"{scheme}://{auth}{self.host}:{self._port}"

    @property
    def url_with_ca(self) -> str:
        """:attr:`url` plus ``?ssl_ca_certs=<ca_path>`` with TLS, for processes that take only
        a URL (redis-py's ``from_url`` reads the option); the plain :attr:`url` otherwise."""
        if self.ca_path is None:
            return self.url
        return f"{self.url}/0?ssl_ca_certs={quote(str(self.ca_path), safe='')}"

    @property
    def ca_path(self) -> Path | None:
        """The CA certificate that signed the server's certificate (``None`` without TLS)."""
        return self._dir / "ca.crt" if self.tls else None

    @property
    def directory(self) -> Path:
        """The server's working directory (config, log, AOF, TLS files)."""
        return self._dir

    @property
    def log_path(self) -> Path:
        """The server's log file (stdout and stderr, appended across restarts)."""
        return self._dir / "redis.log"

    @property
    def pid(self) -> int:
        """The pid of the running server.

        Raises:
            RuntimeError: the server is not running.
        """
        if self._proc is None or self._proc.poll() is not None:
            raise RuntimeError("redis-server is not running")
        return self._proc.pid

    def is_running(self) -> bool:
        """Whether the server process is alive."""
        return self._proc is not None and self._proc.poll() is None

    def log_tail(self, lines: int = 30) -> str:
        """The last ``lines`` lines of the server log, for error messages."""
        try:
            text = self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    # -- life cycle

    def start(self) -> Self:
        """Start the server and return once it answers PING (its data, if any, is loaded).

        Raises:
            RuntimeError: already running, closed, or the server exited while starting.
            TimeoutError: PING did not answer within ``startup_timeout``.
        """
        if not self._finalizer.alive:
            raise RuntimeError("RedisServer is closed")
        if self.is_running():
            raise RuntimeError("redis-server is already running")
        for _ in range(5):
            try:
                self._spawn_and_wait()
                return self
            except _PortTaken:
                if self._port_fixed:
                    raise RuntimeError(f"port {self._port} is in use") from None
                self._port = free_port()
        raise RuntimeError("could not find a free port for redis-server")

    def _config(self) -> str:
        lines = [
            "bind 127.0.0.1",
            "protected-mode no",
            "daemonize no",
            f"dir {_quote_conf(str(self._dir))}",
            'logfile ""',
        ]
        if self.tls:
            lines += [
                "port 0",
                f"tls-port {self._port}",
                f"tls-cert-file {_quote_conf(str(self._dir / 'server.crt'))}",
                f"tls-key-file {_quote_conf(str(self._dir / 'server.key'))}",
                f"tls-ca-cert-file {_quote_conf(str(self._dir / 'ca.crt'))}",
                "tls-auth-clients no",
            ]
        else:
            lines.append(f"port {self._port}")
        if self.appendonly:
            lines += ["appendonly yes", "appendfsync always"]
        else:
            lines += ['save ""', "appendonly no"]
        if self.password is not None:
            lines.append(f"requirepass {_quote_conf(self.password)}")
        if self.acl_user is not None:
            user, password = self.acl_user
            lines.append(f"user {_quote_conf(user)} on {_quote_conf('>' + password)} ~* &* +@all")
        return "\n".join(lines) + "\n"

    def _spawn_and_wait(self) -> None:
        conf = self._dir / "redis.conf"
        conf.write_text(self._config())
        with self.log_path.open("ab") as log:
            log_start = log.tell()
            self._proc = self._reaper.proc = subprocess.Popen(
                [self.executable, str(conf)],
                cwd=self._dir,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        deadline = time.monotonic() + self.startup_timeout
        context = ssl.create_default_context(cafile=str(self.ca_path)) if self.tls else None
        last = "no answer"
        ping_timeout = 0.1  # grows: short while a squatter may hold the port, long under load
        while True:
            if self._proc.poll() is not None:
                with self.log_path.open("rb") as log:
                    log.seek(log_start)
                    text = log.read().decode(errors="replace")
                if "Address already in use" in text:
                    raise _PortTaken
                raise RuntimeError(
                    f"redis-server exited with {self._proc.returncode} while starting:\n{text}"
                )
            # A freshly started server signals nothing, so poll with a short interval.
            last = self._ping(context, ping_timeout) or last
            ping_timeout = min(1.0, ping_timeout * 2)
            if last == "+PONG":
                return
            if last.startswith(("-WRONGPASS", "-NOAUTH", "-ERR")):
                self.kill()
                raise RuntimeError(f"redis-server refused the test login: {last}")
            if time.monotonic() > deadline:
                self.kill()
                raise TimeoutError(
                    f"redis-server on port {self._port} did not answer PING within "
                    f"{self.startup_timeout}s (last reply: {last}):\n{self.log_tail()}"
                )
            time.sleep(0.01)

    def _ping(self, context: ssl.SSLContext | None, timeout: float) -> str | None:
        """Send (AUTH and) PING; return the last reply line, or ``None`` on a socket error."""
        commands = []
        if self.acl_user is not None:
            commands.append(_resp("AUTH", *self.acl_user))
        elif self.password is not None:
            commands.append(_resp("AUTH", self.password))
        commands.append(_resp("PING"))
        try:
            with socket.create_connection((self.host, self._port), timeout=timeout) as raw:
                sock = context.wrap_socket(raw, server_hostname=self.host) if context else raw
                with sock:
                    sock.sendall(b"".join(commands))
                    data = b""
                    while data.count(b"\r\n") < len(commands):
                        chunk = sock.recv(4096)
                        if not chunk:
                            return None
                        data += chunk
        except OSError:  # includes ssl.SSLError and socket timeouts
            return None
        replies = data.decode(errors="replace").split("\r\n")
        failed = [r for r in replies[: len(commands) - 1] if r.startswith("-")]
        return failed[0] if failed else replies[len(commands) - 1]

    def kill(self) -> None:
        """SIGKILL the server (a crash: no AOF flush beyond what was fsynced) and reap it."""
        if self._proc is not None:
            _kill(self._proc)

    def stop(self, timeout: float = 10.0) -> None:
        """Shut the server down with SIGTERM (flushing the AOF) and wait; SIGKILL after
        ``timeout`` seconds. Without AOF nothing is saved."""
        proc = self._proc
        if proc is None or proc.poll() is not None:
            return
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            _kill(proc)

    def restart(self, *, kill: bool = False) -> Self:
        """Stop (or, with ``kill``, SIGKILL) the server and start it on the same port and
        directory; returns once it answers PING with its AOF (if any) loaded."""
        if kill:
            self.kill()
        else:
            self.stop()
        return self.start()

    def close(self) -> None:
        """Kill the server if it runs and delete its directory; idempotent."""
        self._finalizer()

    def __enter__(self) -> Self:
        if not self.is_running():
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
        state = "running" if self.is_running() else "stopped"
        return f"RedisServer({self.url!r}, {state})"


class _PortTaken(Exception):
    """redis-server could not bind its port (another process took it after free_port())."""


class ContainerRedis:
    """A throwaway Redis container started through testcontainers; closing removes it."""

    kind: Literal["container"] = "container"

    def __init__(self, image: str = "redis:7-alpine") -> None:
        """Start the container and wait until Redis answers PING.

        Raises:
            Exception: whatever testcontainers/docker raise when the container cannot start.
        """
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            from testcontainers.community.redis import RedisContainer

            self._container = RedisContainer(image)
            self._container.start()
        host = self._container.get_container_host_ip()
        port = self._container.get_exposed_port(6379)
        self._url = f"redis://{host}:{port}"

    @property
    def url(self) -> str:
        """The URL of the container's mapped port."""
        return self._url

    def close(self) -> None:
        """Stop and remove the container."""
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            self._container.stop()

    def __repr__(self) -> str:
        return f"ContainerRedis({self._url!r})"


def docker_available(timeout: float = 3.0) -> bool:
    """Whether a Docker daemon answers, asked through testcontainers' own client.

    Returns ``False`` without error when testcontainers is not installed or no daemon is
    reachable; each request is bounded by ``timeout`` seconds.
    """
    with contextlib.suppress(Exception), warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        from testcontainers.core.docker_client import DockerClient

        client = DockerClient(timeout=timeout)
        try:
            return bool(client.client.ping())
        finally:
            client.client.close()
    # docker-py leaves the socket of a failed connect open (referenced from the exception's
    # traceback); reap it quietly now rather than let its ResourceWarning surface in
    # whichever test collects garbage next.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ResourceWarning)
        gc.collect()
    return False


def resolve_redis(
    *,
    environ: Mapping[str, str] | None = None,
    use_docker: bool | None = None,
) -> ExternalRedis | ContainerRedis | RedisServer:
    """Find or start a Redis to test against; the caller must ``close()`` it.

    In order: ``REDIS_URL`` from ``environ`` (default ``os.environ``) if set and not empty;
    else a testcontainers Redis when Docker is reachable (``use_docker=None`` asks
    :func:`docker_available`); else (or if the container fails to start) a private
    :class:`RedisServer` from ``PATH``.

    Raises:
        RuntimeError: no URL, no usable Docker, and no ``redis-server`` on ``PATH``.
    """
    env = os.environ if environ is None else environ
    url = env.get("REDIS_URL", "")
    if url:
        return ExternalRedis(url)
    container_error: Exception | None = None
    if use_docker if use_docker is not None else docker_available():
        try:
            return ContainerRedis()
        except Exception as exc:
            container_error = exc
    if shutil.which("redis-server") is None:
        raise RuntimeError(
            "no Redis for tests: REDIS_URL is not set, Docker is "
            + (f"unusable ({container_error!r})" if container_error else "not reachable")
            + ", and redis-server is not on PATH"
        )
    return RedisServer().start()


# --- network faults ---------------------------------------------------------------------------


class _Link:
    """One proxied connection: the client side and (once connected) the upstream side."""

    __slots__ = ("client", "closed", "upstream")

    def __init__(self, client: asyncio.StreamWriter) -> None:
        self.client = client
        self.upstream: asyncio.StreamWriter | None = None
        self.closed = False

    def abort(self) -> None:
        self.closed = True
        self.client.transport.abort()
        if self.upstream is not None:
            self.upstream.transport.abort()


class TcpProxy:
    """A TCP proxy on a free loopback port that forwards to ``target_host:target_port``.

    It runs its own event loop in a daemon thread, so it serves sync tests, async tests and
    child processes alike. Faults: :meth:`cut` drops every connection and refuses new ones
    (Redis seen as down); :meth:`stall` holds every byte in both directions while keeping
    connections open (a network partition: clients time out); :meth:`restore` ends either.
    Each of these has taken effect when it returns.

    Args:
        target_host: where to forward.
        target_port: where to forward.
        timeout: seconds to wait for the proxy's loop to carry out a call.
    """

    def __init__(self, target_host: str, target_port: int, *, timeout: float = 5.0) -> None:
        self.target_host = target_host
        self.target_port = target_port
        self.timeout = timeout
        self._port = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._server: asyncio.Server | None = None
        self._links: set[_Link] = set()
        self._tasks: set[asyncio.Task[object]] = set()
        self._flowing: asyncio.Event | None = None
        self._cut = False

    @classmethod
    def for_url(cls, redis_url: str, *, timeout: float = 5.0) -> TcpProxy:
        """A proxy (not started) to the host and port of ``redis_url``."""
        parts = urlsplit(redis_url)
        return cls(parts.hostname or _LOCALHOST, parts.port or 6379, timeout=timeout)

    @property
    def host(self) -> str:
        """The address the proxy listens on (127.0.0.1)."""
        return _LOCALHOST

    @property
    def port(self) -> int:
        """The proxy's port (0 before :meth:`start`), kept across :meth:`cut`/:meth:`restore`."""
        return self._port

    @property
    def active_connections(self) -> int:
        """How many client connections are open through the proxy now."""
        return self._call(self._count)

    async def _count(self) -> int:
        return len(self._links)

    def url_for(self, redis_url: str) -> str:
        """``redis_url`` with its host and port replaced by the proxy's (credentials, scheme,
        database and query kept)."""
        if not self._port:
            raise RuntimeError("TcpProxy is not started: it has no port yet")
        parts = urlsplit(redis_url)
        userinfo = parts.netloc.rpartition("@")[0]
        netloc = f"{userinfo}@" if userinfo else ""
        return urlunsplit(parts._replace(netloc=f"{netloc}{self.host}:{self._port}"))

    def start(self) -> Self:
        """Start listening (on the previous port after a :meth:`stop`); returns once
        connections are accepted."""
        if self._loop is not None:
            raise RuntimeError("TcpProxy is already started")
        self._flowing = None  # an asyncio.Event belongs to one loop
        loop = asyncio.new_event_loop()
        self._loop = loop
        self._thread = threading.Thread(target=loop.run_forever, name="TcpProxy", daemon=True)
        self._thread.start()
        self._call(self._open)
        return self

    def cut(self) -> None:
        """Close every open connection (clients see a reset) and refuse new ones."""
        self._call(self._do_cut)

    def stall(self) -> None:
        """Stop forwarding bytes both ways; connections stay open and new ones are accepted."""
        self._call(self._do_stall)

    def restore(self) -> None:
        """Undo :meth:`cut` (listen again on the same port) and :meth:`stall` (bytes held
        during the stall are delivered)."""
        self._call(self._do_restore)

    def stop(self) -> None:
        """Close every connection, stop listening and end the proxy's thread; idempotent."""
        loop, thread = self._loop, self._thread
        if loop is None or thread is None:
            return
        try:
            self._call(self._shutdown)
        finally:
            loop.call_soon_threadsafe(loop.stop)
            thread.join(self.timeout)
            if not thread.is_alive():
                loop.close()
            self._loop = self._thread = None

    def __enter__(self) -> Self:
        if self._loop is None:
            self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def __repr__(self) -> str:
        return f"TcpProxy({self.host}:{self._port} -> {self.target_host}:{self.target_port})"

    # -- on the proxy's loop

    def _call[T](self, fn: Callable[[], Coroutine[object, object, T]]) -> T:
        if self._loop is None:
            raise RuntimeError("TcpProxy is not started")
        return asyncio.run_coroutine_threadsafe(fn(), self._loop).result(self.timeout)

    async def _open(self) -> None:
        if self._flowing is None:
            self._flowing = asyncio.Event()
            self._flowing.set()
        self._server = await asyncio.start_server(self._handle, self.host, self._port)
        self._port = self._server.sockets[0].getsockname()[1]
        self._cut = False

    async def _do_cut(self) -> None:
        self._cut = True
        server, self._server = self._server, None
        if server is not None:
            server.close()
        for link in self._links:
            link.abort()
        self._links.clear()
        if server is not None:
            await server.wait_closed()

    async def _do_stall(self) -> None:
        if self._flowing is not None:
            self._flowing.clear()

    async def _do_restore(self) -> None:
        if self._server is None:
            await self._open()
        if self._flowing is not None:
            self._flowing.set()

    async def _shutdown(self) -> None:
        await self._do_cut()
        if self._flowing is not None:
            self._flowing.set()  # let pumps waiting on a stall see their link is closed
        if self._tasks:
            await asyncio.wait(self._tasks, timeout=self.timeout)

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        if task is not None:
            self._tasks.add(task)
        link = _Link(writer)
        self._links.add(link)
        try:
            if self._cut:
                return
            try:
                up_reader, link.upstream = await asyncio.open_connection(
                    self.target_host, self.target_port
                )
            except OSError:
                return
            if link.closed:
                return
            await asyncio.gather(
                self._pump(link, reader, link.upstream), self._pump(link, up_reader, writer)
            )
        finally:
            link.abort()
            self._links.discard(link)
            if task is not None:
                self._tasks.discard(task)

    async def _pump(
        self, link: _Link, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        assert self._flowing is not None
        try:
            while data := await reader.read(65536):
                await self._flowing.wait()
                if link.closed:
                    break
                writer.write(data)
                await writer.drain()
        except OSError:
            pass
        finally:
            link.abort()  # one side gone: drop the other, as a broken path would


# --- worker processes -------------------------------------------------------------------------


class WorkerProcess:
    """A real worker: ``python -m pygents_dist worker TARGET --redis-url URL *args``.

    The child runs with ``PYTHONUNBUFFERED=1``; two threads keep every line it writes to
    stdout and stderr, in arrival order (:attr:`output`). The worker's contract is to print
    ``READY <worker_id>`` on stdout and flush once it serves; :meth:`wait_ready` waits for that
    line. The child is killed by :meth:`close`, on leaving a ``with`` block, and at interpreter
    exit (the reader threads keep the object alive while the child runs).

    Args:
        target: the worker's ``MODULE[:ATTR]``.
        redis_url: passed as ``--redis-url``.
        args: extra command line arguments, after the URL.
        pythonpath: directories put first on the child's ``PYTHONPATH`` (a test's ``tmp_path``
            holding its agents module, say).
        env: variables added to (or replacing) the child's copy of ``os.environ``.
        cwd: the child's working directory (this process's by default).
    """

    def __init__(
        self,
        target: str,
        *,
        redis_url: str,
        args: Sequence[str] = (),
        pythonpath: Iterable[str | os.PathLike[str]] = (),
        env: Mapping[str, str] | None = None,
        cwd: str | os.PathLike[str] | None = None,
    ) -> None:
        self.target = target
        self.redis_url = redis_url
        self.command = [sys.executable, "-m", "pygents_dist", "worker", target]
        self.command += ["--redis-url", redis_url, *args]
        self.env = dict(os.environ)
        self.env.update(env or {})
        paths = [os.fspath(p) for p in pythonpath]
        if self.env.get("PYTHONPATH"):
            paths.append(self.env["PYTHONPATH"])
        if paths:
            self.env["PYTHONPATH"] = os.pathsep.join(paths)
        self.env.setdefault("PYTHONUNBUFFERED", "1")
        self.cwd = cwd
        self._proc: subprocess.Popen[bytes] | None = None
        self._readers: list[threading.Thread] = []
        self._cond = threading.Condition()
        self._lines: list[str] = []
        self._open_streams = 2
        self._worker_id: str | None = None
        self._reaper = _Reaper()
        self._finalizer = weakref.finalize(self, self._reaper)

    def start(self) -> Self:
        """Spawn the child (without waiting for it to serve: see :meth:`wait_ready`)."""
        if self._proc is not None:
            raise RuntimeError(f"worker {self.target} was already started")
        if not self._finalizer.alive:
            raise RuntimeError("WorkerProcess is closed")
        self._proc = self._reaper.proc = subprocess.Popen(
            self.command,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,  # not merged: a log line could split the READY line
            env=self.env,
            cwd=self.cwd,
        )
        assert self._proc.stdout is not None and self._proc.stderr is not None
        self._readers = [
            threading.Thread(target=self._read, args=(stream, is_stdout), daemon=True)
            for stream, is_stdout in ((self._proc.stdout, True), (self._proc.stderr, False))
        ]
        for reader in self._readers:
            reader.start()
        return self

    def _read(self, stream: IO[bytes], is_stdout: bool) -> None:
        with stream:
            for raw in iter(stream.readline, b""):
                line = raw.decode("utf-8", "replace").rstrip("\r\n")
                with self._cond:
                    self._lines.append(line)
                    words = line.split()
                    if is_stdout and self._worker_id is None and words[:1] == ["READY"]:
                        self._worker_id = words[1] if len(words) > 1 else ""
                    self._cond.notify_all()
        with self._cond:
            self._open_streams -= 1
            self._cond.notify_all()

    def _join_readers(self) -> None:
        for reader in self._readers:
            reader.join(5.0)

    # -- facts

    @property
    def output(self) -> list[str]:
        """Every line the child wrote so far to stdout or stderr, without newlines."""
        with self._cond:
            return list(self._lines)

    @property
    def output_text(self) -> str:
        """:attr:`output` joined with newlines."""
        return "\n".join(self.output)

    @property
    def worker_id(self) -> str:
        """The id from the ``READY <worker_id>`` line.

        Raises:
            RuntimeError: the worker has not printed its READY line.
        """
        with self._cond:
            if self._worker_id is None:
                raise RuntimeError(f"worker {self.target} is not ready")
            return self._worker_id

    @property
    def pid(self) -> int:
        """The child's pid.

        Raises:
            RuntimeError: not started.
        """
        if self._proc is None:
            raise RuntimeError(f"worker {self.target} was not started")
        return self._proc.pid

    @property
    def returncode(self) -> int | None:
        """The exit status (negative: killed by that signal), or ``None`` while it runs."""
        return None if self._proc is None else self._proc.poll()

    def is_running(self) -> bool:
        """Whether the child was started and has not exited."""
        return self._proc is not None and self._proc.poll() is None

    # -- waiting

    def wait_for_line(self, pattern: str | re.Pattern[str], timeout: float = 10.0) -> str:
        """Block until an output line (already written or to come) matches ``pattern``
        (``re.search``) and return it.

        Raises:
            RuntimeError: the child closed its output (exited) with no such line.
            TimeoutError: no such line within ``timeout`` seconds.
        """
        regex = re.compile(pattern)
        seen = 0

        def match() -> str | None:
            nonlocal seen
            for line in self._lines[seen:]:
                if regex.search(line):
                    return line
            seen = len(self._lines)
            return None

        return self._wait_until(match, f"a line matching {regex.pattern!r}", timeout)

    def wait_ready(self, timeout: float = 30.0) -> str:
        """Block until the worker prints ``READY <worker_id>`` on stdout; return the worker id.

        Raises:
            RuntimeError: the child exited first (the message holds its output).
            TimeoutError: no READY line within ``timeout`` seconds (the message holds the
                output so far).
        """
        return self._wait_until(lambda: self._worker_id, "its READY line", timeout)

    def _wait_until(self, check: Callable[[], str | None], what: str, timeout: float) -> str:
        """Wait (woken by the reader threads) until ``check()``, called under the lock,
        returns a string."""
        if self._proc is None:
            raise RuntimeError(f"worker {self.target} was not started")
        deadline = time.monotonic() + timeout
        with self._cond:
            while (found := check()) is None:
                remaining = deadline - time.monotonic()
                if self._open_streams == 0 or remaining <= 0:
                    break
                self._cond.wait(remaining)
            closed = self._open_streams == 0
        if found is not None:
            return found
        output = self.output_text
        if closed:
            with contextlib.suppress(subprocess.TimeoutExpired):
                self._proc.wait(1.0)
            raise RuntimeError(
                f"worker {self.target} exited (status {self._proc.poll()}) before printing "
                f"{what}; its output:\n{output}"
            )
        raise TimeoutError(
            f"worker {self.target} printed no {what} within {timeout}s; its output:\n{output}"
        )

    def wait(self, timeout: float | None = None) -> int:
        """Wait for the child to exit; return its status once its output is fully read.

        Raises:
            subprocess.TimeoutExpired: it still runs after ``timeout`` seconds.
        """
        if self._proc is None:
            raise RuntimeError(f"worker {self.target} was not started")
        code = self._proc.wait(timeout)
        self._join_readers()
        return code

    # -- signals

    def send_signal(self, sig: signal.Signals) -> None:
        """Send ``sig`` to the worker; nothing if it has exited."""
        if self.is_running():
            assert self._proc is not None
            self._proc.send_signal(sig)

    def terminate(self) -> None:
        """SIGTERM the worker: it should finish in-flight turns and exit 0."""
        self.send_signal(signal.SIGTERM)

    def kill(self) -> None:
        """SIGKILL the worker (a crash) and reap it."""
        if self._proc is not None:
            _kill(self._proc)
            self._join_readers()

    def stop(self, grace: float = 5.0) -> int:
        """SIGTERM, wait up to ``grace`` seconds, then SIGKILL; return the exit status."""
        self.terminate()
        try:
            return self.wait(grace)
        except subprocess.TimeoutExpired:
            self.kill()
            return self.wait()

    def close(self) -> None:
        """Kill the child if it runs; idempotent."""
        self._finalizer()
        self._join_readers()

    def __enter__(self) -> Self:
        if self._proc is None:
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
        pid = "-" if self._proc is None else self._proc.pid
        return f"WorkerProcess({self.target!r}, pid={pid}, returncode={self.returncode})"


class WorkerPool:
    """Starts ready workers on demand and stops every one of them at :meth:`close`.

    Calling the pool starts a :class:`WorkerProcess` and waits for its READY line; the worker
    is registered before it starts, so even one that fails to start is cleaned up.

    Args:
        redis_url: the default ``--redis-url`` of the workers.
        pythonpath: directories put on every worker's ``PYTHONPATH``.
        env: variables added to every worker's environment.
        ready_timeout: default seconds to wait for READY.
        grace: seconds :meth:`close` lets workers shut down after SIGTERM before SIGKILL.
    """

    def __init__(
        self,
        redis_url: str,
        *,
        pythonpath: Iterable[str | os.PathLike[str]] = (),
        env: Mapping[str, str] | None = None,
        ready_timeout: float = 30.0,
        grace: float = 5.0,
    ) -> None:
        self.redis_url = redis_url
        self.pythonpath = [os.fspath(p) for p in pythonpath]
        self.env = dict(env or {})
        self.ready_timeout = ready_timeout
        self.grace = grace
        self._workers: list[WorkerProcess] = []

    @property
    def workers(self) -> list[WorkerProcess]:
        """Every worker started by this pool, in start order."""
        return list(self._workers)

    def __call__(
        self,
        target: str,
        *,
        redis_url: str | None = None,
        args: Sequence[str] = (),
        pythonpath: Iterable[str | os.PathLike[str]] = (),
        env: Mapping[str, str] | None = None,
        ready_timeout: float | None = None,
    ) -> WorkerProcess:
        """Start a worker serving ``target`` and return it once it printed READY.

        Raises:
            RuntimeError: the worker exited before READY (the message holds its output).
            TimeoutError: no READY within the timeout.
        """
        worker = WorkerProcess(
            target,
            redis_url=self.redis_url if redis_url is None else redis_url,
            args=args,
            pythonpath=[*(os.fspath(p) for p in pythonpath), *self.pythonpath],
            env={**self.env, **(env or {})},
        )
        self._workers.append(worker)
        worker.start()
        worker.wait_ready(self.ready_timeout if ready_timeout is None else ready_timeout)
        return worker

    def close(self) -> None:
        """SIGTERM every running worker, SIGKILL those still running after ``grace`` seconds,
        and release them all."""
        running = [w for w in self._workers if w.is_running()]
        for worker in running:
            worker.terminate()
        deadline = time.monotonic() + self.grace
        try:
            for worker in running:
                try:
                    worker.wait(max(0.0, deadline - time.monotonic()))
                except subprocess.TimeoutExpired:
                    worker.kill()
        finally:
            for worker in self._workers:
                worker.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
