"""Concurrency limits shared by every worker: at most N runs of a tool at once, anywhere.

``@tool(concurrency=N)`` holds one of N slots in Redis while a call runs: a sorted set per
tool (``Keys.slots``, hash tag ``{tool:<name>}``) of holder token -> lease expiry. A slot is
taken and renewed by ``lua/slots_take.lua`` and given back with ``ZREM``; a background task
renews it while the call runs, so the guarantees are those of the ``lock=True`` lease
(``_lock.py``): a holder whose worker crashed loses its slot after ``lease_ms``; a holder that
could not renew in time (a stall longer than the lease) may find its slot taken (it is logged),
and giving back never frees another holder's slot. The set expires with its last lease.

``lock=True`` keeps its own Redis lock (``_lock.py``), unchanged.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from types import TracebackType
from typing import Any

from pygents_dist._scripts import COMMAND
from pygents_dist._transport import Transport

__all__ = ["RedisSlots", "release_slot", "take_slot"]

_log = logging.getLogger("pygents_dist.concurrency")
#: Waits between tries for a slot: doubling from the first to the last.
_FIRST_WAIT_S = 0.002
_LAST_WAIT_S = 0.05


async def take_slot(
    transport: Transport, tool: str, token: str, limit: int, lease_ms: int, renew: bool = False
) -> bool:
    """Take one of ``limit`` slots of ``tool`` for ``token`` for ``lease_ms`` (or, with
    ``renew``, extend the one it holds); False if none is free (or it lost its slot)."""
    key = transport.keys.slots(tool)
    args = [token, limit, lease_ms, "1" if renew else "0"]
    # Coalesced: the calls of many agents' turns at the same moment share one pipeline.
    (got,) = await transport.scripts.coalesced([("slots_take", [key], args)])
    return bool(got)


async def release_slot(transport: Transport, tool: str, token: str) -> None:
    """Give ``token``'s slot of ``tool`` back (only that holder's)."""
    await transport.scripts.coalesced([(COMMAND, ["ZREM", transport.keys.slots(tool), token], [])])


class RedisSlots:
    """The slot provider of ``pygents._seams.set_slot_provider``: ``slots(tool)`` is an async
    context manager holding one of the ``tool.concurrency`` slots across all workers."""

    def __init__(self, transport: Transport, lease_ms: int = 10_000) -> None:
        self.transport = transport
        self.lease_ms = lease_ms

    def __call__(self, tool: Any) -> HeldSlot:
        return HeldSlot(self, tool.__name__, int(tool.concurrency))


class HeldSlot:
    """One slot held while a call runs (``RedisSlots``)."""

    __slots__ = ("_limit", "_renewer", "_slots", "_timer", "_token", "_tool", "waited_s")

    def __init__(self, slots: RedisSlots, tool: str, limit: int) -> None:
        self._slots = slots
        self._tool = tool
        self._limit = limit
        self._token = uuid.uuid4().hex
        self._renewer: asyncio.Task[None] | None = None
        self._timer: asyncio.TimerHandle | None = None
        #: Seconds spent waiting for the slot.
        self.waited_s = 0.0

    async def __aenter__(self) -> None:
        started = time.monotonic()
        delay_s = _FIRST_WAIT_S
        transport, lease_ms = self._slots.transport, self._slots.lease_ms
        while not await take_slot(transport, self._tool, self._token, self._limit, lease_ms):
            await asyncio.sleep(delay_s)
            delay_s = min(delay_s * 2, _LAST_WAIT_S)
        self.waited_s = time.monotonic() - started
        # Most calls end long before their first renewal is due: start renewing only then
        # (a timer costs far less than a task per call).
        self._timer = asyncio.get_running_loop().call_later(lease_ms / 3000, self._start_renewing)

    def _start_renewing(self) -> None:
        self._timer = None
        self._renewer = asyncio.create_task(self._renew(), name=f"renew slot {self._tool}")

    async def _renew(self) -> None:
        transport, lease_ms = self._slots.transport, self._slots.lease_ms
        while True:
            try:
                if not await take_slot(
                    transport, self._tool, self._token, self._limit, lease_ms, renew=True
                ):
                    _log.error("tool %s: its slot was lost while held (lease expired)", self._tool)
                    return
            except Exception as exc:  # keep trying: the lease outlives a short outage
                _log.warning("tool %s: slot renewal failed: %s", self._tool, exc)
            await asyncio.sleep(lease_ms / 3000)

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._timer is not None:
            self._timer.cancel()
        if self._renewer is not None:
            self._renewer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._renewer
        try:
            await release_slot(self._slots.transport, self._tool, self._token)
        except Exception as exc2:  # the lease expires by itself
            _log.warning("tool %s: slot release failed: %s", self._tool, exc2)
