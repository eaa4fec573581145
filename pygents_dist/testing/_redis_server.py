"""A private ``redis-server`` from ``PATH`` (:class:`RedisServer`): its config, start-up (PING
over a raw socket, with TLS and AUTH), crash, stop and restart."""

from __future__ import annotations

import signal
import socket
import ssl
import subprocess
import tempfile
import time
import weakref
from collections.abc import Mapping
from pathlib import Path
from types import TracebackType
from typing import Literal, Self
from urllib.parse import quote

from pygents_dist.testing._ports import _LOCALHOST, free_port
from pygents_dist.testing._processes import _kill, _Reaper
from pygents_dist.testing._tls import _make_tls_files


def _quote_conf(value: str) -> str:
    """Quote a value for a redis.conf line (redis parses it with ``sdssplitargs``)."""
    if any(ord(ch) < 32 or ord(ch) == 127 for ch in value):
        raise ValueError(f"control characters are not supported in redis.conf values: {value!r}")
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


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

    kind: Literal["server"] = "server"

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
