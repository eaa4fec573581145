"""pygents: a lightweight async framework for structuring AI agents.

Five abstractions: tools (how), turns (what), agents (orchestration), a bounded
``ContextQueue`` (working context) and a keyed ``ContextPool`` (accumulated outputs), with
hooks on every event and registries for lookup and serialisation. Flow control: tools may
declare retries (``Retry``, ``Backoff``), a rate (``Rate``) and a concurrency limit; turns
may be delayed (``agent.put(turn, delay_s=...)``) or scheduled (``Schedule``). Standard
library only.
"""

from pygents.agent import Agent
from pygents.context import ContextItem, ContextPool, ContextQueue
from pygents.errors import (
    SafeExecutionError,
    TurnTimeoutError,
    UnregisteredAgentError,
    UnregisteredHookError,
    UnregisteredToolError,
    UnserializableHookError,
    WrongRunMethodError,
)
from pygents.hooks import (
    AgentHook,
    ContextPoolHook,
    ContextQueueHook,
    Hook,
    HookMetadata,
    HookRegistry,
    ToolHook,
    TurnHook,
    hook,
)
from pygents.limits import Rate
from pygents.registry import AgentRegistry, ToolRegistry
from pygents.retry import Backoff, Retry
from pygents.schedule import Missed, Schedule, ScheduleEntry
from pygents.tool import AsyncGenTool, BaseTool, Tool, ToolMetadata, tool
from pygents.turn import StopReason, Turn

__all__ = [
    "Agent",
    "AgentHook",
    "AgentRegistry",
    "AsyncGenTool",
    "Backoff",
    "BaseTool",
    "ContextItem",
    "ContextPool",
    "ContextPoolHook",
    "ContextQueue",
    "ContextQueueHook",
    "Hook",
    "HookMetadata",
    "HookRegistry",
    "Missed",
    "Rate",
    "Retry",
    "SafeExecutionError",
    "Schedule",
    "ScheduleEntry",
    "StopReason",
    "Tool",
    "ToolHook",
    "ToolMetadata",
    "ToolRegistry",
    "Turn",
    "TurnHook",
    "TurnTimeoutError",
    "UnregisteredAgentError",
    "UnregisteredHookError",
    "UnregisteredToolError",
    "UnserializableHookError",
    "WrongRunMethodError",
    "hook",
    "tool",
]
