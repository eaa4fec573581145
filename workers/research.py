"""An example pygents_dist app: a research pipeline spread over worker processes.

No LLM and no network: the "search" and "summary" steps are deterministic fake work with the
shape of the real thing (latency, several results, citations), so the example runs anywhere
and its output can be checked.

The flow of one research job::

    client ──stream──▶ planner.research      plans queries (kept in the planner's context
                          │                  pool), yields a stage event per step
                          ├─send─▶ searcher-0.search ─┐   streaming tool: one hit at a time,
                          ├─send─▶ searcher-1.search ─┤   each cited in the shared ledger
                          └─send─▶ searcher-2.search ─┤   (record: a lock=True tool)
                                                      ▼
                                        summarizer.summarize   cites a section, then
                                                      │
                          planner.collect ◀──send─────┘        stores the finding in the pool
    client ──call──▶ planner.progress    (how many findings are in?)
    client ──stream─▶ planner.write_report   the report, line by line, like a model streaming

Every agent may be served by any worker: ``pygents-worker workers.research`` on as many
processes and hosts as you like (they need a shared ``RESEARCH_DIR`` for the ledger and the
reports, e.g. a volume in ``compose.yaml``). ``python -m workers.demo`` runs the whole thing.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import os
import re
import socket
import tempfile
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from pygents import (
    Agent,
    AgentHook,
    AgentRegistry,
    ContextItem,
    ContextPool,
    ContextQueue,
    Turn,
    hook,
    tool,
)

__all__ = ["SEARCHERS", "planner", "searchers", "summarizer"]

log = logging.getLogger("workers.research")

#: The searcher agents the planner fans queries out to (round robin).
SEARCHERS = ("searcher-0", "searcher-1", "searcher-2")
_JOB = re.compile(r"^[a-z0-9][a-z0-9-]{0,63}$")
_ANGLES = (
    "overview of",
    "history of",
    "failure modes in",
    "benchmarks for",
    "security of",
    "operating",
    "open problems in",
    "alternatives to",
)


def research_dir() -> Path:
    """Where jobs keep their ledger and report (``RESEARCH_DIR``; shared by all workers)."""
    return Path(os.environ.get("RESEARCH_DIR") or Path(tempfile.gettempdir()) / "pygents-research")


def job_dir(job: str) -> Path:
    """The directory of one job; job names are slugs, so a client cannot pick a path."""
    if not _JOB.match(job):
        raise ValueError(f"job name {job!r} must be 1-64 of a-z, 0-9 and '-'")
    path = research_dir() / job
    path.mkdir(parents=True, exist_ok=True)
    return path


def _where() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def _digest(*parts: str) -> int:
    return int.from_bytes(hashlib.sha256("\x1f".join(parts).encode()).digest()[:8], "big")


def _latency(*parts: str) -> float:
    """A deterministic 20-90 ms pause: the shape of a network call, not its cost."""
    return 0.02 + (_digest("latency", *parts) % 8) * 0.01


# -- the shared resource -------------------------------------------------------------------


@tool(lock=True)
async def record(job: str, kind: str, text: str, by: str) -> int:
    """Append an entry to the job's ledger and return its number (1, 2, 3, ...).

    A read-modify-write of one JSON file that searchers and the summarizer, on any worker,
    call at the same time: ``lock=True`` makes it one call at a time across every worker (a
    Redis lease), so no number is given twice and no entry is lost.

    Idempotent: an entry of the same ``kind`` and ``text`` keeps the number it has. A turn
    runs at least once, so when a worker dies after citing a source but before its turn
    committed, the turn runs again elsewhere and gets the same numbers (the ledger stays
    gap-free; the entry still names the worker that first cited it).
    """
    path = job_dir(job) / "ledger.json"
    entries: list[dict[str, Any]] = json.loads(path.read_text()) if path.exists() else []
    await asyncio.sleep(0.005)  # a storage round trip: without the lock, writers would race
    for entry in entries:
        if (entry["kind"], entry["text"]) == (kind, text):
            return int(entry["n"])
    number = len(entries) + 1
    entries.append({"n": number, "kind": kind, "text": text, "by": by, "ts": time.time()})
    tmp = path.with_suffix(f".{os.getpid()}.tmp")
    tmp.write_text(json.dumps(entries, indent=1))
    tmp.replace(path)
    return number


def read_ledger(job: str) -> list[dict[str, Any]]:
    """The job's ledger entries, in order (empty before the first)."""
    path = job_dir(job) / "ledger.json"
    return json.loads(path.read_text()) if path.exists() else []


# -- planner -------------------------------------------------------------------------------


def plan_queries(topic: str, angles: int) -> list[str]:
    """The queries a job runs: ``angles`` deterministic angles on the topic."""
    start = _digest("plan", topic) % len(_ANGLES)
    return [f"{_ANGLES[(start + i) % len(_ANGLES)]} {topic}" for i in range(angles)]


@tool
async def research(
    topic: str, job: str, angles: int = 6, pool: ContextPool[Any] | None = None
) -> AsyncIterator[Any]:
    """Plan a research job and fan its queries out to the searchers; yields stage events.

    The plan goes to the planner's context pool (kept in Redis, so any worker continues the
    job); the searches leave through ``agent.send`` when this turn commits.
    """
    job_dir(job)
    if not 1 <= angles <= len(_ANGLES):
        raise ValueError(f"angles must be 1-{len(_ANGLES)}, got {angles}")
    queries = plan_queries(topic, angles)
    yield ContextItem(
        {"topic": topic, "queries": queries, "started": time.time()},
        f"research plan for {topic!r}",
        id=f"plan:{job}",
    )
    yield {"stage": "plan", "job": job, "queries": queries, "by": _where()}
    me = AgentRegistry.get("planner")
    for index, query in enumerate(queries):
        searcher = SEARCHERS[index % len(SEARCHERS)]
        await me.send(
            searcher,
            Turn(
                "search",
                kwargs={"job": job, "query": query, "index": index, "searcher": searcher},
            ),
        )
        yield {"stage": "dispatch", "index": index, "query": query, "to": searcher}
    yield {"stage": "waiting", "count": len(queries)}


@tool
async def collect(
    job: str, index: int, finding: dict[str, Any], pool: ContextPool[Any] | None = None
) -> None:
    """Store one finding (sent by the summarizer) in the planner's context pool."""
    assert pool is not None
    await pool.add(
        ContextItem(finding, f"finding {index}: {finding['query']}", f"{job}:{index:03d}")
    )


def _findings(job: str, pool: ContextPool[Any]) -> list[dict[str, Any]]:
    prefix = f"{job}:"
    found = [i for i in pool.items if i.id is not None and i.id.startswith(prefix)]
    return [i.content for i in sorted(found, key=lambda i: i.id or "")]


@tool
async def progress(job: str, pool: ContextPool[Any] | None = None) -> dict[str, Any]:
    """How far a job is: ``{"total", "done", "findings"}`` (findings in query order)."""
    assert pool is not None
    try:
        plan = pool.get(f"plan:{job}").content
    except KeyError:
        return {"total": None, "done": 0, "findings": []}
    findings = _findings(job, pool)
    return {"total": len(plan["queries"]), "done": len(findings), "findings": findings}


@tool
async def write_report(job: str, pool: ContextPool[Any] | None = None) -> AsyncIterator[str]:
    """Stream the job's report a line at a time (as a model streams tokens) and save it as
    ``report.md`` in the job's directory."""
    assert pool is not None
    plan = pool.get(f"plan:{job}").content
    findings = _findings(job, pool)
    ledger = read_ledger(job)
    numbers = [e["n"] for e in ledger]
    lines = [f"# Research: {plan['topic']}", ""]
    for i, finding in enumerate(findings, 1):
        refs = " ".join(f"[{s['ref']}]" for s in finding["sources"])
        lines += [f"## {i}. {finding['query'].capitalize()}", finding["summary"] + f" {refs}", ""]
    lines.append("## Ledger")
    lines += [f"[{e['n']}] {e['kind']}: {e['text']} ({e['by']})" for e in ledger]
    intact = numbers == list(range(1, len(numbers) + 1))
    lines.append("")
    lines.append(
        f"_ledger: {len(ledger)} entries, numbered 1..{len(ledger)} "
        f"{'without gaps or repeats' if intact else 'WITH GAPS OR REPEATS'}_"
    )
    (job_dir(job) / "report.md").write_text("\n".join(lines) + "\n")
    for line in lines:
        await asyncio.sleep(0.01)
        yield line


planner = Agent(
    "planner",
    "Plans research jobs, fans queries out to searchers and assembles the report",
    [research, collect, progress, write_report],
    context_pool=ContextPool(limit=400),
    tags=["research"],
)


# -- searchers -----------------------------------------------------------------------------


def fake_hits(query: str, count: int = 3) -> list[dict[str, str]]:
    """Deterministic search results for ``query``."""
    slug = re.sub(r"[^a-z0-9]+", "-", query.lower()).strip("-")
    hits = []
    for i in range(count):
        n = _digest("hit", query, str(i)) % 10_000
        hits.append(
            {
                "url": f"https://papers.example.org/{slug}/{n:04d}",
                "title": f"{query.capitalize()}, part {i + 1} (#{n})",
            }
        )
    return hits


@tool
async def search(job: str, query: str, index: int, searcher: str) -> AsyncIterator[Any]:
    """Search for ``query``: a streaming tool yielding each hit as it "arrives".

    Each hit is cited in the shared ledger (``record``) and remembered in the searcher's
    context queue; then the hits go to the summarizer.
    """
    by = f"{searcher}@{_where()}"
    hits = []
    for hit in fake_hits(query):
        await asyncio.sleep(_latency(query, hit["url"]))
        ref = await record(job=job, kind="source", text=hit["url"], by=by)
        hits.append({**hit, "ref": ref})
        yield ContextItem(f"{query}: {hit['title']}")  # -> this searcher's context queue
    log.info("searched %r: %d hits", query, len(hits), extra={"agent": searcher})
    await AgentRegistry.get(searcher).send(
        "summarizer",
        Turn(
            "summarize",
            kwargs={"job": job, "query": query, "index": index, "hits": hits, "found_by": by},
        ),
    )


searchers = [
    Agent(name, "Finds sources for one query at a time", [search], tags=["research"])
    for name in SEARCHERS
]


# -- summarizer ----------------------------------------------------------------------------


@tool
async def summarize(
    job: str,
    query: str,
    index: int,
    hits: list[dict[str, Any]],
    found_by: str,
    recent: ContextQueue[Any] | None = None,
) -> ContextItem[str]:
    """Summarize one query's hits, cite the section in the ledger, send the finding to the
    planner, and keep the summary in this agent's context queue (its recent history)."""
    await asyncio.sleep(_latency("summary", query))
    by = f"summarizer@{_where()}"
    titles = "; ".join(h["title"] for h in hits)
    angle = ("converge", "disagree", "are thin")[_digest("tone", query) % 3]
    summary = f"{len(hits)} sources on {query} {angle}: {titles}."
    context = len(recent) if recent is not None else 0
    section = await record(job=job, kind="section", text=query, by=by)
    finding = {
        "query": query,
        "summary": summary,
        "sources": [{"ref": h["ref"], "url": h["url"]} for h in hits],
        "section": section,
        "found_by": found_by,
        "summarized_by": by,
        "context_items": context,
    }
    await AgentRegistry.get("summarizer").send(
        "planner", Turn("collect", kwargs={"job": job, "index": index, "finding": finding})
    )
    return ContextItem(summary)


summarizer = Agent(
    "summarizer",
    "Summarizes a query's sources and reports back to the planner",
    [summarize],
    context_queue=ContextQueue(limit=20),
    tags=["research"],
)


# -- hooks ---------------------------------------------------------------------------------


@hook(AgentHook.AFTER_TURN, tags=["research"])
async def log_turn(agent: Agent, turn: Turn[Any]) -> None:
    """Log every finished turn of the research agents (the line carries worker and trace)."""
    log.info("%s finished %s", agent.name, turn.tool.__name__, extra={"agent": agent.name})
