"""Workers of each test's own: a poison turn that kills its workers, signed turns, SIGTERM
letting a turn longer than the lease commit, and SIGTERM while a worker is still starting."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest
import redis.asyncio as aioredis

from pygents_dist import Client, DeadLetteredError, DeadLetterReason
from tests.dist.conftest import StartWorker
from tests.dist.helpers import dead_letters, eventually, pop, refused, start_together


async def test_turn_that_killed_its_worker_is_dead_lettered_not_the_one_behind_it(
    start: StartWorker, client: Client, store: aioredis.Redis, app_key: Callable[[str], str]
) -> None:
    options = ["--max-deliveries", "1", "--lease-ms", "1000"]
    first, second = await start_together(start, options, options)
    await client.pause("alpha")  # so both turns are read together
    poison = await client.send("alpha", "die", reply=True)
    innocent = await client.send("alpha", "seq", kwargs={"i": 1}, reply=True)
    await client.resume("alpha")

    error = await refused(client, "alpha", poison)
    assert error.reason == DeadLetterReason.TOO_MANY_DELIVERIES
    assert [v async for v in client.results("alpha", innocent)] == []  # ran, no error
    assert await store.lrange(app_key("seq"), 0, -1) == ["1"]
    victim = int(await pop(store, app_key("died")))
    survivor = second if victim == first.pid else first
    assert await store.llen(app_key("died")) == 0  # the survivor never ran it
    letters = await dead_letters(client)
    assert set(letters) == {poison}
    assert letters[poison]["worker"] == survivor.worker_id


async def test_signed_turns_run_and_unsigned_ones_are_refused(
    start: StartWorker, redis_url: str, client: Client
) -> None:
    start(env={"PYGENTS_SECRETS": "new-key,old-key"})
    async with Client(redis_url, secret="old-key") as signed:
        assert await signed.call("alpha", "add", kwargs={"a": 1, "b": 2}) == 3
    with pytest.raises(DeadLetteredError) as info:
        await client.call("alpha", "add", kwargs={"a": 1, "b": 2})
    assert info.value.reason == DeadLetterReason.BAD_SIGNATURE
    async with Client(redis_url, secret="wrong") as forged:
        with pytest.raises(DeadLetteredError):
            await forged.call("alpha", "add", kwargs={"a": 1, "b": 2})


async def test_sigterm_lets_a_turn_longer_than_the_lease_commit_then_exits_0(
    raw_redis: aioredis.Redis,
    start: StartWorker,
    client: Client,
    store: aioredis.Redis,
    app_key: Callable[[str], str],
) -> None:
    worker = start("--lease-ms", "700")
    call = asyncio.create_task(client.call("alpha", "long", kwargs={"seconds": 1.6}))
    await eventually(lambda: store.exists(app_key("runs:long")), "the long turn to start")
    worker.terminate()
    assert await asyncio.wait_for(call, 15) == worker.pid
    assert await asyncio.to_thread(worker.wait, 15) == 0
    assert await store.get(app_key("runs:long")) == "1"
    assert await raw_redis.xlen(client.transport.keys.turns("alpha")) == 0


@pytest.mark.slow
def test_sigterm_while_the_worker_is_still_starting_exits_0_at_once(tmp_path: Path) -> None:
    """Before it serves, a worker has nothing to drain: SIGTERM ends it with 0 at once (as a
    container's PID 1 it would otherwise ignore the signal until the stop timeout killed it)."""
    started = tmp_path / "started"
    (tmp_path / "slow_start.py").write_text(
        f"import pathlib, time\npathlib.Path({str(started)!r}).touch()\ntime.sleep(60)\n"
    )
    env = {**os.environ, "PYTHONPATH": str(tmp_path), "PYGENTS_REDIS_URL": "redis://127.0.0.1:1"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "pygents_dist", "worker", "slow_start"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + 30
        while not started.exists():  # the app module is being imported
            assert time.monotonic() < deadline and proc.poll() is None
            time.sleep(0.02)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(10) == 0
        assert b"Traceback" not in proc.communicate()[1]
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
