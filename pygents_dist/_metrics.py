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

from pygents_dist.errors import DistError

__all__ = ["BUCKETS", "Metrics", "serve"]

_log = logging.getLogger("pygents_dist.metrics")

#: Upper bounds (seconds) of the turn duration histogram's buckets (+Inf is implied).
BUCKETS = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0)
_MAX_REQUEST = 8192


def _label(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


class _Histogram:
    __slots__ = ("buckets", "count", "total")

    def __init__(self) -> None:
        self.buckets = [0] * len(BUCKETS)
        self.count = 0
        self.total = 0.0

    def observe(self, seconds: float) -> None:
        self.count += 1
        self.total += seconds
        index = bisect.bisect_left(BUCKETS, seconds)  # the first bound >= seconds
        if index < len(BUCKETS):
            self.buckets[index] += 1  # per bucket here; render() makes them cumulative


class _AgentSeries:
    """One agent's turn counters and duration histogram."""

    __slots__ = ("completed", "durations", "failed", "started")

    def __init__(self) -> None:
        self.started = 0
        self.completed = 0
        self.failed = 0
        self.durations = _Histogram()

    def finished(self, seconds: float, ok: bool) -> None:
        if ok:
            self.completed += 1
        else:
            self.failed += 1
        self.durations.observe(seconds)


class Metrics:
    """The counters of one worker; ``render()`` gives the Prometheus exposition text."""

    def __init__(self, worker_id: str = "", version: str = "") -> None:
        self.worker_id = worker_id
        self.version = version
        self._series: dict[str, _AgentSeries] = {}
        self.dead: defaultdict[tuple[str, str], int] = defaultdict(int)
        self.depth: dict[str, int] = {}
        self.lock_wait: defaultdict[str, list[float]] = defaultdict(lambda: [0.0, 0.0])
        self.active: Callable[[], int] = lambda: 0

    def turn_started(self, agent: str) -> None:
        """A turn of ``agent`` begins running."""
        self.series(agent).started += 1

    def turn_finished(self, agent: str, seconds: float, ok: bool) -> None:
        """A turn of ``agent`` ended after ``seconds``; ``ok`` if its tool returned."""
        self.series(agent).finished(seconds, ok)

    def series(self, agent: str) -> _AgentSeries:
        """The turn counters of ``agent`` (one lookup for all of a turn's updates)."""
        found = self._series.get(agent)
        if found is None:
            found = self._series[agent] = _AgentSeries()
        return found

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
        by_agent = sorted(self._series.items())

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
        for name, series, text in (
            ("pygents_turns_started_total", "started", "Turns this worker began running."),
            ("pygents_turns_completed_total", "completed", "Turns whose tool returned."),
            ("pygents_turns_failed_total", "failed", "Turns that raised or timed out."),
        ):
            family(name, "counter", text)
            for agent, counts in by_agent:
                out.append(f'{name}{{agent="{_label(agent)}"}} {getattr(counts, series)}')
        family("pygents_turns_dead_lettered_total", "counter", "Messages set aside, by reason.")
        for (agent, reason), value in sorted(self.dead.items()):
            out.append(
                f'pygents_turns_dead_lettered_total{{agent="{_label(agent)}",'
                f'reason="{_label(reason)}"}} {value}'
            )
        family("pygents_turn_duration_seconds", "histogram", "Run time of finished turns.")
        name = "pygents_turn_duration_seconds"
        for agent, counts in by_agent:
            histogram = counts.durations
            if not histogram.count:
                continue
            label = f'agent="{_label(agent)}"'
            running = 0
            for bound, count in zip(BUCKETS, histogram.buckets, strict=True):
                running += count
                out.append(f'{name}_bucket{{{label},le="{bound}"}} {running}')
            out.append(
                f'pygents_turn_duration_seconds_bucket{{{label},le="+Inf"}} {histogram.count}'
            )
            out.append(f"pygents_turn_duration_seconds_sum{{{label}}} {histogram.total:.6f}")
            out.append(f"pygents_turn_duration_seconds_count{{{label}}} {histogram.count}")
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
