"""The status enums name exactly the statuses the scripts answer with (no Redis)."""

from __future__ import annotations

import re
from pathlib import Path

import pygents_dist
from pygents_dist._statuses import NOT_TAKEN, FetchStatus, Outcome, TakeStatus

LUA = Path(pygents_dist.__file__).parent / "lua"


def statuses(script: str) -> set[int]:
    """The first element of every table ``script`` returns at its top level or in a helper."""
    text = (LUA / script).read_text()
    return {int(n) for n in re.findall(r"return \{(-?\d+)", text)}


def test_take_statuses_are_those_of_take_and_take_many() -> None:
    assert statuses("take.lua") == {0, -3, 1, 2, 3}
    assert statuses("take_many.lua") == {0, 1, 2, 3, 4}
    assert {int(s) for s in TakeStatus} == statuses("take.lua") | statuses("take_many.lua")
    assert {1, 2, 3} == NOT_TAKEN


def test_fetch_statuses_are_those_of_fetch() -> None:
    assert {int(s) for s in FetchStatus} == statuses("fetch.lua") == {0, -1, -2, -3}


def test_an_outcome_is_the_fetch_status_that_ended_a_serve() -> None:
    assert Outcome.DRAINED == FetchStatus.OK == 0
    assert Outcome.LOST == FetchStatus.LEASE_LOST == -1
    assert Outcome.PAUSED == FetchStatus.PAUSED == -2
    assert TakeStatus.TAKEN_NO_GROUP == FetchStatus.NO_GROUP  # a take's status read as a fetch's
