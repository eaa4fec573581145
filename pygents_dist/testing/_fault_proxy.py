"""Network faults: :class:`TcpProxy`, a loopback TCP proxy on its own event loop thread that
can cut (drop and refuse) or stall (hold every byte of) the connections through it."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Coroutine
from types import TracebackType
from typing import Self
from urllib.parse import urlsplit, urlunsplit

from pygents_dist.testing._ports import _LOCALHOST


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
