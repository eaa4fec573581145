"""Reading and committing an owned agent's batches of turns.

A batch is read through the consumer group by ``lua/fetch.lua`` (fenced by the lease, with
dedup and cancel flags per entry) and committed by ``lua/commit.lua``: acknowledgement,
follow-ups, sends, context and replies in one atomic step, or nothing when the lease is no
longer ours. The hot paths combine steps in one round trip: commit-and-fetch (one script),
commit-and-wait-then-fetch (three pipelined commands), commit-many-and-take-many (a group of
agents committed as the next group is taken). Every read comes back as a ``Fetched``.

On a Redis Cluster the group scripts run once per primary (``_node_groups.py``), so a group
still costs one round trip, to every primary concurrently; the
leases a take records go to the ``owned`` set's primary at the same moment (see ``_leases``).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

from pygents_dist._commit import Commit
from pygents_dist._keys import GROUP
from pygents_dist._leases import (
    Taken,
    record_calls,
    take_many_call,
    taken_many,
)
from pygents_dist._node_groups import run_by_node
from pygents_dist._redis_errors import first_error, is_missing_script
from pygents_dist._statuses import FetchStatus
from pygents_dist._transport import Entry, Transport, entries

__all__ = [
    "Committed",
    "Fetched",
    "commit",
    "commit_fetch",
    "commit_many",
    "commit_take_many",
    "commit_wait_fetch",
    "fetch",
    "wait_fetch",
]

#: One agent's batch to commit in a group: (owner value, its commit, give the lease up when
#: the stream is left empty).
type GroupCommit = tuple[str, Commit, bool]


@dataclasses.dataclass(slots=True)
class Fetched:
    """The next batch of an owned agent, as a fetch left it.

    ``status`` is ``FetchStatus.OK`` unless the lease was lost, the agent paused or its
    group gone (then there are no entries). ``flags[i]`` belongs to ``entries[i]``: ``b"d"``
    committed before, ``b"c"`` cancel requested, ``b""`` neither. ``released``: the fetch
    found nothing and gave the lease up (asked with ``release``). ``newest``: after a wait,
    the newest entry id the wait saw. ``committed``: for a combined commit-and-fetch, whether
    the commit went in (a batch that was not committed reads nothing).
    """

    status: FetchStatus = FetchStatus.OK
    entries: list[Entry] = dataclasses.field(default_factory=list)
    flags: list[bytes] = dataclasses.field(default_factory=list)
    released: bool = False
    newest: bytes = b""
    committed: bool = True


#: Per batch of a group commit: (committed, entries left in the stream, released).
type Committed = tuple[bool, int, bool]


def _fetched(got: Any, newest: bytes = b"", committed: bool = True) -> Fetched:
    """``lua/fetch.lua``'s reply as a ``Fetched``."""
    status = int(got[0])
    if status != 0:
        return Fetched(FetchStatus(status), newest=newest, committed=committed)
    released = len(got) > 3 and bool(got[3])
    return Fetched(FetchStatus.OK, entries(got[1]), list(got[2]), released, newest, committed)


def _fetch_keys(transport: Transport, agent: str) -> list[str]:
    """KEYS of ``lua/fetch.lua``: turns, owner, state, done, cancel."""
    turns, owner, state, _outbox, done, cancel = transport.keys.for_agent(agent)
    return [turns, owner, state, done, cancel]


def _commit_call(transport: Transport, owner: str, commit: Commit) -> tuple[list[str], list[Any]]:
    """KEYS and ARGV of ``lua/commit.lua``: the agent's keys, then its reply streams;
    the owner value and the packed ops."""
    keys = [*transport.keys.for_agent(commit.agent), *commit.reply_streams]
    return keys, commit.script_args(owner)


async def fetch(
    transport: Transport, agent: str, owner: str, consumer: str, count: int, pending: bool
) -> Fetched:
    """The next batch (``pending``: this consumer's unacknowledged entries, else new ones)."""
    args = [owner, GROUP, consumer, count, "0" if pending else ">"]
    return _fetched(await transport.scripts.run_one("fetch", _fetch_keys(transport, agent), args))


async def commit(transport: Transport, owner: str, commit: Commit) -> bool:
    """Apply a batch's effects atomically (``lua/commit.lua``); False if fenced out."""
    keys, args = _commit_call(transport, owner, commit)
    return bool(await transport.scripts.run_one("commit", keys, args))


async def commit_many(transport: Transport, commits: Sequence[GroupCommit]) -> list[Committed]:
    """``commit`` the batches ``(owner, commit, release)`` of many agents
    in one script call; each is fenced by its own lease, and with ``release`` its lease
    is given up when its stream is empty. Per batch: ``(committed, entries left in the
    stream, released)``."""
    if await transport.is_cluster():
        return (await _sliced(transport, commits, [], "", 0, 0, []))[0]
    keys, args = _commit_many_call(transport, commits)
    return _committed_many(await transport.scripts.run_one("commit_many", keys, args))


async def _sliced(
    transport: Transport,
    commits: Sequence[GroupCommit],
    agents: Sequence[str],
    worker_id: str,
    lease_ms: int,
    count: int,
    record: Sequence[str],
) -> tuple[list[Committed], list[Taken]]:
    """``commit_take_many`` on a Redis Cluster: a ``commit_many`` and a ``take_many`` call
    per primary (``_node_groups.py``), with the leases to record (on the ``owned`` set's
    primary, at the same moment)."""
    of_agent = {commit.agent: (owner, commit, release) for owner, commit, release in commits}
    committed, taken = await run_by_node(
        transport,
        record_calls(transport, record, lease_ms),
        [
            (
                "commit_many",
                list(of_agent),
                lambda part: _commit_many_call(transport, [of_agent[a] for a in part]),
            ),
            (
                "take_many",
                agents,
                lambda part: take_many_call(transport, part, worker_id, lease_ms, count),
            ),
        ],
        "commit_many",
    )
    return _committed_many(committed), taken_many(taken)


def _commit_many_call(
    transport: Transport, commits: Sequence[GroupCommit]
) -> tuple[list[str], list[Any]]:
    keys: list[str] = []
    args: list[Any] = [len(commits)]
    for owner, commit, release in commits:
        commit_keys, (_owner, packed) = _commit_call(transport, owner, commit)
        keys.extend(commit_keys)
        args.extend((len(commit_keys), int(release), owner, packed))
    return keys, args


def _committed_many(got: Any) -> list[Committed]:
    return [(bool(done), int(left), bool(released)) for done, left, released in got]


async def commit_take_many(
    transport: Transport,
    commits: Sequence[GroupCommit],
    agents: Sequence[str],
    worker_id: str,
    lease_ms: int,
    count: int,
    record: Sequence[str] = (),
) -> tuple[list[Committed], list[Taken]]:
    """``commit_many(commits)`` then ``take_many(agents)``, in one round trip: a worker
    serving many agents takes its next group as it commits the last one, so the next
    group's turns are there by the time it is free to run them.

    ``record``: agents whose leases the round trip records in the ``owned`` set before the
    take (see ``_leases.take``).

    Raises the first script error, if any (after both ran: the take may have leased
    agents the caller then does not run; their leases expire)."""
    if await transport.is_cluster():
        return await _sliced(transport, commits, agents, worker_id, lease_ms, count, record)
    commit_keys, commit_args = _commit_many_call(transport, commits)
    take_keys, take_args = take_many_call(transport, agents, worker_id, lease_ms, count)
    results = await transport.scripts.run(
        [
            ("commit_many", commit_keys, commit_args),
            *record_calls(transport, record, lease_ms),
            ("take_many", take_keys, take_args),
        ],
        "commit_many",
    )
    return _committed_many(results[0]), taken_many(results[-1])


async def commit_fetch(
    transport: Transport,
    owner: str,
    commit: Commit,
    consumer: str,
    count: int,
    pending: bool,
    release: bool,
) -> Fetched:
    """``commit`` a batch and, in the same round trip, ``fetch`` the next one.

    With ``release``, the lease is given up when nothing is left to read. A batch that was
    not committed reads nothing (``committed`` False, status ``LEASE_LOST``).
    """
    commit_keys, commit_args = _commit_call(transport, owner, commit)
    fetch_args = [owner, GROUP, consumer, count, "0" if pending else ">", int(release)]
    keys = [*commit_keys, *_fetch_keys(transport, commit.agent)]
    args = [len(commit_keys), len(commit_args), *commit_args, *fetch_args]
    ((done, got),) = await transport.scripts.coalesced([("commit_fetch", keys, args)])
    return _fetched(got, committed=bool(done))


async def commit_wait_fetch(
    transport: Transport,
    owner: str,
    commit: Commit,
    consumer: str,
    after: bytes,
    block_ms: int,
    count: int,
    release: bool,
) -> Fetched:
    """``commit`` a batch, then ``wait_fetch`` for the next one, in one round trip (the
    caller learns the commit's outcome when the wait ends; the turns' callers learn it
    from their reply streams at once). A batch that was not committed reads nothing."""
    scripts = transport.scripts
    commit_keys, commit_args = _commit_call(transport, owner, commit)
    keys = _fetch_keys(transport, commit.agent)
    args = [owner, GROUP, consumer, count, ">", int(release)]
    done, woke, got = await transport.execute_raw(
        [
            scripts.evalsha("commit", commit_keys, commit_args),
            _wait_newer(keys[0], after, block_ms),
            scripts.evalsha("fetch", keys, args),
        ],
        "commit",
        block_ms,
    )
    if is_missing_script(done):
        # Redis restarted: the commit did not run, but the fetch behind it may have, and
        # before it: its batch would hold this one's turns again. Commit now and read
        # nothing here; what that fetch handed over comes back first at the next fetch.
        done = await scripts.run_one("commit", commit_keys, commit_args)
        return Fetched(newest=after, committed=bool(done))
    first_error([done], "commit")
    fetched = await _after_wait(transport, woke, got, keys, args, after)
    fetched.committed = bool(done)
    return fetched


async def wait_fetch(
    transport: Transport,
    agent: str,
    owner: str,
    consumer: str,
    after: bytes,
    block_ms: int,
    count: int,
    release: bool,
) -> Fetched:
    """Wait up to ``block_ms`` for an entry newer than ``after`` in the agent's stream
    (``XREAD``, which delivers nothing), then ``fetch`` in the same round trip: Redis runs
    the fetch as soon as the wait ends. ``newest`` is the newest id the wait saw (``after``
    if none)."""
    keys = _fetch_keys(transport, agent)
    args = [owner, GROUP, consumer, count, ">", int(release)]
    woke, got = await transport.execute_raw(
        [_wait_newer(keys[0], after, block_ms), transport.scripts.evalsha("fetch", keys, args)],
        "linger",
        block_ms,
    )
    return await _after_wait(transport, woke, got, keys, args, after)


async def _after_wait(
    transport: Transport, woke: Any, got: Any, keys: list[str], args: list[Any], after: bytes
) -> Fetched:
    """Read a pipelined ``XREAD`` wait + fetch; a fetch that missed its script (Redis
    restarted) runs again."""
    first_error([woke], "linger")
    if is_missing_script(got):
        got = await transport.scripts.run_one("fetch", keys, args)
    else:
        first_error([got], "fetch")
    return _fetched(got, newest=woke[0][1][-1][0] if woke else after)


def _wait_newer(stream: str, after: bytes, block_ms: int) -> tuple[Any, ...]:
    """An ``XREAD`` that waits up to ``block_ms`` for an entry newer than ``after`` (it
    delivers nothing: a fetch after it reads through the group)."""
    return ("XREAD", "COUNT", 1, "BLOCK", block_ms, "STREAMS", stream, after)
