"""Command lines: ``pygents-worker`` (serve agents) and ``pygents`` (operate a deployment).

Both go through ``Transport`` like everything else. Errors a user can fix (bad module path,
unreachable Redis, bad JSON, unknown agent) print one line and exit non-zero:

    0 ok · 1 failed operation · 2 bad usage or module · 3 Redis unreachable
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import importlib
import os
import signal
import sys
import threading
from collections.abc import Sequence
from typing import Any

from pygents.agent import Agent
from pygents.registry import AgentRegistry
from pygents_dist import _flow_ops, _log, _wire
from pygents_dist._client import Client, default_namespace, default_redis_url
from pygents_dist._worker import Worker, WorkerSettings
from pygents_dist.errors import ConnectionLostError, DistError, NotReplicatedError

__all__ = ["main", "worker_main"]

EXIT_FAILED, EXIT_USAGE, EXIT_REDIS = 1, 2, 3
_STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)


def _fail(message: str, code: int) -> int:
    print(f"error: {message}", file=sys.stderr)
    return code


# -- pygents-worker ----------------------------------------------------------------------


def _worker_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="pygents-worker",
        description="Serve the agents defined in a Python module from Redis streams. "
        "Run as many as you like, on any machines; they share the work.",
    )
    p.add_argument(
        "target",
        help="MODULE or MODULE:ATTR. The module defines tools, hooks and agents; ATTR names "
        "one agent or a list of agents to serve (default: every agent the module defines)",
    )
    p.add_argument(
        "--redis-url",
        default=default_redis_url(),
        help="Redis URL, redis:// or rediss:// with user:password@ (default: $PYGENTS_REDIS_URL "
        "or redis://localhost:6379/0)",
    )
    p.add_argument(
        "--namespace",
        default=default_namespace(),
        help="key namespace shared with clients (default: $PYGENTS_NAMESPACE or none)",
    )
    p.add_argument("--agents", help="comma-separated agent names to serve (a subset)")
    p.add_argument(
        "--concurrency", type=int, default=128, help="agents served at once (default 128)"
    )
    p.add_argument("--batch", type=int, default=100, help="turns per read and commit (100)")
    p.add_argument(
        "--parallel",
        action="append",
        default=[],
        metavar="AGENT=N",
        help="let a stateless agent run N turns at once (order is then not kept); repeatable",
    )
    p.add_argument(
        "--lease-ms",
        type=int,
        default=15_000,
        help="liveness lease: a dead worker's agents move on after this long (15000)",
    )
    p.add_argument(
        "--max-deliveries",
        type=int,
        default=5,
        help="dead-letter a turn whose workers died this many times running it (5)",
    )
    p.add_argument(
        "--dedup-window-ms",
        type=int,
        default=600_000,
        help="how long committed turn ids are kept to drop duplicate deliveries (600000)",
    )
    p.add_argument(
        "--grace",
        type=float,
        default=30.0,
        help="seconds in-flight turns get to finish on SIGTERM/SIGINT (30)",
    )
    p.add_argument(
        "--linger-ms",
        type=int,
        default=20,
        help="keep an agent this long after its last turn, for the next one (20; 0: off)",
    )
    p.add_argument(
        "--durability",
        choices=["primary", "replicated"],
        default="primary",
        help="when a commit counts: once the primary has it, or once a replica has it too "
        "(WAIT; refused without replicas) (primary)",
    )
    p.add_argument(
        "--max-active-agents",
        type=int,
        default=10_000,
        help="instances and runtime-made agents kept in memory at once (10000)",
    )
    p.add_argument(
        "--max-instances",
        action="append",
        default=[],
        metavar="KIND=N",
        help="dead-letter turns to new instances of KIND past N of them; repeatable",
    )
    p.add_argument(
        "--instance-expiry",
        type=float,
        metavar="SECONDS",
        help="forget instances not taken for this long (off by default)",
    )
    p.add_argument(
        "--loop",
        choices=["uvloop", "asyncio"],
        default="uvloop",
        help="event loop (uvloop where installed, the default)",
    )
    p.add_argument("--log-level", default="INFO", help="DEBUG, INFO, WARNING, ERROR (INFO)")
    p.add_argument("--log-json", action="store_true", help="one JSON object per log line")
    p.add_argument(
        "--metrics-port",
        type=int,
        metavar="PORT",
        help="serve Prometheus metrics at http://HOST:PORT/metrics (off by default)",
    )
    p.add_argument(
        "--metrics-host", default="0.0.0.0", help="address the metrics server binds (0.0.0.0)"
    )
    p.add_argument(
        "--max-message-bytes",
        type=int,
        default=_wire.Limits().max_bytes,
        help="dead-letter turns larger than this, refuse values larger (1 MiB)",
    )
    p.add_argument(
        "--max-depth",
        type=int,
        default=_wire.Limits().max_depth,
        help="dead-letter turns nested deeper than this (32)",
    )
    return p


def _load_agents(target: str) -> list[Agent]:
    module_name, _, attr = target.partition(":")
    before = set(AgentRegistry._agents)
    module = importlib.import_module(module_name)
    if attr:
        value = getattr(module, attr)
        agents = list(value) if isinstance(value, (list, tuple)) else [value]
        for agent in agents:
            if not isinstance(agent, Agent):
                raise TypeError(f"{target} is not an Agent or a list of Agents")
        return agents
    found = [a for name, a in AgentRegistry._agents.items() if name not in before]
    return found or AgentRegistry.all()


def _settings(ns: argparse.Namespace) -> WorkerSettings:
    secrets = [s.strip().encode() for s in os.environ.get("PYGENTS_SECRETS", "").split(",")]
    secrets = [s for s in secrets if s]
    if ns.metrics_port is not None and not 0 <= ns.metrics_port < 65536:
        raise ValueError(f"--metrics-port {ns.metrics_port} is not a TCP port")
    if ns.instance_expiry is not None and not ns.instance_expiry > 0:
        raise ValueError(f"--instance-expiry must be > 0 seconds, got {ns.instance_expiry}")
    if ns.max_message_bytes < 1024 or ns.max_depth < 2:
        raise ValueError("--max-message-bytes must be >= 1024 and --max-depth >= 2")
    return WorkerSettings(
        redis_url=ns.redis_url,
        namespace=ns.namespace,
        agents=[a for a in ns.agents.split(",") if a] if ns.agents else None,
        concurrency=ns.concurrency,
        batch=ns.batch,
        lease_ms=ns.lease_ms,
        max_deliveries=ns.max_deliveries,
        grace_seconds=ns.grace,
        dedup_window_ms=ns.dedup_window_ms,
        secrets=secrets,
        parallel=_per_agent("--parallel", ns.parallel),
        limits=_wire.Limits(ns.max_message_bytes, ns.max_depth),
        metrics_port=ns.metrics_port,
        metrics_host=ns.metrics_host,
        linger_ms=ns.linger_ms,
        max_active_agents=ns.max_active_agents,
        max_instances=_per_agent("--max-instances", ns.max_instances),
        instance_expiry_s=ns.instance_expiry,
        redis_options={"durability": ns.durability} if ns.durability != "primary" else {},
    )


def _per_agent(option: str, values: list[str]) -> dict[str, int]:
    """``NAME=N`` options (N >= 1) as a mapping."""
    out: dict[str, int] = {}
    for value in values:
        name, _, count = value.partition("=")
        if not name or not count.isdigit() or int(count) < 1:
            raise ValueError(f"{option} expects NAME=N with N >= 1, got {value!r}")
        out[name] = int(count)
    return out


def _exit_before_serving(signum: int, frame: object) -> None:
    """SIGTERM or SIGINT before the worker serves: nothing is in flight, so exit 0 now."""
    raise SystemExit(0)


def _stop_early_on_signals() -> dict[int, Any]:
    """Exit 0 on SIGTERM/SIGINT until ``_serve`` installs the draining handlers; return the
    handlers replaced. As a container's PID 1 the process would otherwise ignore a SIGTERM
    that arrives while it starts (``docker stop`` right after ``docker start``) and be killed
    when the stop timeout runs out."""
    if threading.current_thread() is not threading.main_thread():
        return {}
    return {sig: signal.signal(sig, _exit_before_serving) for sig in _STOP_SIGNALS}


def worker_main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``pygents-worker``; returns the exit code."""
    previous = _stop_early_on_signals()
    ns = _worker_parser().parse_args(argv)
    _log.configure(ns.log_level, ns.log_json)
    sys.path.insert(0, os.getcwd())
    try:
        worker = _worker(ns)
    except _LoadError as exc:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        return _fail(str(exc), EXIT_USAGE)
    runner = _event_loop_runner(ns.loop)
    try:
        runner(_serve(worker))
    except NotReplicatedError as exc:  # --durability replicated on a Redis without replicas
        return _fail(f"Redis at {_safe_url(ns.redis_url)}: {exc}", EXIT_REDIS)
    except ConnectionLostError as exc:
        return _fail(f"Redis unreachable at {_safe_url(ns.redis_url)}: {exc}", EXIT_REDIS)
    except DistError as exc:  # e.g. the metrics port is taken
        return _fail(str(exc), EXIT_USAGE)
    return 0


class _LoadError(Exception):
    """The worker's module or options are unusable (exit 2)."""


def _worker(ns: argparse.Namespace) -> Worker:
    """The worker of the parsed options, its agents loaded.

    Raises:
        _LoadError: the module does not load or the options do not fit it.
    """
    try:
        agents = _load_agents(ns.target)
        settings = _settings(ns)
        if settings.agents:
            wanted = set(settings.agents)
            missing = wanted - {a.name for a in agents}
            if missing:
                raise _LoadError(f"--agents names unknown agent(s): {sorted(missing)}")
            agents = [a for a in agents if a.name in wanted]
        return Worker(settings, agents)
    except (ImportError, AttributeError, TypeError, ValueError) as exc:
        raise _LoadError(f"cannot load {ns.target!r}: {exc}") from exc


def _event_loop_runner(choice: str) -> Any:
    if choice == "uvloop":
        try:
            import uvloop

            return uvloop.run
        except ImportError:
            pass
    return asyncio.run


async def _serve(worker: Worker) -> None:
    loop = asyncio.get_running_loop()
    for sig in _STOP_SIGNALS:
        loop.add_signal_handler(sig, worker.stop)

    def ready(worker_id: str) -> None:
        # Everything loaded so far (the agents, their tools, the registries) lives as long as
        # the process: keep it out of the collector's full passes. With 10,000 agents a
        # full pass otherwise costs ~100 ms whenever enough turns' objects have aged.
        gc.freeze()
        print(f"READY {worker_id}", flush=True)

    try:
        await worker.run(on_ready=ready)
    finally:
        # Closing the loop would restore the default handlers, and a second SIGTERM during
        # interpreter teardown would then kill a worker that already shut down cleanly.
        for sig in _STOP_SIGNALS:
            loop.remove_signal_handler(sig)
            signal.signal(sig, signal.SIG_IGN)


def _safe_url(url: str) -> str:
    if "@" in url:
        scheme, rest = url.split("://", 1)
        return f"{scheme}://***@{rest.split('@', 1)[1]}"
    return url


# -- pygents (ops) -----------------------------------------------------------------------


def _ops_parser() -> argparse.ArgumentParser:
    # --json is accepted before or after the command: the sub-parsers' copy defaults to
    # SUPPRESS so it does not overwrite the top-level value.
    as_json = argparse.ArgumentParser(add_help=False)
    as_json.add_argument(
        "--json", action="store_true", default=argparse.SUPPRESS, help="machine-readable output"
    )
    p = argparse.ArgumentParser(
        prog="pygents",
        description="Operate a pygents_dist deployment. Exit status: 0 ok, 1 failed, "
        "2 bad usage, 3 Redis unreachable.",
    )
    p.add_argument(
        "--redis-url",
        default=default_redis_url(),
        help="Redis URL (default: $PYGENTS_REDIS_URL or redis://localhost:6379/0)",
    )
    p.add_argument(
        "--namespace",
        default=default_namespace(),
        help="key namespace (default: $PYGENTS_NAMESPACE or none)",
    )
    p.add_argument("--json", action="store_true", help="machine-readable output")
    sub = p.add_subparsers(dest="command", required=True)
    st = sub.add_parser(
        "status", parents=[as_json], help="agents, queue depths, leases, workers, dead letters"
    )
    st.add_argument("--watch", type=float, metavar="SECONDS", help="refresh every SECONDS")
    send = sub.add_parser(
        "send",
        parents=[as_json],
        help="send a turn to an agent",
        description="Send a turn. Signed with $PYGENTS_SECRET (or the first key of "
        "$PYGENTS_SECRETS) when set.",
    )
    send.add_argument("agent")
    send.add_argument("tool")
    send.add_argument("--kwargs", default="{}", help='JSON object of arguments, e.g. {"n": 3}')
    send.add_argument("--args", default="[]", help="JSON array of positional arguments")
    send.add_argument("--timeout", type=float, default=60.0, help="turn timeout in seconds")
    send.add_argument("--trace", help="W3C traceparent to continue (default: a new trace)")
    _flow_ops.add_send_options(send)
    mode = send.add_mutually_exclusive_group()
    mode.add_argument("--wait", action="store_true", help="wait for the turn and print its result")
    mode.add_argument("--stream", action="store_true", help="print a generator tool's values")
    send.add_argument(
        "--wait-timeout",
        type=float,
        metavar="SECONDS",
        help="with --wait/--stream, give up after SECONDS (default: --timeout + 60)",
    )
    for name, text in (("pause", "hold an agent on every worker"), ("resume", "release it")):
        sub.add_parser(name, parents=[as_json], help=text).add_argument("agent")
    instances = sub.add_parser(
        "instances",
        parents=[as_json],
        help="a page of a kind's instances, least recently taken first, with their status",
    )
    instances.add_argument("kind")
    instances.add_argument("--offset", type=int, default=0, help="skip this many (0)")
    instances.add_argument("--count", type=int, default=50, help="at most this many (50)")
    forget = sub.add_parser(
        "forget",
        parents=[as_json],
        help="delete an instance's or runtime-made agent's state (context, dedup, turns)",
    )
    forget.add_argument("agent", help='an instance ("kind/key") or an agent made at runtime')
    forget.add_argument("--force", action="store_true", help="drop turns still waiting for it")
    functions = sub.add_parser(
        "functions",
        parents=[as_json],
        help="the Redis Functions library other languages send with: its loaded revision",
        description="Show which revision of the Functions library Redis has (workers install "
        "it at start); --install loads this version's (never replacing a newer one), e.g. as "
        "an administrator where the deployment's ACL user may not use FUNCTION.",
    )
    functions.add_argument("--install", action="store_true", help="install it now")
    _flow_ops.add_parsers(sub, as_json)
    dlq = sub.add_parser("dlq", help="dead letters: list, show, replay, purge")
    dlq_sub = dlq.add_subparsers(dest="action", required=True)
    listing = dlq_sub.add_parser("list", parents=[as_json], help="list dead letters, oldest first")
    listing.add_argument("--count", type=int, default=50, help="at most this many (50)")
    dlq_sub.add_parser("show", parents=[as_json], help="one dead letter in full").add_argument(
        "entry_id"
    )
    for name, text in (
        ("replay", "send dead letters to their agents again (then delete them)"),
        ("purge", "delete dead letters"),
    ):
        action = dlq_sub.add_parser(name, parents=[as_json], help=text)
        action.add_argument("entry_ids", nargs="*", help="entry ids (default: all)")
    for action in (listing, dlq_sub.choices["replay"], dlq_sub.choices["purge"]):
        action.add_argument("--agent", help="only dead letters of this agent")
        action.add_argument("--reason", help="only dead letters with this reason")
    return p


def _cli_secret() -> str | None:
    secrets = [s.strip() for s in os.environ.get("PYGENTS_SECRETS", "").split(",") if s.strip()]
    return os.environ.get("PYGENTS_SECRET") or (secrets[0] if secrets else None)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``pygents``; returns the exit code."""
    from pygents_dist import _ops

    ns = _ops_parser().parse_args(argv)
    arguments: tuple[list[Any], dict[str, Any]] = ([], {})
    try:
        if ns.command == "send":
            arguments = _ops.parse_json_arguments(ns)
            _flow_ops.parse_send_options(ns)
        if getattr(ns, "count", 1) < 1:
            raise _ops.UsageError("--count must be at least 1")
        if getattr(ns, "offset", 0) < 0:
            raise _ops.UsageError("--offset must be at least 0")
        if ns.command == "status" and ns.watch is not None and ns.watch <= 0:
            raise _ops.UsageError("--watch takes a positive number of seconds")
        client = Client(
            ns.redis_url,
            namespace=ns.namespace,
            secret=_cli_secret(),
            retries=2,  # a person is waiting: report an unreachable Redis within a second
            socket_connect_timeout=5,
        )
    except _ops.UsageError as exc:
        return _fail(str(exc), EXIT_USAGE)
    except ValueError as exc:  # redis-py refusing the URL
        return _fail(f"bad --redis-url {_safe_url(ns.redis_url)!r}: {exc}", EXIT_USAGE)
    try:
        return asyncio.run(_ops_main(client, ns, arguments))
    except ConnectionLostError as exc:
        cause = f" ({exc.__cause__})" if exc.__cause__ else ""
        return _fail(f"Redis unreachable at {_safe_url(ns.redis_url)}{cause}", EXIT_REDIS)
    except _ops.UsageError as exc:
        return _fail(str(exc), EXIT_USAGE)
    except DistError as exc:
        return _fail(str(exc), EXIT_FAILED)
    except KeyboardInterrupt:
        return 130
    except Exception as exc:  # e.g. NOPERM from an ACL user: still one line, not a traceback
        return _fail(f"{type(exc).__name__}: {exc}", EXIT_FAILED)


async def _ops_main(
    client: Client, ns: argparse.Namespace, arguments: tuple[list[Any], dict[str, Any]]
) -> int:
    from pygents_dist import _ops

    async with client:
        await client.transport.ping()
        if ns.command == "status":
            return await _ops.status(client, ns.json, ns.watch)
        if ns.command == "send":
            return await _ops.send(client, ns, *arguments)
        if ns.command == "forget":
            if not await client.forget(ns.agent, force=ns.force):
                raise DistError(
                    f"{ns.agent}: not forgotten: a worker holds it now, or turns wait for it "
                    "(--force drops them)"
                )
            _ops.emit(ns.json, {"agent": ns.agent, "forgotten": True}, f"{ns.agent}: forgotten")
            return 0
        if ns.command == "instances":
            return await _ops.instances(client, ns.kind, ns.offset, ns.count, ns.json)
        if ns.command in ("pause", "resume"):
            await getattr(client, ns.command)(ns.agent)
            paused = ns.command == "pause"
            _ops.emit(
                ns.json,
                {"agent": ns.agent, "paused": paused},
                f"{ns.agent}: {'paused on every worker' if paused else 'resumed'}",
            )
            return 0
        if ns.command == "functions":
            return await _ops.functions(client, ns.json, ns.install)
        if ns.command in _flow_ops.COMMANDS:
            return await _flow_ops.run(client, ns)
        return await _ops.dead_letters(client, ns)
