"""Run the research pipeline of ``workers/research.py`` end to end: ``python -m workers.demo``.

1. Redis, in the order the test fixtures use: ``PYGENTS_REDIS_URL`` if set, else a private
   ``redis-server`` from ``PATH`` on a free port, else a throwaway Redis container when Docker
   answers (image ``PYGENTS_REDIS_IMAGE``, default ``redis:7-alpine``, on 127.0.0.1 only); what
   the demo started is stopped at the end. With none of them it prints one line saying what to
   install and exits 2.
2. Workers: ``DEMO_WORKERS`` (default 2) ``pygents-worker workers.research`` processes.
3. A ``Client`` drives one research job, printing each stage as it arrives: the planner's
   streamed events, the findings as searchers and the summarizer finish them, and the report
   as it streams; then the results and a check of the ledger that ``record`` (a ``lock=True``
   tool) kept across processes.
4. Shutdown: SIGTERM to every worker (each drains and exits 0), then Redis stops.

Exit status 0 when every step worked; a failure is one ``error:`` line on stderr (with the
workers' output, if any) and exit status 1. The keys live under their own namespace
(``PYGENTS_NAMESPACE``, else a fresh ``demo-<hex>``), so an existing Redis is not disturbed.
In ``compose.yaml`` the same driver runs with ``DEMO_WORKERS=0`` against the compose workers.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import shutil
import sys
import tempfile
import time
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

from pygents_dist import Client, DistError
from pygents_dist.testing import NoRedisError, WorkerProcess, resolve_redis

ROOT = Path(__file__).resolve().parent.parent
TOPIC = "distributed agent runtimes"


def say(tag: str, text: str) -> None:
    """One line of the demo's output: ``[tag] text``, flushed at once."""
    print(f"[{tag}] {text}", flush=True)


def one_line(exc: BaseException, limit: int = 300) -> str:
    """``Type: message`` on one line; a long message (Redis explains protected mode in a
    paragraph) is cut at the end of its last whole sentence within ``limit`` characters."""
    text = " ".join(str(exc).split())
    if len(text) > limit:
        cut = text.rfind(". ", 0, limit)
        text = text[: cut + 1] if cut > limit // 4 else text[: limit - 3] + "..."
    return f"{type(exc).__name__}: {text}"


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m workers.demo", description=__doc__.split("\n")[0])
    p.add_argument("--topic", default=TOPIC, help=f"what to research ({TOPIC!r})")
    p.add_argument("--angles", type=int, default=6, help="queries to fan out (1-8, default 6)")
    p.add_argument(
        "--workers",
        type=int,
        default=int(os.environ.get("DEMO_WORKERS", "2")),
        help="worker processes to start ($DEMO_WORKERS, default 2; 0 uses running ones)",
    )
    p.add_argument("--timeout", type=float, default=60.0, help="seconds the job may take (60)")
    return p


async def drive(client: Client, topic: str, angles: int, timeout: float) -> dict[str, Any]:
    """Run one research job through the agents, printing progress; return its outcome."""
    job = f"job-{uuid.uuid4().hex[:8]}"
    say("job", f"{job}: researching {topic!r} with {angles} queries")
    async for event in client.stream(
        "planner", "research", kwargs={"topic": topic, "job": job, "angles": angles}
    ):
        if event["stage"] == "plan":
            say("plan", f"{len(event['queries'])} queries, planned by {event['by']}")
        elif event["stage"] == "dispatch":
            say("dispatch", f"#{event['index']} {event['query']!r} -> {event['to']}")
        else:
            say("wait", f"waiting for {event['count']} findings")
    deadline = time.monotonic() + timeout
    seen: set[str] = set()
    state: dict[str, Any] = {"total": angles, "done": 0, "findings": []}
    while len(seen) < angles:
        if time.monotonic() > deadline:
            raise TimeoutError(f"only {len(seen)} of {angles} findings within {timeout:g}s")
        state = await client.call("planner", "progress", kwargs={"job": job})
        for finding in state["findings"]:
            if finding["query"] in seen:
                continue
            seen.add(finding["query"])
            say(
                "progress",
                f"{len(seen)}/{state['total']} {finding['query']!r}: found by "
                f"{finding['found_by']}, summarized by {finding['summarized_by']}",
            )
        if len(seen) < angles:
            await asyncio.sleep(0.1)  # a status poll, as a dashboard would
    report = []
    async for line in client.stream("planner", "write_report", kwargs={"job": job}):
        report.append(line)
        say("report", line)
    return {"job": job, "findings": state["findings"], "report": report}


def _summary(outcome: dict[str, Any]) -> None:
    findings = outcome["findings"]
    processes = Counter(f["found_by"].split("@", 1)[1] for f in findings)
    processes.update(f["summarized_by"].split("@", 1)[1] for f in findings)
    sources = sum(len(f["sources"]) for f in findings)
    refs = sorted(
        [s["ref"] for f in findings for s in f["sources"]] + [f["section"] for f in findings]
    )
    intact = refs == list(range(1, len(refs) + 1))
    say(
        "result",
        f"{len(findings)} findings, {sources} sources, report of {len(outcome['report'])} lines",
    )
    say("result", f"turns by process: {dict(sorted(processes.items()))}")
    say(
        "result",
        f"ledger numbers 1..{len(refs)} {'unique and gap-free' if intact else 'BROKEN'} "
        "(record is a lock=True tool shared by every worker)",
    )
    if not intact:
        raise RuntimeError(f"ledger numbering is broken: {refs}")


def _start_workers(count: int, url: str, namespace: str, research_dir: str) -> list[WorkerProcess]:
    workers = []
    for _ in range(count):
        worker = WorkerProcess(
            "workers.research",
            redis_url=url,
            # A few agents at a time per worker, so the demo's five agents spread out.
            args=["--lease-ms", "3000", "--concurrency", "2", "--log-level", "WARNING"],
            pythonpath=[ROOT],
            env={"PYGENTS_NAMESPACE": namespace, "RESEARCH_DIR": research_dir},
            cwd=ROOT,
        )
        workers.append(worker)
        worker.start()
    for worker in workers:
        worker.wait_ready(30)
    return workers


def _close_all(workers: list[WorkerProcess]) -> None:
    for worker in workers:
        worker.close()  # kills what SIGTERM did not stop; a no-op for exited ones


def _stop_workers(workers: list[WorkerProcess]) -> list[int]:
    for worker in workers:
        worker.terminate()
    codes = []
    for worker in workers:
        codes.append(worker.stop(15))
    return codes


def main(argv: list[str] | None = None) -> int:
    """Run the demo; return the exit status."""
    ns = _parser().parse_args(argv)
    namespace = os.environ.get("PYGENTS_NAMESPACE") or f"demo-{uuid.uuid4().hex[:8]}"
    with contextlib.ExitStack() as stack:
        try:
            redis = resolve_redis(url_variable="PYGENTS_REDIS_URL")
        except NoRedisError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
        stack.callback(redis.close)
        url = redis.url
        if redis.kind == "env":
            say("redis", f"using PYGENTS_REDIS_URL, namespace {namespace!r}")
        elif redis.kind == "container":
            say("redis", f"no redis-server on PATH: started a Redis container at {url}")
        else:
            say("redis", f"started a private redis-server at {url}")
        research_dir = os.environ.get("RESEARCH_DIR")
        if not research_dir:
            research_dir = tempfile.mkdtemp(prefix="pygents-research-")
            stack.callback(shutil.rmtree, research_dir, True)
        workers: list[WorkerProcess] = []
        stack.callback(_close_all, workers)
        try:
            workers.extend(_start_workers(ns.workers, url, namespace, research_dir))
            if workers:
                say("workers", f"{len(workers)} ready: {', '.join(w.worker_id for w in workers)}")
            outcome = asyncio.run(_run(url, namespace, ns))
            _summary(outcome)
        except (DistError, TimeoutError, RuntimeError) as exc:
            print(f"error: {one_line(exc)}", file=sys.stderr)
            for worker in workers:
                print(f"----- {worker!r} -----\n{worker.output_text}", file=sys.stderr)
            return 1
        codes = _stop_workers(workers)
        if workers:
            say("shutdown", f"workers exited with {codes} after SIGTERM")
        if any(codes):
            return 1
    say("done", "ok" if redis.kind == "env" else "redis stopped")
    return 0


async def _run(url: str, namespace: str, ns: argparse.Namespace) -> dict[str, Any]:
    async with Client(url, namespace=namespace) as client:
        deadline = time.monotonic() + 30
        while "planner" not in await client.agents():  # compose: workers may still be starting
            if time.monotonic() > deadline:
                raise TimeoutError("no worker declared the planner agent within 30s")
            await asyncio.sleep(0.2)
        return await drive(client, ns.topic, ns.angles, ns.timeout)


if __name__ == "__main__":
    sys.exit(main())
