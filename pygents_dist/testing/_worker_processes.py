"""Real worker processes: :class:`WorkerProcess` (``python -m pygents_dist worker`` as a child,
its output kept and waited on) and :class:`WorkerPool`, which starts ready ones and stops them."""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import sys
import threading
import time
import weakref
from collections.abc import Callable, Iterable, Mapping, Sequence
from types import TracebackType
from typing import IO, Self

from pygents_dist.testing._processes import _kill, _Reaper


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
