"""Schedules as data: the cron parser (table tests, edge cases, errors naming the field),
``Schedule.every`` ticks, string and dict forms, and ``ScheduleEntry``."""

import itertools
from datetime import UTC, datetime, timedelta, timezone

import pytest

from pygents import Missed, Schedule, ScheduleEntry, Turn, tool
from pygents.schedule import ScheduleKind


def _at(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


def _next(expr: str, start: str, count: int) -> list[str]:
    schedule = Schedule.cron(expr)
    t = _at(start)
    out = []
    for _ in range(count):
        t = schedule.next_after(t)
        out.append(t.strftime("%Y-%m-%d %H:%M %a"))
    return out


@pytest.mark.parametrize(
    ("expr", "start", "expected"),
    [
        ("* * * * *", "2026-03-01 10:00:30", ["2026-03-01 10:01 Sun", "2026-03-01 10:02 Sun"]),
        (
            "*/15 * * * *",
            "2026-03-01 10:07",
            [
                "2026-03-01 10:15 Sun",
                "2026-03-01 10:30 Sun",
                "2026-03-01 10:45 Sun",
                "2026-03-01 11:00 Sun",
            ],
        ),
        ("5 * * * *", "2026-03-01 10:05", ["2026-03-01 11:05 Sun"]),  # after, not at
        (
            "0 9-17/4 * * *",
            "2026-03-01 00:00",
            [
                "2026-03-01 09:00 Sun",
                "2026-03-01 13:00 Sun",
                "2026-03-01 17:00 Sun",
                "2026-03-02 09:00 Mon",
            ],
        ),
        ("30 23 * * *", "2026-12-31 23:30", ["2027-01-01 23:30 Fri"]),  # year rollover
        # skips short months
        ("0 0 31 * *", "2026-01-31 00:00", ["2026-03-31 00:00 Tue", "2026-05-31 00:00 Sun"]),
        # leap day
        ("0 0 29 2 *", "2026-01-01 00:00", ["2028-02-29 00:00 Tue", "2032-02-29 00:00 Sun"]),
        ("0 12 * * mon-fri", "2026-03-06 12:00", ["2026-03-09 12:00 Mon", "2026-03-10 12:00 Tue"]),
        ("0 0 * * 0", "2026-03-01 00:00", ["2026-03-08 00:00 Sun"]),
        ("0 0 * * 7", "2026-03-01 00:00", ["2026-03-08 00:00 Sun"]),  # 7 is Sunday too
        ("0 0 * * SUN", "2026-03-01 00:00", ["2026-03-08 00:00 Sun"]),
        ("0 0 1 jan,jul *", "2026-03-01 00:00", ["2026-07-01 00:00 Wed", "2027-01-01 00:00 Fri"]),
        # both day fields restricted: either matches (the 13th, and every Friday)
        (
            "0 0 13 * fri",
            "2026-03-01 00:00",
            ["2026-03-06 00:00 Fri", "2026-03-13 00:00 Fri", "2026-03-20 00:00 Fri"],
        ),
        ("0 0 1 * mon", "2026-05-28 00:00", ["2026-06-01 00:00 Mon", "2026-06-08 00:00 Mon"]),
        (
            "0 0 2 * mon",
            "2026-05-28 00:00",
            ["2026-06-01 00:00 Mon", "2026-06-02 00:00 Tue", "2026-06-08 00:00 Mon"],
        ),
        # day-of-month starts with '*': both must match (odd days that are Mondays)
        (
            "0 0 */2 * mon",
            "2026-03-01 00:00",
            ["2026-03-09 00:00 Mon", "2026-03-23 00:00 Mon", "2026-04-13 00:00 Mon"],
        ),
        (
            "0 0 * * */3",
            "2026-03-01 00:00",
            ["2026-03-04 00:00 Wed", "2026-03-07 00:00 Sat", "2026-03-08 00:00 Sun"],
        ),
        (
            "50/5 * * * *",
            "2026-03-01 10:00",
            ["2026-03-01 10:50 Sun", "2026-03-01 10:55 Sun", "2026-03-01 11:50 Sun"],
        ),
        ("0,30 8 * * *", "2026-03-01 08:00", ["2026-03-01 08:30 Sun", "2026-03-02 08:00 Mon"]),
        ("@hourly", "2026-03-01 10:59", ["2026-03-01 11:00 Sun"]),
        ("@daily", "2026-03-01 10:59", ["2026-03-02 00:00 Mon"]),
        ("@weekly", "2026-03-01 10:59", ["2026-03-08 00:00 Sun"]),
        ("@monthly", "2026-03-01 10:59", ["2026-04-01 00:00 Wed"]),
        ("@yearly", "2026-03-01 10:59", ["2027-01-01 00:00 Fri"]),
    ],
)
def test_cron_next_ticks(expr: str, start: str, expected: list[str]) -> None:
    assert _next(expr, start, len(expected)) == expected


@pytest.mark.parametrize(
    ("expr", "match"),
    [
        ("* * * *", r"needs 5 fields .* got 4"),
        ("* * * * * *", r"got 6"),
        ("", r"got 0"),
        ("60 * * * *", r"minute: value 60 out of range 0-59"),
        ("* 24 * * *", r"hour: value 24 out of range 0-23"),
        ("* * 0 * *", r"day-of-month: value 0 out of range 1-31"),
        ("* * 32 * *", r"day-of-month: value 32"),
        ("* * * 13 *", r"month: value 13 out of range 1-12"),
        ("* * * foo *", r"month: 'foo' is not a number or a name"),
        ("* * * * 8", r"day-of-week: value 8 out of range 0-7"),
        ("* * * * funday", r"day-of-week: 'funday'"),
        ("*/0 * * * *", r"minute: step '0'"),
        ("*/x * * * *", r"minute: step 'x'"),
        ("10-5 * * * *", r"minute: range '10-5' runs backwards"),
        ("1,,2 * * * *", r"minute: empty item"),
        ("-1 * * * *", r"minute: '' is not a number"),
        ("0 0 30 2 *", r"day-of-month: no month in the month field has day 30"),
        ("0 0 31 4,6 *", r"day-of-month: no month"),
        ("@every", r"needs 5 fields"),
    ],
)
def test_malformed_cron_is_refused_naming_the_field(expr: str, match: str) -> None:
    with pytest.raises(ValueError, match=match) as caught:
        Schedule.cron(expr)
    assert f"cron {expr!r}" in str(caught.value)


def test_cron_needs_a_string() -> None:
    with pytest.raises(TypeError, match="a cron expression is a str"):
        Schedule.cron(5)  # type: ignore[arg-type]


def test_cron_times_are_utc_and_naive_input_is_taken_as_utc() -> None:
    schedule = Schedule.cron("0 12 * * *")
    naive = schedule.next_after(datetime(2026, 3, 1, 11, 0))
    assert naive == _at("2026-03-01 12:00") and naive.tzinfo is UTC
    # 11:30 at UTC+2 is 09:30 UTC: the next 12:00 UTC is that same day
    plus_two = datetime(2026, 3, 1, 11, 30, tzinfo=timezone(timedelta(hours=2)))
    assert schedule.next_after(plus_two) == _at("2026-03-01 12:00")


def test_every_ticks_at_multiples_of_its_period_since_the_epoch() -> None:
    schedule = Schedule.every(60)
    assert schedule.next_after(_at("2026-03-01 10:00:05")) == _at("2026-03-01 10:01:00")
    assert schedule.next_after(_at("2026-03-01 10:01:00")) == _at("2026-03-01 10:02:00")
    assert Schedule.every(0.25).next_after_s(10.0) == 10.25
    ticks = [0.0]
    for _ in range(1000):
        ticks.append(Schedule.every(0.1).next_after_s(ticks[-1]))
    assert all(b > a for a, b in itertools.pairwise(ticks))
    assert ticks[-1] == pytest.approx(100.0)


@pytest.mark.parametrize("seconds", [0, -1, float("inf"), float("nan"), "5", True])
def test_every_needs_a_positive_number(seconds: object) -> None:
    with pytest.raises(ValueError, match=r"Schedule.every: seconds must be a number > 0"):
        Schedule.every(seconds)  # type: ignore[arg-type]


def test_unknown_missed_policy_is_refused() -> None:
    with pytest.raises(ValueError, match=r"missed must be Missed.SKIP or Missed.RUN_ONCE"):
        Schedule.every(1, missed="sometimes")  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "schedule",
    [
        Schedule.every(30),
        Schedule.every(0.5, missed=Missed.RUN_ONCE),
        Schedule.cron("*/5 * * * *"),
        Schedule.cron("0 9 * * mon-fri", missed=Missed.RUN_ONCE),
    ],
)
def test_schedules_round_trip_through_str_and_dict(schedule: Schedule) -> None:
    assert Schedule.parse(str(schedule), missed=schedule.missed) == schedule
    assert Schedule.from_dict(schedule.to_dict()) == schedule


def test_schedule_string_forms() -> None:
    assert str(Schedule.every(30)) == "every 30s"
    assert str(Schedule.every(0.5)) == "every 0.5s"
    assert str(Schedule.cron("*/5 * * * *")) == "*/5 * * * *"
    assert Schedule.every(30).to_dict() == {"spec": "every 30s", "missed": "skip"}
    assert Schedule.cron("@daily").kind is ScheduleKind.CRON


def test_schedule_parse_rejects_a_bad_every() -> None:
    with pytest.raises(ValueError, match="expected 'every <seconds>s'"):
        Schedule.parse("every often")


def test_a_schedule_made_directly_is_checked() -> None:
    with pytest.raises(ValueError, match="month: value 13"):
        Schedule(ScheduleKind.CRON, expr="* * * 13 *")
    assert Schedule(ScheduleKind.CRON, expr="0 * * * *") == Schedule.cron("0 * * * *")
    with pytest.raises(ValueError, match="seconds must be a number > 0"):
        Schedule(ScheduleKind.EVERY, every_s=0)


def test_schedule_entry_round_trips_as_data() -> None:
    @tool
    async def report(region: str) -> str:
        return region

    entry = ScheduleEntry(
        "nightly", Schedule.cron("0 2 * * *"), Turn("report", kwargs={"region": "eu"}, timeout=5)
    )
    data = entry.to_dict()
    assert data == {
        "name": "nightly",
        "schedule": {"spec": "0 2 * * *", "missed": "skip"},
        "turn": {
            "tool_name": "report",
            "args": [],
            "kwargs": {"region": "eu"},
            "timeout": 5,
            "tags": [],
            "hooks": {},
        },
    }
    back = ScheduleEntry.from_dict(data)
    assert back.name == "nightly" and back.schedule == entry.schedule
    assert back.turn.tool is report and back.turn.kwargs == {"region": "eu"}
