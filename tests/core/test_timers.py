"""Delayed turns and schedules on an agent in process: due order, cancelling, ``run()``
waiting for timers, schedule ticks while running, and the missed-tick policy."""

import asyncio
import itertools
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from pygents import Agent, AgentHook, AgentRegistry, Missed, Schedule, Turn, hook, tool
from pygents import agent as agent_module
from pygents._timers import Timers
from pygents.schedule import ScheduleEntry


@pytest.fixture
def echo() -> Any:
    @tool
    async def echo(x: Any) -> Any:
        return x

    return echo


async def _values(agent: Agent) -> list[Any]:
    return [v async for _, v in agent.run()]


class Clock:
    """Stands in for ``time.time`` in ``pygents.agent``."""

    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


# -- delayed turns ---------------------------------------------------------------------------


async def test_due_turns_enter_in_due_order_not_put_order(echo: Any) -> None:
    agent = Agent("a", "delays", [echo])
    now = time.time()
    for x, due in [("third", now - 1), ("first", now - 3), ("second", now - 2)]:
        await agent.put(Turn("echo", args=[x]), at=due)
    assert await _values(agent) == ["first", "second", "third"]


async def test_turns_due_at_the_same_time_keep_put_order(echo: Any) -> None:
    agent = Agent("a", "delays", [echo])
    due = datetime.now(UTC) - timedelta(seconds=1)
    for x in range(5):
        await agent.put(Turn("echo", args=[x]), at=due)
    assert await _values(agent) == [0, 1, 2, 3, 4]


async def test_run_waits_for_a_delayed_turn_then_ends(echo: Any) -> None:
    agent = Agent("a", "delays", [echo])
    await agent.put(Turn("echo", args=["later"]), delay_s=0.03)
    await agent.put(Turn("echo", args=["now"]))
    loop = asyncio.get_running_loop()
    start = loop.time()
    assert await _values(agent) == ["now", "later"]
    assert loop.time() - start >= 0.025
    assert agent.delayed == {}


async def test_put_returns_an_id_only_for_delayed_turns(echo: Any) -> None:
    agent = Agent("a", "delays", [echo])
    assert await agent.put(Turn("echo", args=[1])) is None
    turn_id = await agent.put(Turn("echo", args=[2]), delay_s=60)
    assert isinstance(turn_id, str) and turn_id in agent.delayed
    due, turn = agent.delayed[turn_id]
    assert turn.args == [2] and due.tzinfo is UTC
    assert agent.turns[0].args == [1]  # the delayed one is held apart, not queued


async def test_a_cancelled_delayed_turn_never_runs(echo: Any) -> None:
    agent = Agent("a", "delays", [echo])
    keep = await agent.put(Turn("echo", args=["kept"]), delay_s=0.01)
    drop = await agent.put(Turn("echo", args=["dropped"]), delay_s=0.005)
    assert await agent.cancel_delayed(drop) is True
    assert await agent.cancel_delayed(drop) is False  # already cancelled
    assert await agent.cancel_delayed("unknown") is False
    assert await _values(agent) == ["kept"]
    assert await agent.cancel_delayed(keep) is False  # already ran


async def test_cancelling_the_last_delayed_turn_ends_a_waiting_run(echo: Any) -> None:
    agent = Agent("a", "delays", [echo])
    turn_id = await agent.put(Turn("echo", args=["never"]), delay_s=60)
    run = asyncio.create_task(_values(agent))
    await asyncio.sleep(0.01)
    assert not run.done()
    assert await agent.cancel_delayed(turn_id)
    assert await asyncio.wait_for(run, 1) == []


async def test_a_turn_put_while_run_waits_for_a_timer_runs_at_once(echo: Any) -> None:
    agent = Agent("a", "delays", [echo])
    await agent.put(Turn("echo", args=["late"]), delay_s=0.2)
    seen: list[tuple[Any, float]] = []
    loop = asyncio.get_running_loop()
    start = loop.time()

    async def consume() -> None:
        async for _, value in agent.run():
            seen.append((value, loop.time() - start))

    run = asyncio.create_task(consume())
    await asyncio.sleep(0.01)
    await agent.put(Turn("echo", args=["now"]))
    await asyncio.wait_for(run, 2)
    assert [v for v, _ in seen] == ["now", "late"]
    assert seen[0][1] < 0.15


async def test_put_hooks_fire_when_a_delayed_turn_is_put(echo: Any) -> None:
    agent = Agent("a", "delays", [echo])
    events: list[str] = []

    @agent.after_put
    async def after_put(agent: Agent, turn: Turn[Any]) -> None:
        events.append(f"put {turn.args[0]}")

    await agent.put(Turn("echo", args=["x"]), delay_s=0)
    assert events == ["put x"]
    assert await _values(agent) == ["x"]
    assert events == ["put x"]  # not again when it comes due


async def test_send_takes_the_same_delay_options(echo: Any) -> None:
    sender = Agent("sender", "sends", [echo])
    target = Agent("target", "receives", [echo])
    turn_id = await sender.send("target", Turn("echo", args=["hi"]), delay_s=0)
    assert turn_id in target.delayed and sender.delayed == {}
    assert await sender.send("target", Turn("echo", args=["now"])) is None
    assert await _values(target) == ["now", "hi"]


async def test_a_tool_can_send_a_turn_that_is_due_later(echo: Any) -> None:
    @tool
    async def check_back(agent_name: str) -> str:
        target = AgentRegistry.get(agent_name)
        await target.put(Turn("echo", args=["checked"]), delay_s=0.01)
        return "scheduled"

    agent = Agent("a", "checks back", [echo, check_back])
    await agent.put(Turn("check_back", args=["a"]))
    assert await _values(agent) == ["scheduled", "checked"]


@pytest.mark.parametrize(
    ("options", "error", "match"),
    [
        ({"delay_s": -1}, ValueError, r"delay_s must be a number of seconds >= 0, got -1"),
        ({"delay_s": float("nan")}, ValueError, r"delay_s must be"),
        ({"delay_s": "5"}, ValueError, r"delay_s must be"),
        ({"delay_s": 1, "at": 5.0}, ValueError, r"pass delay_s or at, not both"),
        ({"at": datetime(2030, 1, 1)}, ValueError, r"at must be a timezone-aware datetime"),
        ({"at": "tomorrow"}, ValueError, r"at must be an aware datetime or epoch seconds"),
    ],
)
async def test_bad_delay_options_are_refused(
    echo: Any, options: dict[str, Any], error: type, match: str
) -> None:
    agent = Agent("a", "delays", [echo])
    with pytest.raises(error, match=match):
        await agent.put(Turn("echo", args=[1]), **options)
    assert agent.delayed == {} and agent.turns == []


async def test_a_router_without_delayed_turns_refuses_them(echo: Any) -> None:
    from pygents import _seams

    class Plain:
        async def put(self, agent_name: str, turn: Turn[Any]) -> None:
            return None

    agent = Agent("a", "delays", [echo])
    _seams.set_router(Plain())
    try:
        with pytest.raises(NotImplementedError, match="does not take delayed turns"):
            await agent.put(Turn("echo", args=[1]), delay_s=1)
    finally:
        _seams.set_router(None)


async def test_a_router_with_put_at_receives_delayed_turns(echo: Any) -> None:
    from pygents import _seams

    class Delaying:
        def __init__(self) -> None:
            self.held: list[tuple[str, Any, float]] = []

        async def put(self, agent_name: str, turn: Turn[Any]) -> None:
            return None

        async def put_at(self, agent_name: str, turn: Turn[Any], due_s: float) -> str:
            self.held.append((agent_name, turn.args, due_s))
            return "id-1"

        async def cancel_delayed(self, agent_name: str, turn_id: str) -> bool:
            return turn_id == "id-1"

    router = Delaying()
    agent = Agent("a", "delays", [echo])
    _seams.set_router(router)
    try:
        assert await agent.put(Turn("echo", args=[1]), at=1_900_000_000.0) == "id-1"
        assert await agent.send("elsewhere", Turn("echo", args=[2]), at=1_900_000_001) == "id-1"
        assert await agent.cancel_delayed("id-1") is True
    finally:
        _seams.set_router(None)
    assert router.held == [("a", [1], 1_900_000_000.0), ("elsewhere", [2], 1_900_000_001.0)]


# -- schedules: firing while running ---------------------------------------------------------------


async def test_an_every_schedule_puts_one_turn_per_tick_while_running(echo: Any) -> None:
    agent = Agent("a", "ticks", [echo])
    agent.schedule("tick", Turn("echo", args=["tick"]), Schedule.every(0.02))
    loop = asyncio.get_running_loop()
    times: list[float] = []
    async for _, value in agent.run():
        assert value == "tick"
        times.append(loop.time())
        if len(times) == 4:
            assert agent.unschedule("tick") is True
    assert len(times) == 4
    gaps = [b - a for a, b in itertools.pairwise(times)]
    assert all(gap > 0.01 for gap in gaps), gaps  # one turn per tick, not a burst


async def test_schedule_ticks_fire_put_hooks(echo: Any) -> None:
    agent = Agent("a", "ticks", [echo])
    puts: list[Any] = []

    @hook(AgentHook.BEFORE_PUT)
    async def before_put(agent: Agent, turn: Turn[Any]) -> None:
        puts.append(turn.args[0])

    agent.schedule("tick", Turn("echo", args=["tick"]), Schedule.every(0.01))
    async for _ in agent.run():
        agent.unschedule("tick")
    assert puts == ["tick"]


async def test_each_tick_runs_a_fresh_copy_of_the_template(echo: Any) -> None:
    agent = Agent("a", "ticks", [echo])
    template = Turn("echo", args=["t"])
    agent.schedule("tick", template, Schedule.every(0.01))
    ran: list[Turn[Any]] = []
    async for turn, _ in agent.run():
        ran.append(turn)
        if len(ran) == 2:
            agent.unschedule("tick")
    assert ran[0] is not ran[1] and template not in ran
    assert template.metadata.start_time is None


def test_schedules_are_a_read_only_view(echo: Any) -> None:
    agent = Agent("a", "ticks", [echo])
    assert dict(agent.schedules) == {}
    entry = agent.schedule("daily", Turn("echo", args=[1]), Schedule.cron("0 6 * * *"))
    assert agent.schedules["daily"] is entry
    assert entry.to_dict()["schedule"] == {"spec": "0 6 * * *", "missed": "skip"}
    with pytest.raises(TypeError):
        agent.schedules["other"] = entry  # type: ignore[index]
    replaced = agent.schedule("daily", Turn("echo", args=[2]), Schedule.every(5))
    assert agent.schedules["daily"] is replaced and len(agent.schedules) == 1
    assert agent.unschedule("daily") is True and agent.unschedule("daily") is False


def test_bad_schedules_are_refused_at_the_call(echo: Any) -> None:
    @tool
    async def other() -> None:
        return None

    agent = Agent("a", "ticks", [echo])
    with pytest.raises(ValueError, match="schedule 'x': agent cannot run tool 'other'"):
        agent.schedule("x", Turn("other"), Schedule.every(1))
    with pytest.raises(TypeError, match="needs a Schedule"):
        agent.schedule("x", Turn("echo", args=[1]), "*/5 * * * *")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="needs a Turn"):
        agent.schedule("x", "echo", Schedule.every(1))  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="a schedule name is a non-empty str"):
        agent.schedule("", Turn("echo", args=[1]), Schedule.every(1))
    assert dict(agent.schedules) == {}


# -- schedules: the missed-tick policy ------------------------------------------------------------


async def _run_with_clock(
    agent: Agent, clock: Clock, monkeypatch: pytest.MonkeyPatch, echo: Any
) -> list[Any]:
    """Run ``agent`` once with the clock frozen: a first turn ends the schedules."""

    @tool
    async def stop(name: str) -> str:
        agent.unschedule(name)
        return "stopped"

    agent.tools = [*agent.tools, stop]
    await agent.put(Turn("stop", args=["s"]))
    return await _values(agent)


@pytest.mark.parametrize(
    ("missed", "expected"),
    [(Missed.SKIP, ["stopped"]), (Missed.RUN_ONCE, ["stopped", "catch-up"])],
)
async def test_ticks_missed_while_not_running_follow_the_policy(
    echo: Any, monkeypatch: pytest.MonkeyPatch, missed: Missed, expected: list[str]
) -> None:
    clock = Clock(1000.0)
    monkeypatch.setattr(agent_module, "_time", clock)
    agent = Agent("a", "ticks", [echo])
    agent.schedule("s", Turn("echo", args=["catch-up"]), Schedule.every(10, missed=missed))
    clock.now = 1035.0  # ticks 1010, 1020 and 1030 came due while nothing ran
    assert await _run_with_clock(agent, clock, monkeypatch, echo) == expected


def test_timers_put_one_turn_per_tick_due_while_running(echo: Any) -> None:
    timers = Timers()
    entry = ScheduleEntry("s", Schedule.every(10), Turn("echo", args=["tick"]))
    timers.add_schedule(entry, 1000.0)
    # running since 1000: ticks 1010, 1020, 1030 are all on time (a long turn held the loop)
    due = timers.take_due(1035.0, active_since_s=1000.0)
    assert [(t.args, ticked) for t, ticked in due] == [(["tick"], True)] * 3
    assert timers.next_due_s() == 1040.0


@pytest.mark.parametrize(("missed", "count"), [(Missed.SKIP, 0), (Missed.RUN_ONCE, 1)])
def test_timers_missed_ticks_give_at_most_one_turn(echo: Any, missed: Missed, count: int) -> None:
    timers = Timers()
    timers.add_schedule(
        ScheduleEntry("s", Schedule.every(10, missed=missed), Turn("echo", args=[0])), 1000.0
    )
    # idle from 1000 to 100_000: thousands of missed ticks, then running from 100_000
    assert len(timers.take_due(100_000.0, active_since_s=100_000.0)) == count
    assert timers.next_due_s() == 100_010.0
    assert len(timers.take_due(100_025.0, active_since_s=100_000.0)) == 2  # 100_010, 100_020


def test_timers_merge_delayed_turns_and_ticks_in_due_order(echo: Any) -> None:
    timers = Timers()
    timers.add_schedule(ScheduleEntry("s", Schedule.every(10), Turn("echo", args=["tick"])), 0.0)
    timers.add_delayed(Turn("echo", args=["d15"]), 15.0)
    timers.add_delayed(Turn("echo", args=["d5"]), 5.0)
    timers.add_delayed(Turn("echo", args=["d10"]), 10.0)
    due = timers.take_due(25.0, active_since_s=0.0)
    assert [t.args[0] for t, _ in due] == ["d5", "d10", "tick", "d15", "tick"]
    assert [ticked for _, ticked in due] == [False, False, True, False, True]


async def test_ticks_due_while_paused_are_missed(
    echo: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    clock = Clock(1000.0)
    monkeypatch.setattr(agent_module, "_time", clock)
    agent = Agent("a", "ticks", [echo])
    agent.schedule("s", Turn("echo", args=["tick"]), Schedule.every(10, missed=Missed.RUN_ONCE))
    seen: list[Any] = []

    @tool
    async def pause_then(name: str) -> str:
        agent.pause()
        clock.now = 1055.0  # ticks 1010..1050 come due while the agent is paused
        asyncio.get_running_loop().call_soon(agent.resume)
        return "paused"

    @tool
    async def stop() -> str:
        agent.unschedule("s")
        return "stopped"

    agent.tools = [echo, pause_then, stop]
    await agent.put(Turn("pause_then", args=["s"]))
    await agent.put(Turn("stop"))
    async for _, value in agent.run():
        seen.append(value)
    # RUN_ONCE: the paused spell's ticks give one turn, queued behind the turns waiting
    assert seen == ["paused", "stopped", "tick"]
