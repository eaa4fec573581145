"""A service in another language: the Node.js client of the README (``tests/dist/node/
client.mjs``, ioredis and @msgpack/msgpack from the npm registry) against a real worker that
requires signed turns. It sends through the Redis function, calls and waits, streams and
resumes after losing its connection, sees remote errors and dead letters, cancels, pauses.

``npm ci`` installs the pinned packages into ``tests/dist/node/node_modules`` (git-ignored,
kept across runs; installed again when ``package-lock.json`` changes). Skipped where
``node`` or ``npm`` is missing, except in CI (``CI`` set), where that fails.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from pygents_dist.testing import RedisEndpoint
from tests.dist.conftest import module_workers

pytestmark = [pytest.mark.integration, pytest.mark.slow]

NODE_DIR = Path(__file__).parent / "node"
README = Path(__file__).parents[2] / "README.md"
#: The stamp in node_modules saying which package-lock.json it was installed from.
STAMP = NODE_DIR / "node_modules" / ".pygents-lock-sha256"
SECRET = "node-secret"


def tools() -> tuple[str, str]:
    """Paths of ``node`` and ``npm``; skips without them (fails in CI)."""
    node, npm = shutil.which("node"), shutil.which("npm")
    if node is None or npm is None:
        missing = " and ".join(n for n, p in (("node", node), ("npm", npm)) if p is None)
        if os.environ.get("CI"):
            pytest.fail(f"CI must run the Node.js client test, but {missing} is not installed")
        pytest.skip(f"{missing} is not installed")
    return node, npm


def install(npm: str) -> None:
    """``npm ci`` the pinned packages unless node_modules was installed from this lock."""
    lock = hashlib.sha256((NODE_DIR / "package-lock.json").read_bytes()).hexdigest()
    if STAMP.exists() and STAMP.read_text() == lock:
        return
    started = time.monotonic()
    done = subprocess.run(
        [npm, "ci", "--no-audit", "--no-fund", "--prefer-offline", "--loglevel=error"],
        cwd=NODE_DIR,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    if done.returncode != 0:
        pytest.fail(f"npm ci failed ({done.returncode}):\n{done.stdout}\n{done.stderr}")
    STAMP.write_text(lock)
    print(f"npm ci: {time.monotonic() - started:.1f}s")


@pytest.fixture(scope="module")
def seen(redis_server: RedisEndpoint) -> Iterator[dict[str, dict[str, Any]]]:
    """What each scenario of ``check.mjs`` saw, by name, against a worker requiring
    signatures."""
    node, npm = tools()
    install(npm)
    with module_workers(redis_server, env={"PYGENTS_SECRETS": SECRET}) as shared:
        env = {
            **os.environ,
            "PYGENTS_REDIS_URL": redis_server.url,
            "PYGENTS_NAMESPACE": shared.namespace,
            "PYGENTS_SECRET": SECRET,
        }
        started = time.monotonic()
        done = subprocess.run(
            [node, "check.mjs"],
            cwd=NODE_DIR,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        print(f"node check.mjs: {time.monotonic() - started:.1f}s\n{done.stdout}{done.stderr}")
        assert done.returncode == 0, done.stderr
        lines = [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]
        yield {line.pop("scenario"): line for line in lines}


def scenario(seen: dict[str, dict[str, Any]], name: str) -> dict[str, Any]:
    found = seen[name]
    assert "unexpected" not in found, found["unexpected"]
    found.pop("ms")
    return found


def test_call_waits_for_the_result(seen: dict[str, dict[str, Any]]) -> None:
    assert scenario(seen, "call") == {"result": 5}


def test_every_wire_type_round_trips(seen: dict[str, dict[str, Any]]) -> None:
    assert scenario(seen, "types") == {
        "result": {
            "s": "h\u00e9llo \u2713",
            "n": 3,
            "f": 2.5,
            "neg": -7,
            "big": 2**40,
            "t": True,
            "nil": None,
            "list": [1, [2, "x"]],
            "bin": {"hex": "00ff"},
        }
    }


def test_send_returns_a_turn_id(seen: dict[str, dict[str, Any]]) -> None:
    assert re.fullmatch(r"[0-9a-f]{32}", scenario(seen, "send")["id"])


def test_stream_and_resume_after_a_disconnect(seen: dict[str, dict[str, Any]]) -> None:
    assert scenario(seen, "stream") == {"values": [0, 1, 2, 3]}
    assert scenario(seen, "resume") == {"before": [0, 1], "after": [2, 3, 4, 5]}


def test_remote_errors_and_dead_letters_arrive(seen: dict[str, dict[str, Any]]) -> None:
    error = scenario(seen, "error")["error"]
    assert (error["type"], error["message"], error["reason"]) == ("ValueError", "from node", None)
    assert "raise ValueError(message)" in error["traceback"]
    dead = scenario(seen, "deadLetter")["error"]
    assert (dead["type"], dead["reason"]) == ("DeadLetteredError", "unknown_tool")
    assert dead["message"] == "no tool named 'nope' in this worker"
    unknown = scenario(seen, "unknownAgent")["error"]["thrown"]
    assert unknown.startswith("UNKNOWNAGENT pyg1_send: no worker has declared an agent named")


def test_cancel_pause_and_resume(seen: dict[str, dict[str, Any]]) -> None:
    cancel = scenario(seen, "cancel")
    assert cancel["requested"] is True and cancel["again"] is False
    assert cancel["error"]["type"] == "TurnCancelledError"
    assert scenario(seen, "pause") == {"heldWhilePaused": True, "result": 8}


def test_the_readme_example_is_this_client() -> None:
    source = (NODE_DIR / "client.mjs").read_text()
    text = README.read_text()
    quoted = re.search(r"```js\n// A pygents client in Node\.js.*?```", text, re.DOTALL)
    assert quoted is not None, "README.md quotes tests/dist/node/client.mjs in a ```js block"
    assert quoted.group(0) == f"```js\n{source}```"
