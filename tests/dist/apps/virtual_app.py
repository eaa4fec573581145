"""A program that makes agents while it runs, and a kind with keyed instances.

``build()`` defines everything (nothing happens at import, so a test can build it in process
after its registries were reset); ``virtual_served`` builds it in a worker.

- ``coordinator.spawn(key, text)`` makes the agent ``helper-<key>`` the first time (``Agent(...)``
  inside a tool), then sends it a ``note`` turn; ``coordinator.fork(name)`` branches the
  coordinator itself (its context comes along) and sends the branch a ``note``.
- ``assistant`` is a kind: ``assistant/<key>`` instances remember and recall their own notes.
"""

from __future__ import annotations

import asyncio
import os
from typing import Any

from pygents import Agent, AgentRegistry, ContextItem, ContextQueue, Turn, tool
from pygents._seams import active_context
from pygents.errors import UnregisteredAgentError

COORDINATOR = "coordinator"
KIND = "assistant"


def _notes() -> list[str]:
    active = active_context.get()
    assert active is not None, "called outside a turn"
    return [str(item.content) for item in active[0].items]


def build() -> Agent:
    """Register the tools, the coordinator and the ``assistant`` kind; the coordinator."""

    @tool
    async def note(text: str) -> ContextItem[str]:
        """Append ``text`` to the running agent's notes."""
        return ContextItem(text)

    @tool
    async def notes() -> list[str]:
        """The running agent's notes, oldest first."""
        return _notes()

    @tool
    async def where() -> dict[str, Any]:
        """The running agent's notes and the process that ran this turn."""
        return {"notes": _notes(), "pid": os.getpid()}

    @tool
    async def gate(seconds: float) -> str:
        """Sleep ``seconds`` (a turn that holds its agent a while)."""
        await asyncio.sleep(seconds)
        return "opened"

    @tool
    async def spawn(key: str, text: str) -> str:
        """Make ``helper-<key>`` if it does not exist yet, and send it ``note(text)``."""
        name = f"helper-{key}"
        try:
            helper = AgentRegistry.get(name)
        except UnregisteredAgentError:
            helper = Agent(name, f"helps with {key}", [note, notes], context_queue=ContextQueue(20))
        await helper.put(Turn("note", kwargs={"text": text}))
        return name

    @tool
    async def fork(name: str, text: str) -> str:
        """Branch the coordinator as ``name`` (its notes come along) and send it a note."""
        child = AgentRegistry.get(COORDINATOR).branch(name)
        await child.put(Turn("note", kwargs={"text": text}))
        return name

    coordinator = Agent(
        COORDINATOR,
        "makes helpers",
        [spawn, fork, note, notes],
        context_queue=ContextQueue(20),
    )
    kind = Agent(KIND, "one per user", [note, notes, where, gate], context_queue=ContextQueue(50))
    kind.context_queue.items = [ContextItem("hello")]
    return coordinator
