"""A worker's reading of the "has work" signals: from the one ready stream, or on a Redis
Cluster from every ready shard.

On one node ``Signals.read`` is one blocking ``XREAD`` on ``Keys.ready`` from the last id
seen. On a cluster a blocking read cannot span slots, so a reader task per shard
(``READY_SHARDS`` of them) blocks on its own stream and hands what it reads to ``read``,
which returns as soon as any shard has signals. A shard whose primary fails over is read
again (after a backoff) once the cluster answers; signals a failover lost are found by the
worker's periodic backlog scan.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from pygents_dist._keys import READY_SHARDS
from pygents_dist._streams import SIGNALS_CAP
from pygents_dist._transport import Entry, Transport, entries

__all__ = ["Signals"]

_log = logging.getLogger("pygents_dist.worker")
#: A shard reader's blocking read, and signals per read.
_SHARD_BLOCK_MS = 1_000
_READ_COUNT = 1000
#: Signals a shard reader buffers before it waits for ``read`` to take them.
_BUFFERED_MAX = SIGNALS_CAP


class Signals:
    """The signals a worker waits on, from where it started reading.

    Example::

        signals = Signals(transport)
        await signals.start()            # only signals newer than now
        entries = await signals.read(1000)
        signals.rewind()                 # read every signal kept again (Redis lost data)
        await signals.aclose()
    """

    def __init__(self, transport: Transport) -> None:
        self._transport = transport
        self._after: list[bytes] = [b"$"]
        self._got: list[Entry] = []
        self._arrived = asyncio.Event()
        self._readers: list[asyncio.Task[None]] = []

    async def start(self) -> None:
        """Read from the newest signal of each stream on (older ones are not for us)."""
        transport = self._transport
        keys = transport.keys
        if not await transport.is_cluster():
            self._after = [await self._newest(keys.ready)]
            return
        self._after = [await self._newest(keys.ready_shard(i)) for i in range(READY_SHARDS)]
        self._readers = [
            asyncio.create_task(self._read_shard(i), name=f"signals {i}")
            for i in range(READY_SHARDS)
        ]

    async def _newest(self, stream: str) -> bytes:
        command = ("XREVRANGE", stream, "+", "-", "COUNT", 1)
        (newest,) = await self._transport.execute([command], "signals")
        return bytes(newest[0][0]) if newest else b"0-0"

    def rewind(self) -> None:
        """Read every signal still kept again, from the start of each stream."""
        self._after = [b"0-0"] * len(self._after)

    async def read(self, block_ms: int) -> list[Entry]:
        """Signals not read yet, waiting up to ``block_ms`` for the first.

        Raises:
            ConnectionLostError: on one node, Redis did not answer (a cluster's shard
                readers retry by themselves).
        """
        if not self._readers:
            ready = self._transport.keys.ready
            command = ("XREAD", "COUNT", _READ_COUNT, "BLOCK", block_ms, "STREAMS", ready)
            (raw,) = await self._transport.execute(
                [(*command, self._after[0])], "signals", block_ms
            )
            got = entries(raw[0][1]) if raw else []
            if got:
                self._after[0] = got[-1][0]
            return got
        if not self._got:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(block_ms / 1000):
                    await self._arrived.wait()
        got, self._got = self._got, []
        self._arrived.clear()
        return got

    async def _read_shard(self, index: int) -> None:
        transport = self._transport
        stream = transport.keys.ready_shard(index)
        backoff_s = 0.05
        while True:
            if len(self._got) >= _BUFFERED_MAX:  # nobody reads: let Redis keep them
                await asyncio.sleep(0.05)
                continue
            command = ("XREAD", "COUNT", _READ_COUNT, "BLOCK", _SHARD_BLOCK_MS, "STREAMS", stream)
            try:
                (raw,) = await transport.execute(
                    [(*command, self._after[index])], "signals", _SHARD_BLOCK_MS
                )
                backoff_s = 0.05
            except Exception as exc:  # never let a reader die: its shard would go unread
                _log.warning("signals (shard %d): %s; retrying in %.2fs", index, exc, backoff_s)
                await asyncio.sleep(backoff_s)
                backoff_s = min(backoff_s * 2, 2.0)
                continue
            got = entries(raw[0][1]) if raw else []
            if got:
                self._after[index] = got[-1][0]
                self._got.extend(got)
                self._arrived.set()

    async def aclose(self) -> None:
        """Stop the shard readers."""
        readers, self._readers = self._readers, []
        for task in readers:
            task.cancel()
        for task in readers:
            with contextlib.suppress(asyncio.CancelledError):
                await task
