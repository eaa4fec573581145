"""Observability of real workers: structured log fields, Prometheus metrics, trace context."""

from __future__ import annotations

import asyncio
import json
import re
import socket
from collections.abc import Callable, Mapping
from typing import Any

import pytest

from pygents_dist import Client, DeadLetteredError, RemoteError, _trace
from pygents_dist._metrics import Metrics
from pygents_dist.testing import WorkerPool, WorkerProcess, free_port
from tests.dist.conftest import APPS
from tests.dist.helpers import eventually

type StartOps = Callable[..., WorkerProcess]


@pytest.fixture
def start_ops(worker_factory: WorkerPool, redis_url: str) -> StartOps:
    """Start a ready worker serving ``tests/dist/apps/ops_app.py``."""

    def start(*args: str, env: Mapping[str, str] | None = None) -> WorkerProcess:
        return worker_factory(
            "ops_app",
            args=("--lease-ms", "1500", *args),
            pythonpath=[APPS],
            env={"PYGENTS_REDIS_URL": redis_url, **(env or {})},
        )

    return start


def json_lines(worker: WorkerProcess) -> list[dict[str, Any]]:
    """The worker's ``--log-json`` lines (READY and other plain lines left out)."""
    return [json.loads(line) for line in worker.output if line.startswith("{")]


async def scrape(port: int, path: str = "/metrics") -> tuple[str, str]:
    """``(status line, body)`` of a plain HTTP GET, as Prometheus sends it."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(f"GET {path} HTTP/1.1\r\nHost: localhost\r\nAccept: text/plain\r\n\r\n".encode())
    await writer.drain()
    raw = await asyncio.wait_for(reader.read(), 10)
    writer.close()
    await writer.wait_closed()
    head, _, body = raw.decode().partition("\r\n\r\n")
    return head.split("\r\n", 1)[0], body


def samples(body: str) -> dict[str, float]:
    """``{"name{labels}": value}`` of every sample in an exposition text."""
    out: dict[str, float] = {}
    for line in body.splitlines():
        if line and not line.startswith("#"):
            series, _, value = line.rpartition(" ")
            out[series] = float(value)
    return out


# -- logs --------------------------------------------------------------------------------------


async def test_every_log_line_carries_the_worker_id_and_turn_lines_the_trace(
    start_ops: StartOps, client: Client
) -> None:
    worker = start_ops("--log-json", "--log-level", "INFO")
    with pytest.raises(RemoteError):
        await client.call("front", "fail", kwargs={"message": "on purpose"})
    assert await client.call("front", "forward", kwargs={"value": "v1"}) == "sent"
    await asyncio.to_thread(worker.wait_for_line, "noted v1", 15)

    lines = json_lines(worker)
    assert lines, worker.output_text
    assert {line.get("worker") for line in lines} == {worker.worker_id}
    failed = next(line for line in lines if line["msg"].startswith("turn failed"))
    assert failed["agent"] == "front" and failed["tool"] == "fail"
    assert re.fullmatch(r"[0-9a-f]{32}", failed["trace"])
    app_lines = [line for line in lines if line["logger"] == "ops_app"]
    assert {line["msg"] for line in app_lines} == {"forwarding v1", "noted v1"}
    assert all("trace" in line and "span" in line for line in app_lines)


# -- trace context -----------------------------------------------------------------------------


async def test_a_turn_sent_from_a_turn_continues_the_callers_trace_with_a_new_span(
    start_ops: StartOps, client: Client
) -> None:
    worker = start_ops("--log-json", "--log-level", "INFO")
    parent = _trace.new_traceparent()
    trace_id, parent_span = parent.split("-")[1:3]
    await client.call("front", "forward", kwargs={"value": "traced"}, trace=parent)
    await asyncio.to_thread(worker.wait_for_line, "noted traced", 15)

    by_msg = {line["msg"]: line for line in json_lines(worker) if line["logger"] == "ops_app"}
    forwarding, noted = by_msg["forwarding traced"], by_msg["noted traced"]
    assert forwarding["trace"] == noted["trace"] == trace_id
    assert forwarding["span"] == parent_span  # the caller's span is the turn's span
    assert noted["span"] not in (parent_span, "0" * 16)


async def test_turns_without_a_trace_each_start_their_own(
    start_ops: StartOps, client: Client
) -> None:
    worker = start_ops("--log-json", "--log-level", "INFO")
    for value in ("a", "b"):
        await client.call("front", "forward", kwargs={"value": value})
    await asyncio.to_thread(worker.wait_for_line, "noted b", 15)
    traces = {
        line["msg"]: line["trace"] for line in json_lines(worker) if line["logger"] == "ops_app"
    }
    assert traces["forwarding a"] == traces["noted a"]
    assert traces["forwarding b"] == traces["noted b"]
    assert traces["forwarding a"] != traces["forwarding b"]


def test_traceparent_parsing_follows_the_w3c_rules() -> None:
    fresh = _trace.new_traceparent()
    parsed = _trace.ids(fresh)
    assert parsed is not None
    child = _trace.child(fresh)
    assert _trace.ids(child) is not None
    assert child.split("-")[1] == parsed[0] and child.split("-")[2] != parsed[1]
    for bad in (
        None,
        "",
        "junk",
        "ff-" + "1" * 32 + "-" + "1" * 16 + "-01",  # version ff is invalid
        "00-" + "0" * 32 + "-" + "1" * 16 + "-01",  # all-zero trace id
        "00-" + "1" * 32 + "-" + "0" * 16 + "-01",  # all-zero span id
    ):
        assert _trace.ids(bad) is None
        assert _trace.ids(_trace.child(bad)) is not None  # an invalid parent starts a new trace


# -- metrics -----------------------------------------------------------------------------------


async def test_metrics_endpoint_counts_turns_dead_letters_durations_and_lock_waits(
    start_ops: StartOps, client: Client
) -> None:
    port = free_port()
    worker = start_ops("--metrics-port", str(port), "--metrics-host", "127.0.0.1")
    for i in range(3):
        assert await client.call("front", "echo", kwargs={"value": i}) == i
    with pytest.raises(RemoteError):
        await client.call("front", "fail", kwargs={"message": "x"})
    with pytest.raises(DeadLetteredError):
        await client.call("front", "count", kwargs={})
    # front and sink run at once in this worker; the lock makes one wait for the other
    held = await asyncio.gather(
        client.call("front", "locked", kwargs={"seconds": 0.3}),
        client.call("sink", "locked", kwargs={"seconds": 0.3}),
    )
    assert list(held) == [0.3, 0.3]

    status, body = await scrape(port)
    assert status == "HTTP/1.1 200 OK"
    got = samples(body)
    assert got[f'pygents_worker_info{{worker="{worker.worker_id}",version="0.8.0"}}'] == 1
    assert got['pygents_turns_started_total{agent="front"}'] == 5
    assert got['pygents_turns_completed_total{agent="front"}'] == 4
    assert got['pygents_turns_failed_total{agent="front"}'] == 1
    assert got['pygents_turns_dead_lettered_total{agent="front",reason="bad_arguments"}'] == 1
    assert got['pygents_turn_duration_seconds_count{agent="front"}'] == 5
    assert got['pygents_turn_duration_seconds_bucket{agent="front",le="+Inf"}'] == 5
    assert got['pygents_turn_duration_seconds_sum{agent="front"}'] >= 0.3
    assert got['pygents_lock_wait_seconds_count{lock="tool:locked"}'] == 2
    assert got['pygents_lock_wait_seconds_sum{lock="tool:locked"}'] >= 0.2
    assert "# TYPE pygents_turn_duration_seconds histogram" in body

    not_found, _ = await scrape(port, "/nope")
    assert not_found == "HTTP/1.1 404 Not Found"


async def test_queue_depth_gauge_follows_the_backlog(start_ops: StartOps, client: Client) -> None:
    port = free_port()
    start_ops("--metrics-port", str(port), "--metrics-host", "127.0.0.1")
    await client.pause("sink")
    await client.send_many("sink", "note", [{"value": str(i)} for i in range(3)])

    async def depth() -> float | None:
        value = samples((await scrape(port))[1]).get('pygents_queue_depth{agent="sink"}')
        return value if value == 3 else None

    assert await eventually(depth, "the sink's queue depth gauge to read 3") == 3
    await client.resume("sink")

    async def drained() -> bool:
        return samples((await scrape(port))[1]).get('pygents_queue_depth{agent="sink"}') == 0

    assert await eventually(drained, "the sink's queue depth gauge to read 0")


def test_metrics_render_escapes_label_values() -> None:
    metrics = Metrics('w"1', "0.8.0")
    metrics.turn_started('a\\b"c\nd')
    text = metrics.render()
    assert 'pygents_worker_info{worker="w\\"1",version="0.8.0"} 1' in text
    assert 'pygents_turns_started_total{agent="a\\\\b\\"c\\nd"} 1' in text


async def test_a_taken_metrics_port_stops_the_worker_with_one_clear_line(
    worker_factory: WorkerPool, redis_url: str
) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(RuntimeError, match="exited") as info:
            worker_factory(
                "ops_app",
                args=("--metrics-port", str(port), "--metrics-host", "127.0.0.1"),
                pythonpath=[APPS],
            )
    assert f"error: cannot serve metrics on 127.0.0.1:{port}" in str(info.value)
    assert worker_factory.workers[0].returncode == 2
