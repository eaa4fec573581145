"""The agents module of ``benchmarks/instances.py`` (``pygents-worker instances_app``): one
kind, ``assistant``, whose instances each remember what they are told."""

from pygents import Agent, ContextItem, tool


@tool
async def remember(text: str) -> ContextItem[str]:
    """Keep ``text`` in the instance's context queue (a small context item)."""
    return ContextItem(text)


assistant = Agent("assistant", "one per user", [remember])
