"""What the commit of one batch of an agent's turns writes: the arguments of ``lua/commit.lua``.

A ``Commit`` is filled while the batch runs (entries read, turn ids, reply entries, follow-up
turns and sends, then the changed context) and is written in one atomic script call, fenced
by the agent's lease. ``Commit.script_args(owner)`` is the script's ARGV (the owner value and
the packed ops map, ``ops()`` plus the group name ``g``) and ``Commit.reply_streams`` its
``KEYS[7..]``.
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, Any

from pygents_dist import _wire
from pygents_dist._keys import GROUP
from pygents_dist._replies import REPLY_STREAM_CAP, ReplyKind

if TYPE_CHECKING:
    from pygents.agent import Agent
    from pygents_dist._retries import RetryHold

__all__ = ["NO_REPLY", "Commit"]

#: The reply index of a turn whose sender wants no reply (it writes no reply entry).
NO_REPLY = -1


@dataclasses.dataclass(slots=True)
class Commit:
    """One batch's commit; each field names the ``ops()`` key it becomes, and what
    ``lua/commit.lua`` does with it.

    Attributes:
        agent: whose batch it is: a turn it puts to this agent is a follow-up, to any
            other agent a send.
        dedup_window_ms: ``win``: how long turn ids stay in the agent's ``done`` set; older
            ids are trimmed, and the set expires after that long idle.
        reply_ttl_ms: ``rttl``: each reply stream written expires after that long.
        acked: ``ack``: ids of the entries the batch read (ran, refused or dropped as
            duplicates): acknowledged and deleted from the agent's stream.
        turn_ids: ``tid``: ids of the turns the batch ran or refused, added to the ``done``
            set (scored ``now``) and cleared from the cancel hash. The first marks the whole
            batch: a commit sent again after it ran applies nothing twice.
        replies: ``rp``: reply entries ``[reply index, kind, seq, data]`` (kind ``b"e"``
            end, with ``data`` the result or nil, and ``seq`` the values streamed before;
            ``b"x"`` error, with ``data`` ``{type, message, traceback, reason?}``). The index
            is 1-based into ``reply_streams``: the script writes ``KEYS[6 + index]``.
        reply_streams: the reply stream keys, in index order: ``KEYS[7..]`` of the script.
        followups: ``fu``: turns ``[turn id, envelope, signature]`` appended to the agent's
            own stream (the signature field only when not empty).
        outbox: ``ob``: sends ``[agent, turn id, envelope, signature]`` to other agents,
            appended to this agent's outbox, which the worker relays after the commit.
        now_ms: ``now``: Unix time in ms, the score of the turn ids.
        context: ``st``: the context blobs (``queue``, ``pool``) that changed, written to
            the agent's state hash.
        new_agents: agents the batch's turns made (``Agent(...)``, ``branch``): not part of
            the script; they are defined in the directory just before it runs, so that the
            sends it relays to them find them (``_routing.define_agents``).
        delayed: turns the batch's turns put or sent for later, ``(agent, turn id, due ms,
            envelope, signature)``: not part of the script; stored (``_timers``) just
            before it runs, with ids derived from the putting turn's, so a batch run again
            stores the same turns again, not more.
        hold: a turn whose retry waits for its backoff (``_retries``): not part of the
            script; the agent is held just before it runs, and the batch ends there.
    """

    agent: str
    dedup_window_ms: int
    reply_ttl_ms: int
    acked: list[bytes] = dataclasses.field(default_factory=list)
    turn_ids: list[str] = dataclasses.field(default_factory=list)
    replies: list[list[Any]] = dataclasses.field(default_factory=list)
    reply_streams: list[str] = dataclasses.field(default_factory=list)
    followups: list[list[bytes | str]] = dataclasses.field(default_factory=list)
    outbox: list[list[bytes | str]] = dataclasses.field(default_factory=list)
    now_ms: int = 0
    context: dict[str, bytes] = dataclasses.field(default_factory=dict)
    new_agents: list[Agent] = dataclasses.field(default_factory=list)
    delayed: list[tuple[str, str, int, bytes, bytes]] = dataclasses.field(default_factory=list)
    hold: RetryHold | None = None

    def mark(self) -> tuple[int, ...]:
        """Where the commit stands, for ``undo``."""
        return (
            len(self.acked),
            len(self.turn_ids),
            len(self.replies),
            len(self.reply_streams),
            len(self.followups),
            len(self.outbox),
            len(self.new_agents),
            len(self.delayed),
        )

    def undo(self, mark: tuple[int, ...]) -> None:
        """Drop what was added since ``mark``: a turn whose attempt failed and will be
        retried commits nothing."""
        acked, tids, replies, streams, followups, outbox, made, delayed = mark
        del self.acked[acked:]
        del self.turn_ids[tids:]
        del self.replies[replies:]
        del self.reply_streams[streams:]
        del self.followups[followups:]
        del self.outbox[outbox:]
        del self.new_agents[made:]
        del self.delayed[delayed:]

    def reply_to(self, key: str) -> int:
        """Add the reply stream ``key``; its reply index."""
        self.reply_streams.append(key)
        return len(self.reply_streams)

    def add_end(self, reply_index: int, seq: int, data: bytes) -> None:
        """The end entry of a turn that ran: ``data`` its result (nil for a generator tool),
        after ``seq`` streamed values."""
        self.replies.append([reply_index, ReplyKind.END.value, seq, data])

    def add_error(
        self,
        reply_index: int,
        type_name: str,
        message: str,
        trace: str = "",
        reason: str = "",
    ) -> None:
        """The error entry of a turn (none when its sender wants no reply)."""
        if reply_index < 0:
            return
        payload = {"type": type_name, "message": message, "traceback": trace}
        if reason:
            payload["reason"] = reason
        self.replies.append([reply_index, ReplyKind.ERROR.value, 0, _wire.pack(payload)])

    def refuse(self, key: str, detail: str, reason: str) -> None:
        """Tell the sender of a turn that was dead-lettered why, on its reply stream ``key``
        (even a turn too broken to say whether it wants a reply)."""
        self.add_error(self.reply_to(key), "DeadLetteredError", detail, reason=reason)

    def ops(self) -> dict[str, Any]:
        """The script's ops map (``ARGV[2]`` of ``lua/commit.lua`` before packing)."""
        return {
            "ack": self.acked,
            "tid": self.turn_ids,
            "rp": self.replies,
            "now": self.now_ms,
            "win": self.dedup_window_ms,
            "fu": self.followups,
            "ob": self.outbox,
            "st": self.context,
            "rttl": self.reply_ttl_ms,
            "rmax": REPLY_STREAM_CAP,
        }

    def script_args(self, owner: str) -> list[Any]:
        """ARGV of ``lua/commit.lua``: the owner value the lease must still hold, and the
        packed ops map (with the consumer group)."""
        ops = self.ops()
        ops["g"] = GROUP
        return [owner, _wire.pack_for_lua(ops)]
