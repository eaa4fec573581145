"""The ``pygents`` ops CLI, run as ``python -m pygents_dist ...`` against real Redis and workers.

Each bad input must print one ``error:`` line on stderr, exit non-zero and leave Redis as it
was; each command's output is checked in text and ``--json`` form.
"""

from __future__ import annotations

import asyncio
import json
import signal
import subprocess
import sys
from typing import Any

import pytest
import redis.asyncio as aioredis

from pygents_dist import Client, _dead_letters, _replies
from pygents_dist._wire import encode_turn, new_turn_id
from pygents_dist.testing import free_port
from tests.dist.conftest import StartWorker
from tests.dist.helpers import cli, eventually


def one_error(done: subprocess.CompletedProcess[str]) -> str:
    """The single ``error:`` line a refused command printed (and nothing on stdout)."""
    lines = done.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), done.stderr
    assert done.stdout == ""
    return lines[0]


@pytest.fixture(autouse=True)
def _cli_env(monkeypatch: pytest.MonkeyPatch, redis_url: str) -> None:
    """The CLI finds Redis through ``PYGENTS_REDIS_URL`` (the prefix is already set)."""
    monkeypatch.setenv("PYGENTS_REDIS_URL", redis_url)
    monkeypatch.delenv("PYGENTS_SECRETS", raising=False)
    monkeypatch.delenv("PYGENTS_SECRET", raising=False)


async def nothing_sent(raw_redis: aioredis.Redis, client: Client) -> bool:
    """No turn waits in ``front``'s stream and no reply stream was made."""
    redis, keys = raw_redis, client.transport.keys
    replies = [k async for k in redis.scan_iter(match=keys.reply("front", "*"))]
    return await redis.xlen(keys.turns("front")) == 0 and not replies


# -- status ------------------------------------------------------------------------------------


async def test_status_shows_agents_workers_and_dead_letters(start: StartWorker) -> None:
    worker = start(target="ops_app")
    text = await cli("status")
    assert text.returncode == 0, text.stderr
    assert text.stdout.splitlines()[0].split() == [
        "AGENT", "DEPTH", "IN-FLIGHT", "OLDEST", "PAUSED", "OWNER"
    ]  # fmt: skip
    assert "front" in text.stdout and worker.worker_id in text.stdout
    assert "dead letters: 0" in text.stdout

    for args in (("status", "--json"), ("--json", "status")):
        done = await cli(*args)
        snapshot = json.loads(done.stdout)
        assert [a["agent"] for a in snapshot["agents"]] == ["front", "sink"]
        assert [w["id"] for w in snapshot["workers"]] == [worker.worker_id]
        assert snapshot["dead_letters"] == 0


async def test_status_watch_refreshes_until_sigterm_then_exits_0(start: StartWorker) -> None:
    start(target="ops_app")
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "pygents_dist",
        "status",
        "--watch",
        "0.1",
        "--json",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        assert proc.stdout is not None
        first = json.loads(await asyncio.wait_for(proc.stdout.readline(), 15))
        second = json.loads(await asyncio.wait_for(proc.stdout.readline(), 15))
        assert second["ts"] > first["ts"]
        proc.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(proc.wait(), 15) == 0
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()


# -- send --------------------------------------------------------------------------------------


async def test_send_wait_prints_the_result_and_stream_each_value(start: StartWorker) -> None:
    start(target="ops_app")
    done = await cli("send", "front", "echo", "--kwargs", '{"value": {"a": [1, 2]}}', "--wait")
    assert (done.returncode, done.stdout) == (0, '{"a": [1, 2]}\n'), done.stderr
    done = await cli("send", "front", "echo", "--args", '["plain"]', "--wait")
    assert (done.returncode, done.stdout) == (0, "plain\n"), done.stderr
    done = await cli("send", "front", "count", "--kwargs", '{"n": 3}', "--stream", "--json")
    assert (done.returncode, done.stdout.split()) == (0, ["0", "1", "2"]), done.stderr


async def test_send_without_wait_prints_the_turn_id_and_the_turn_runs(
    raw_redis: aioredis.Redis, start: StartWorker, client: Client
) -> None:
    start(target="ops_app")
    done = await cli("send", "front", "echo", "--kwargs", '{"value": 1}', "--json")
    assert done.returncode == 0, done.stderr
    turn_id = json.loads(done.stdout)["turn_id"]
    redis, keys = raw_redis, client.transport.keys

    async def committed() -> bool:
        return await redis.zscore(keys.done("front"), turn_id) is not None

    assert await eventually(committed, "the sent turn to commit")


async def test_remote_failure_is_one_line_and_exit_1(start: StartWorker) -> None:
    start(target="ops_app")
    done = await cli("send", "front", "fail", "--kwargs", '{"message": "kaput"}', "--wait")
    assert done.returncode == 1
    assert "ValueError: kaput" in one_error(done)


@pytest.mark.parametrize(
    ("args", "code", "text"),
    [
        (("send", "front", "echo", "--kwargs", "{bad"), 2, "--kwargs is not valid JSON"),
        (("send", "front", "echo", "--kwargs", "[1, 2]"), 2, "--kwargs must be a JSON object"),
        (("send", "front", "echo", "--args", '{"a": 1}'), 2, "--args must be a JSON array"),
        (("send", "ghost", "echo", "--wait"), 1, "no worker has declared an agent named 'ghost'"),
        (("send", "front", "nope", "--wait"), 1, "agent 'front' has no tool 'nope'"),
        (("pause", "ghost"), 1, "no worker has declared an agent named 'ghost'"),
        (("dlq", "show", "12-0"), 2, "no dead letter 12-0"),
        (("dlq", "replay", "not-an-id"), 2, "is not a stream entry id"),
        (("status", "--watch", "0"), 2, "--watch takes a positive number"),
        (("--redis-url", "http://x", "status"), 2, "bad --redis-url"),
    ],
)
async def test_bad_input_prints_one_line_exits_non_zero_and_sends_nothing(
    raw_redis: aioredis.Redis,
    start: StartWorker,
    client: Client,
    args: tuple[str, ...],
    code: int,
    text: str,
) -> None:
    start(target="ops_app")
    done = await cli(*args)
    assert done.returncode == code, done.stderr
    assert text in one_error(done)
    assert await nothing_sent(raw_redis, client)


@pytest.mark.parametrize(
    "args", [("status",), ("send", "front", "echo", "--wait"), ("dlq", "list")]
)
async def test_unreachable_redis_is_one_line_and_exit_3(args: tuple[str, ...]) -> None:
    url = f"redis://127.0.0.1:{free_port()}/0"
    done = await cli("--redis-url", url, *args)
    assert done.returncode == 3
    assert f"Redis unreachable at {url}" in one_error(done)


async def test_password_in_an_unreachable_url_is_not_printed() -> None:
    url = f"redis://user:hunter2@127.0.0.1:{free_port()}/0"
    done = await cli("--redis-url", url, "status")
    assert done.returncode == 3
    assert "hunter2" not in one_error(done)


# -- pause / resume ----------------------------------------------------------------------------


async def test_pause_holds_turns_on_every_worker_until_resume(
    start: StartWorker, client: Client
) -> None:
    start(target="ops_app")
    start(target="ops_app")
    assert (await cli("pause", "front")).stdout == "front: paused on every worker\n"
    snapshot = json.loads((await cli("status", "--json")).stdout)
    assert {a["agent"]: a["paused"] for a in snapshot["agents"]} == {"front": True, "sink": False}

    held = await cli(
        "send", "front", "echo", "--kwargs", '{"value": 7}', "--wait-timeout", "0.5", "--wait"
    )
    assert held.returncode == 1
    message = one_error(held)
    assert "within 0.5s; it stays queued" in message
    turn_id = message.split("no result for turn ")[1].split()[0]

    resumed = await cli("resume", "front", "--json")
    assert json.loads(resumed.stdout) == {"agent": "front", "paused": False}
    await asyncio.wait_for(_end_of(client, "front", turn_id), 15)


async def _end_of(client: Client, agent: str, turn_id: str) -> None:
    async for _value in client.results(agent, turn_id):
        pass


# -- dead letters ------------------------------------------------------------------------------


async def test_dlq_list_show_replay_and_purge(
    start: StartWorker, client: Client, redis_url: str
) -> None:
    strict = start(target="ops_app", env={"PYGENTS_SECRETS": "k1"})
    unsigned = [
        await client.send("front", "echo", kwargs={"value": i}, reply=True) for i in range(3)
    ]
    async with Client(redis_url, secret="k1") as signed:
        bad_args = await signed.send("front", "count", reply=True)  # n is missing
    signed_cli = await cli(
        "send",
        "front",
        "echo",
        "--kwargs",
        '{"value": "s"}',
        "--wait",
        env={"PYGENTS_SECRETS": "k1"},
    )
    assert (signed_cli.returncode, signed_cli.stdout) == (0, "s\n"), signed_cli.stderr

    async def four() -> bool:
        return await _dead_letters.dead_count(client.transport) == 4

    await eventually(four, "4 dead letters")
    letters = json.loads((await cli("dlq", "list", "--json")).stdout)
    assert {(d["id"], d["reason"]) for d in letters} == {
        *((i, "bad_signature") for i in unsigned),
        (bad_args, "bad_arguments"),
    }
    assert len(json.loads((await cli("dlq", "list", "--count", "2", "--json")).stdout)) == 2
    only = json.loads((await cli("dlq", "list", "--reason", "bad_arguments", "--json")).stdout)
    assert [d["id"] for d in only] == [bad_args]
    shown = json.loads((await cli("dlq", "show", only[0]["entry"], "--json")).stdout)
    assert shown["message"]["tool"] == "count" and shown["signed"] is True
    assert "missing required argument" in shown["detail"]

    # The operator fixes the cause (here: the signing requirement is dropped) and replays.
    strict.stop()
    start(target="ops_app")
    replay = await cli("dlq", "replay", "--reason", "bad_signature")
    assert (replay.returncode, replay.stdout) == (0, "replayed 3 dead letter(s)\n"), replay.stderr
    for turn_id in unsigned:
        await asyncio.wait_for(_ran(client, "front", turn_id), 15)

    purge = await cli("dlq", "purge", only[0]["entry"], "--json")
    assert json.loads(purge.stdout) == {"purged": 1}
    assert await _dead_letters.dead_count(client.transport) == 0
    assert (await cli("dlq", "list")).stdout == "no dead letters\n"


async def _ran(client: Client, agent: str, turn_id: str) -> None:
    """Wait until the turn's reply stream holds its end entry (after the dead-letter error)."""
    key = client.transport.keys.reply(agent, turn_id)
    last = b"0-0"
    while True:
        for entry_id, fields in await _replies.read_reply(client.transport, key, last, 1000):
            last = entry_id
            if fields.get(b"k") == b"e":
                return


async def test_replaying_thousands_of_dead_letters_reports_progress(
    raw_redis: aioredis.Redis, start: StartWorker, client: Client
) -> None:
    start(target="ops_app")
    letters: list[dict[bytes, Any]] = []
    for agent, count in (("front", 2500), ("ghost", 5)):
        for i in range(count):
            turn_id = new_turn_id()
            data = encode_turn(
                turn_id=turn_id, agent=agent, tool="echo", args=[], kwargs={"value": i}, timeout=30
            )
            letters.append(
                {b"agent": agent, b"reason": "bad_signature", b"id": turn_id, b"m": data}
            )
    pipe = raw_redis.pipeline(transaction=False)
    for fields in letters:
        pipe.xadd(client.transport.keys.dead, fields)
    await pipe.execute()

    done = await cli("dlq", "replay")
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("replayed 2500 dead letter(s); skipped 5")
    assert done.stderr.splitlines() == [
        "replaying: 1000/2505",
        "replaying: 2000/2505",
        "replaying: 2505/2505",
    ]
    redis, keys = raw_redis, client.transport.keys

    async def all_ran() -> bool:
        done_count: int = await redis.zcard(keys.done("front"))
        backlog: int = await redis.xlen(keys.turns("front"))
        return done_count >= 2500 and backlog == 0

    assert await eventually(all_ran, "the 2500 replayed turns to run", timeout=60)
    assert await _dead_letters.dead_count(client.transport) == 5  # the ghost agent's letters stay
