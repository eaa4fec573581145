"""The backlog sweep: finding every agent with queued turns by scanning Redis's keyspace.

Ready signals are how a worker hears of work, but a signal can miss: turns sent while no
worker ran (the capped ``ready`` stream keeps only the newest signals, and a starting worker
reads on from the newest), a runtime-made agent's lookup that failed, a signal read by a
worker that then died. An instance's or runtime-made agent's stream exists exactly while it
has turns queued or in flight (the commit that empties it deletes it; a declared agent's
stays while it is declared), so scanning for streams finds all of them with no index kept on
the send path.

A worker sweeps once at start, as fast as Redis answers; then, whenever it is idle (nothing
being served or waiting to be taken), again one interval (a lease) after the last pass
ended, paced to ``_KEYS_PER_S`` keys visited a second so that a keyspace of millions of idle
instances costs Redis a trickle (a pass over 3 million keys then takes about two and a half
minutes). A busy worker does not sweep: its signals are flowing, and a pass would only find
again the backlog it is working through (at a million queued instances, a million takes for
nothing). Declared agents have a faster safety net of their own (the worker's periodic
backlog scan).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

from pygents_dist import _streams
from pygents_dist._transport import Transport
from pygents_dist.errors import ConnectionLostError

__all__ = ["BacklogSweep"]

_log = logging.getLogger("pygents_dist.worker")
#: Keys one SCAN step visits.
_STEP_KEYS = 1000
#: Keys visited a second by a periodic pass (the first pass is not paced).
_KEYS_PER_S = 20_000


class BacklogSweep:
    """Scans for agents with queued turns and hands their names to ``found``.

    Args:
        transport: the worker's transport.
        found: called with each page of names (may repeat a name, or name an agent this
            worker cannot serve: it decides).
        interval_s: seconds from the end of one pass to the start of the next.
        idle: whether the worker is idle now (a periodic pass waits for that).
    """

    def __init__(
        self,
        transport: Transport,
        found: Callable[[list[str]], Awaitable[None]],
        interval_s: float,
        idle: Callable[[], bool],
    ) -> None:
        self._transport = transport
        self._found = found
        self._interval_s = interval_s
        self._idle = idle
        self.passes = 0

    async def run(self) -> None:
        """Sweep until cancelled; errors are logged and the pass starts again later."""
        while True:
            if self.passes == 0 or self._idle():
                try:
                    await self.sweep(paced=self.passes > 0)
                    self.passes += 1
                except ConnectionLostError as exc:
                    _log.warning("backlog sweep: %s", exc)
                except Exception:  # the safety net must not die with one bad page
                    _log.exception("backlog sweep failed")
            await asyncio.sleep(self._interval_s)

    async def sweep(self, *, paced: bool = False) -> None:
        """One full pass over the keyspace."""
        pause_s = _STEP_KEYS / _KEYS_PER_S if paced else 0.0
        cursor = 0
        while True:
            cursor, names = await _streams.queued_agents(self._transport, cursor, _STEP_KEYS)
            if names:
                await self._found(names)
            if cursor == 0:
                return
            if pause_s:
                await asyncio.sleep(pause_s)
                if not self._idle():
                    return  # work arrived: its signals flow again
