"""The flow-control commands of the ``pygents`` CLI: ``send --delay/--at``, ``delayed``,
``schedules`` and the schedules in ``status``."""

from __future__ import annotations

import datetime
import json

import pytest
import redis.asyncio as aioredis

from pygents_dist import Client
from tests.dist.conftest import StartWorker
from tests.dist.helpers import eventually
from tests.dist.test_cli import cli, one_error


@pytest.fixture(autouse=True)
def _cli_env(monkeypatch: pytest.MonkeyPatch, redis_url: str) -> None:
    monkeypatch.setenv("PYGENTS_REDIS_URL", redis_url)
    monkeypatch.delenv("PYGENTS_SECRETS", raising=False)
    monkeypatch.delenv("PYGENTS_SECRET", raising=False)


async def test_send_delay_list_and_cancel(start: StartWorker, client: Client) -> None:
    start(target="flow_app")
    done = await cli("send", "clock", "record", "--kwargs", '{"tag": "x"}', "--delay", "1h")
    assert done.returncode == 0, done.stderr
    turn_id = done.stdout.strip()
    listed = json.loads((await cli("delayed", "list", "clock", "--json")).stdout)
    assert [row["turn_id"] for row in listed] == [turn_id]
    due = datetime.datetime.fromisoformat(listed[0]["due"])
    assert 3500 < (due - datetime.datetime.now(datetime.UTC)).total_seconds() <= 3600
    assert (await cli("delayed", "cancel", "clock", turn_id)).returncode == 0
    assert (await cli("delayed", "cancel", "clock", turn_id)).returncode == 1
    at = (datetime.datetime.now(datetime.UTC) + datetime.timedelta(seconds=0.5)).isoformat()
    done = await cli("send", "clock", "record", "--kwargs", '{"tag": "at"}', "--at", at, "--wait")
    assert (done.returncode, done.stdout) == (0, "at\n"), done.stderr


BAD_INPUT = [
    (("send", "clock", "record", "--delay", "soon"), "--delay takes a duration"),
    (("send", "clock", "record", "--at", "tomorrow"), "--at takes an ISO 8601 time"),
    (("schedules", "add", "clock", "s", "record", "61 * * * *"), "minute"),
    (("schedules", "add", "clock", "s", "record", "every x"), "SPEC takes a duration"),
    (("schedules", "pause", "clock", "nope"), "has no schedule 'nope'"),
]


async def test_bad_flow_input_is_one_line_and_exit_2(start: StartWorker) -> None:
    start(target="flow_app")
    for args, text in BAD_INPUT:
        done = await cli(*args)
        assert done.returncode == 2, (args, done.stderr)
        assert text in one_error(done)


async def test_schedules_add_list_pause_resume_rm_and_status(
    start: StartWorker, client: Client, store: aioredis.Redis, app_key
) -> None:
    start(target="flow_app")
    add = ("schedules", "add", "clock", "hourly", "record", "@hourly", "--kwargs", '{"tag": "h"}')
    done = await cli(*add, "--json")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["schedule"] == "@hourly"
    done = await cli("schedules", "add", "clock", "quick", "record", "every 300ms", "--kwargs",
                     '{"tag": "q"}')  # fmt: skip
    assert done.returncode == 0, done.stderr
    await eventually(lambda: store.llen(app_key("log")), "a tick of quick")
    rows = json.loads((await cli("schedules", "list", "--json")).stdout)
    assert [(r["name"], r["schedule"]) for r in rows] == [
        ("quick", "every 0.3s"),
        ("hourly", "@hourly"),
    ]
    assert (await cli("schedules", "pause", "clock", "quick")).returncode == 0
    status = await cli("status")
    assert "clock quick" in status.stdout and "paused" in status.stdout
    assert "clock hourly" in status.stdout
    assert {s.name: s.paused for s in await client.schedules()} == {
        "hourly": False,
        "quick": True,
    }
    assert (await cli("schedules", "resume", "clock", "quick")).returncode == 0
    assert all(not s.paused for s in await client.schedules())
    assert (await cli("schedules", "rm", "clock", "quick")).returncode == 0
    assert await client.remove_schedule("clock", "hourly")
    assert await client.schedules() == []
