"""Tool and hook locks shared by every worker: a Redis lease, renewed while held.

``@tool(lock=True)`` and ``@hook(lock=True)`` keep meaning "one call at a time", but across
all workers on all hosts. The lock is a key set with ``NX PX`` and a random token; a
background task renews it while the call runs; release deletes it only if the token is still
ours, so a holder whose lease expired never frees the next holder's lock. A crashed holder's
lock expires after ``lease_ms``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections.abc import Callable
from types import TracebackType

from pygents_dist._transport import Transport

__all__ = ["RedisLocks", "renew_lock", "try_lock", "unlock"]

_log = logging.getLogger("pygents_dist.lock")


async def try_lock(transport: Transport, name: str, token: str, lease_ms: int) -> bool:
    """Take the lock ``name`` with ``token`` if it is free."""
    command = ("SET", transport.keys.lock(name), token, "NX", "PX", lease_ms)
    (got,) = await transport.execute([command], "lock")
    return got is not None


async def renew_lock(transport: Transport, name: str, token: str, lease_ms: int) -> bool:
    """Extend our hold on ``name``; False if it is no longer ours."""
    key = transport.keys.lock(name)
    return bool(await transport.scripts.run_one("renew", [key], [token, lease_ms]))


async def unlock(transport: Transport, name: str, token: str) -> bool:
    """Release ``name`` only if we hold it (never frees another holder's lock)."""
    return bool(await transport.scripts.run_one("release", [transport.keys.lock(name)], [token]))


class RedisLocks:
    """A lock provider for ``pygents._seams.set_lock_provider``: Redis leases by name."""

    def __init__(
        self,
        transport: Transport,
        lease_ms: int = 10_000,
        on_wait: Callable[[str, float], None] | None = None,
    ) -> None:
        self.transport = transport
        self.lease_ms = lease_ms
        #: Called with the lock name and the seconds spent waiting, once it is held.
        self.on_wait = on_wait

    def __call__(self, name: str, local: asyncio.Lock) -> _HeldLock:
        return _HeldLock(self, name, local)


class _HeldLock:
    __slots__ = ("_local", "_locks", "_name", "_renewer", "_token")

    def __init__(self, locks: RedisLocks, name: str, local: asyncio.Lock) -> None:
        self._locks = locks
        self._name = name
        self._local = local
        self._token = uuid.uuid4().hex
        self._renewer: asyncio.Task[None] | None = None

    async def __aenter__(self) -> None:
        # Queue up locally first so one process sends one contender to Redis, not many.
        started = time.monotonic()
        await self._local.acquire()
        try:
            delay = 0.002
            transport, lease = self._locks.transport, self._locks.lease_ms
            while not await try_lock(transport, self._name, self._token, lease):
                await asyncio.sleep(delay)
                delay = min(delay * 2, 0.05)
        except BaseException:
            self._local.release()
            raise
        if self._locks.on_wait is not None:
            self._locks.on_wait(self._name, time.monotonic() - started)
        self._renewer = asyncio.create_task(self._renew(), name=f"renew {self._name}")

    async def _renew(self) -> None:
        transport, lease = self._locks.transport, self._locks.lease_ms
        while True:
            await asyncio.sleep(lease / 3000)
            try:
                if not await renew_lock(transport, self._name, self._token, lease):
                    _log.error("lock %s was lost while held (lease expired)", self._name)
                    return
            except Exception as exc:  # keep trying: the lease outlives a short outage
                _log.warning("lock %s renewal failed: %s", self._name, exc)

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._renewer is not None:
            self._renewer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._renewer
        try:
            await unlock(self._locks.transport, self._name, self._token)
        except Exception as exc2:  # the lease expires by itself
            _log.warning("lock %s release failed: %s", self._name, exc2)
        finally:
            self._local.release()
