"""Wire format and key layout stay put: a turn recorded from an earlier client runs today.

The envelope below is the exact bytes ``Client`` wrote for ``alpha.add(a=20, b=22)`` before
the runtime was restructured (pygents_dist 0.8.0, wire version 1). It is written the way any
sender writes it, by hand: key names spelled out rather than taken from ``Keys``, so a change
of layout or format fails here.
"""

from __future__ import annotations

import asyncio

import pytest
import redis.asyncio as aioredis

from pygents_dist import Client, _replies
from pygents_dist._replies import ReplyKind
from tests.dist.conftest import StartWorker

pytestmark = pytest.mark.integration

TURN_ID = "0190aa55e6e07c3c9d5a2b1f4e8d7c61"
RECORDED = bytes.fromhex(
    "8aa17601a26964d9203031393061613535653665303763336339643561326231663465386437633631a561"
    "67656e74a5616c706861a4746f6f6ca3616464a46172677390a66b776172677382a16114a16216a774696d"
    "656f7574cb403e000000000000a47461677391a87265636f72646564a57265706c79c3a27473cb41dac3f1"
    "98b0b0e3"
)


async def test_a_recorded_turn_written_by_hand_runs_and_replies(
    start: StartWorker, client: Client, raw_redis: aioredis.Redis, namespace: str
) -> None:
    start()
    base = f"{namespace}:pyg1"
    await raw_redis.xadd(f"{base}:{{alpha}}:turns", {b"id": TURN_ID, b"m": RECORDED})
    await raw_redis.xadd(f"{base}:ready", {b"a": b"alpha"})
    got = [
        (kind, value)
        async for kind, _seq, value in _replies.replies(client.transport, "alpha", TURN_ID)
    ]
    assert got == [(ReplyKind.END, 42)]
    # Processed: the entry is gone from the stream and its id is in the agent's done set.
    assert await raw_redis.xlen(f"{base}:{{alpha}}:turns") == 0
    assert await raw_redis.zscore(f"{base}:{{alpha}}:done", TURN_ID) is not None
    assert await asyncio.wait_for(raw_redis.exists(f"{base}:{{alpha}}:reply:{TURN_ID}"), 5)
