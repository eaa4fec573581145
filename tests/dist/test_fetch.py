"""Reading an owned agent's turns (``lua/fetch.lua``) when a reply was lost.

A fetch that ran in Redis but whose reply never arrived (the connection dropped, and the
round trip was sent again) handed its turns to this worker unseen. The next fetch must hand
them back first: reading on past them would run later turns before them, breaking the
agent's order.
"""

from __future__ import annotations

import pytest
import redis.asyncio as aioredis

from pygents_dist import _batches, _directory, _leases, _streams
from pygents_dist._commit import Commit
from pygents_dist._keys import GROUP
from pygents_dist._statuses import FetchStatus
from pygents_dist._transport import Transport

pytestmark = pytest.mark.integration


async def test_turns_a_lost_fetch_handed_over_come_back_first(
    redis_url: str, key_prefix: str
) -> None:
    transport = Transport.from_url(redis_url, namespace=key_prefix)
    redis = aioredis.Redis.from_url(redis_url)
    turns = transport.keys.turns("a")
    try:
        await _directory.ensure_group(transport, "a")
        await _streams.send_turns(transport, [("a", f"t{i}", b"envelope", b"") for i in range(3)])
        taken = await _leases.take(transport, "a", "w", 10_000, 1)
        assert taken.status == 0
        [(first, _)] = taken.entries
        await redis.xack(turns, GROUP, first)  # as its commit would

        def ids(entries: list[tuple[bytes, dict[bytes, bytes]]]) -> list[bytes]:
            return [fields[b"id"] for _id, fields in entries]

        lost = await _batches.fetch(transport, "a", taken.owner, "w", 1, False)
        assert ids(lost.entries) == [b"t1"]  # ... and its reply never reaches the worker
        again = await _batches.fetch(transport, "a", taken.owner, "w", 1, False)
        assert (again.status, ids(again.entries)) == (FetchStatus.OK, [b"t1"])
        await redis.xack(turns, GROUP, again.entries[0][0])
        after = await _batches.fetch(transport, "a", taken.owner, "w", 10, False)
        assert ids(after.entries) == [b"t2"]
    finally:
        await redis.aclose()
        await transport.aclose()


async def test_a_commit_that_missed_its_script_is_not_read_again_by_the_fetch_behind_it(
    redis_url: str, key_prefix: str
) -> None:
    # After a Redis restart the commit's script may be missing while the fetch's (loaded by
    # an earlier call) is not: the fetch then runs first, and finds the batch it follows
    # still pending. That batch must not come back to be run a second time.
    transport = Transport.from_url(redis_url, namespace=key_prefix)
    redis = aioredis.Redis.from_url(redis_url)
    try:
        await _directory.ensure_group(transport, "a")
        await _streams.send_turns(transport, [("a", f"t{i}", b"envelope", b"") for i in range(2)])
        taken = await _leases.take(transport, "a", "w", 10_000, 1)
        [(first, _)] = taken.entries
        await redis.script_flush()
        await transport.scripts.load(["fetch"])
        commit = Commit("a", dedup_window_ms=60_000, reply_ttl_ms=60_000, now_ms=1)
        commit.acked.append(first)
        commit.turn_ids.append("t0")
        got = await _batches.commit_wait_fetch(
            transport, taken.owner, commit, "w", first, 10, 10, False
        )
        assert (got.committed, got.status, got.entries) == (True, FetchStatus.OK, [])
        after = await _batches.fetch(transport, "a", taken.owner, "w", 10, False)
        assert [fields[b"id"] for _id, fields in after.entries] == [b"t1"]
    finally:
        await redis.aclose()
        await transport.aclose()
