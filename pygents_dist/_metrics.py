"""Worker metrics in the Prometheus text format, served over plain HTTP (opt-in).

``pygents-worker ... --metrics-port 9464`` serves ``GET /metrics`` from a small asyncio server
(standard library only). The series, all labelled with the agent or lock they concern::

    pygents_turns_started_total{agent}          counter    turns the worker began running
    pygents_turns_completed_total{agent}        counter    turns whose tool returned
    pygents_turns_failed_total{agent}           counter    turns that raised, timed out or
                                                           were cancelled while running
    pygents_turns_dead_lettered_total{agent,reason}  counter  messages set aside
    pygents_turn_duration_seconds{agent}        histogram  run time of finished turns
    pygents_queue_depth{agent}                  gauge      entries in the agent's stream
                                                           (refreshed by the maintenance loop)
    pygents_lock_wait_seconds{lock}             summary    time spent waiting for lock=True
                                                           tool and hook locks
    pygents_worker_active_agents                gauge      agents this worker is serving now
    pygents_worker_info{worker,version}         gauge      always 1

Counting is a few dictionary updates per turn; rendering happens only when scraped.
"""

from __future__ import annotations

import asyncio
import bisect
import contextlib
import logging
from collections import defaultdict
from collections.abc import Callable

from pygents.registry import split_instance
from pygents_dist.errors import DistError

__all__ = ["BUCKETS", "Metrics", "serve"]

_log = logging.getLogger("pygents_dist.metrics")

#: Upper bounds (seconds) of the turn duration histogram's buckets (+Inf is implied).
BUCKETS = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0)
_MAX_REQUEST = 8192
#: Agents with series of their own; turns of further agents count under ``_OTHER``.
_AGENT_SERIES_MAX = 1000
_OTHER = "_other"


def _label(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


class Metrics:
    """The counters of one worker; ``render()`` gives the Prometheus exposition text.

    Per-agent counters live in flat lists indexed by the agent's number (``agent_index``):
    a worker serving 10,000 agents then holds a few lists, not 10,000 objects for the
    garbage collector to walk.
    """

    def __init__(self, worker_id: str = "", version: str = "") -> None:
        self.worker_id = worker_id
        self.version = version
        self._index: dict[str, int] = {}
        self._started: list[int] = []
        self._completed: list[int] = []
        self._failed: list[int] = []
        self._total: list[float] = []  # seconds of finished turns
        self._buckets: list[int] = []  # len(BUCKETS) per agent (+Inf is completed + failed)
        self.dead: defaultdict[tuple[str, str], int] = defaultdict(int)
        self.depth: dict[str, int] = {}
        self.lock_wait: defaultdict[str, list[float]] = defaultdict(lambda: [0.0, 0.0])
        self.active: Callable[[], int] = lambda: 0

    def agent_index(self, agent: str) -> int:
        """The number of ``agent``'s counters (for ``started_at`` and ``finished_at``).

        An instance (``"<kind>/<key>"``) counts under its kind, and past ``_AGENT_SERIES_MAX``
        agents the rest count as ``_OTHER``: a deployment of a million agents must not make a
        million series."""
        index = self._index.get(agent)
        if index is None:
            parts = split_instance(agent)
            label = parts[0] if parts is not None else agent
            if label != agent:
                return self.agent_index(label)
            if len(self._index) >= _AGENT_SERIES_MAX:
                return self.agent_index(_OTHER) if agent != _OTHER else self._new_index(agent)
            return self._new_index(agent)
        return index

    def _new_index(self, agent: str) -> int:
        index = self._index.get(agent)
        if index is None:
            index = self._index[agent] = len(self._started)
            self._started.append(0)
            self._completed.append(0)
            self._failed.append(0)
            self._total.append(0.0)
            self._buckets.extend([0] * len(BUCKETS))
        return index

    def started_at(self, index: int) -> None:
        """A turn of agent number ``index`` begins running."""
        self._started[index] += 1

    def finished_at(self, index: int, seconds: float, ok: bool) -> None:
        """A turn of agent number ``index`` ended after ``seconds``; ``ok`` if it returned."""
        if ok:
            self._completed[index] += 1
        else:
            self._failed[index] += 1
        self._total[index] += seconds
        bucket = bisect.bisect_left(BUCKETS, seconds)  # the first bound >= seconds
        if bucket < len(BUCKETS):
            self._buckets[index * len(BUCKETS) + bucket] += 1  # render() adds them up

    def turn_started(self, agent: str) -> None:
        """A turn of ``agent`` begins running."""
        self.started_at(self.agent_index(agent))

    def turn_finished(self, agent: str, seconds: float, ok: bool) -> None:
        """A turn of ``agent`` ended after ``seconds``; ``ok`` if its tool returned."""
        self.finished_at(self.agent_index(agent), seconds, ok)

    def dead_lettered(self, agent: str, reason: str) -> None:
        """A message for ``agent`` went to the dead-letter stream."""
        self.dead[(agent, reason)] += 1

    def lock_waited(self, name: str, seconds: float) -> None:
        """A lock=True tool or hook waited ``seconds`` for its lock ``name``."""
        entry = self.lock_wait[name]
        entry[0] += 1.0
        entry[1] += seconds

    def set_depths(self, depths: dict[str, int]) -> None:
        """Replace the queue depth gauges."""
        self.depth = dict(depths)

    def render(self) -> str:
        """Every series in the Prometheus text exposition format (version 0.0.4)."""
        out: list[str] = []
        by_agent = sorted(self._index.items())

        def family(name: str, kind: str, text: str) -> None:
            out.append(f"# HELP {name} {text}")
            out.append(f"# TYPE {name} {kind}")

        family("pygents_worker_info", "gauge", "Worker identity (always 1).")
        out.append(
            f'pygents_worker_info{{worker="{_label(self.worker_id)}",'
            f'version="{_label(self.version)}"}} 1'
        )
        family("pygents_worker_active_agents", "gauge", "Agents this worker is serving now.")
        out.append(f"pygents_worker_active_agents {self.active()}")
        for name, column, text in (
            ("pygents_turns_started_total", self._started, "Turns this worker began running."),
            ("pygents_turns_completed_total", self._completed, "Turns whose tool returned."),
            ("pygents_turns_failed_total", self._failed, "Turns that raised or timed out."),
        ):
            family(name, "counter", text)
            for agent, index in by_agent:
                out.append(f'{name}{{agent="{_label(agent)}"}} {column[index]}')
        family("pygents_turns_dead_lettered_total", "counter", "Messages set aside, by reason.")
        for (agent, reason), value in sorted(self.dead.items()):
            out.append(
                f'pygents_turns_dead_lettered_total{{agent="{_label(agent)}",'
                f'reason="{_label(reason)}"}} {value}'
            )
        family("pygents_turn_duration_seconds", "histogram", "Run time of finished turns.")
        name = "pygents_turn_duration_seconds"
        width = len(BUCKETS)
        for agent, index in by_agent:
            count = self._completed[index] + self._failed[index]
            if not count:
                continue
            label = f'agent="{_label(agent)}"'
            running = 0
            for bound, in_bucket in zip(
                BUCKETS, self._buckets[index * width : (index + 1) * width], strict=True
            ):
                running += in_bucket
                out.append(f'{name}_bucket{{{label},le="{bound}"}} {running}')
            out.append(f'{name}_bucket{{{label},le="+Inf"}} {count}')
            out.append(f"{name}_sum{{{label}}} {self._total[index]:.6f}")
            out.append(f"{name}_count{{{label}}} {count}")
        family("pygents_queue_depth", "gauge", "Entries in the agent's turn stream.")
        for agent, depth in sorted(self.depth.items()):
            out.append(f'pygents_queue_depth{{agent="{_label(agent)}"}} {depth}')
        family("pygents_lock_wait_seconds", "summary", "Time spent waiting for tool/hook locks.")
        for lock, (waits, total) in sorted(self.lock_wait.items()):
            label = f'lock="{_label(lock)}"'
            out.append(f"pygents_lock_wait_seconds_sum{{{label}}} {total:.6f}")
            out.append(f"pygents_lock_wait_seconds_count{{{label}}} {int(waits)}")
        return "\n".join(out) + "\n"


async def serve(metrics: Metrics, host: str, port: int) -> asyncio.Server:
    """Start serving ``GET /metrics`` on ``host:port``; close the returned server to stop.

    Raises:
        DistError: the address cannot be bound (port in use, no such interface).
    """

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            async with asyncio.timeout(5):
                head = await reader.readuntil(b"\r\n\r\n")
            request = head[:_MAX_REQUEST].split(b"\r\n", 1)[0].split()
            path = request[1].split(b"?", 1)[0] if len(request) >= 2 else b""
            if request[:1] != [b"GET"]:
                status, body = "405 Method Not Allowed", "only GET\n"
            elif path in (b"/metrics", b"/"):
                status, body = "200 OK", metrics.render()
            else:
                status, body = "404 Not Found", "try /metrics\n"
            data = body.encode()
            writer.write(
                f"HTTP/1.1 {status}\r\nContent-Type: text/plain; version=0.0.4; charset=utf-8"
                f"\r\nContent-Length: {len(data)}\r\nConnection: close\r\n\r\n".encode()
                + data
            )
            await writer.drain()
        except (TimeoutError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, OSError):
            pass
        finally:
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()

    try:
        server = await asyncio.start_server(handle, host, port, limit=_MAX_REQUEST)
    except OSError as exc:
        raise DistError(f"cannot serve metrics on {host}:{port}: {exc.strerror or exc}") from exc
    _log.info("metrics on http://%s:%d/metrics", host, port)
    return server
