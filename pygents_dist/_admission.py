"""Admission of a turn entry: its signature, its envelope, and the checks that build its Turn.

An entry read from an agent's stream runs only if it is signed (when signing is on), decodes
as a turn of this agent with the entry's own turn id, names one of the agent's tools, gives
every argument the tool requires and names only registered hooks. What fails here is
dead-lettered by the batch runner with the ``DeadLetterReason`` of the ``WireError`` raised.
"""

from __future__ import annotations

import inspect
from collections.abc import Mapping
from typing import Any

from pygents.agent import Agent
from pygents.errors import UnregisteredHookError, UnregisteredToolError
from pygents.registry import HookRegistry, ToolRegistry
from pygents.tool import BaseTool
from pygents.turn import Turn
from pygents_dist import _wire
from pygents_dist._settings import WorkerSettings
from pygents_dist.errors import DeadLetterReason

__all__ = ["FORGED", "Admission"]

#: Why an entry whose signature does not verify is refused.
FORGED = "unsigned or forged (signature does not match any PYGENTS_SECRETS key)"


class Admission:
    """Checks the turn entries of the served agents and builds their turns; remembers each
    tool's signature, and which argument shapes it was already checked with."""

    def __init__(self, agents: Mapping[str, Agent], settings: WorkerSettings) -> None:
        self._agents = agents
        self._settings = settings
        self._signatures: dict[str, inspect.Signature] = {}
        self._argument_checks: dict[tuple[BaseTool, int, frozenset[str]], str | None] = {}

    def signed(self, data: bytes, signature: bytes | None) -> bool:
        """Whether envelope ``data`` may run as far as signing goes: signing is off, or
        ``signature`` verifies under one of the secrets."""
        secrets = self._settings.secrets
        return not secrets or _wire.verify(data, signature, secrets)

    def decode(self, data: bytes) -> _wire.TurnMessage:
        """The turn envelope in ``data``; raises ``WireError`` (see ``_wire.decode_turn``)."""
        return _wire.decode_turn(data, self._settings.limits)

    def build_turn(self, agent: str, turn_id: str, message: _wire.TurnMessage) -> Turn[Any]:
        """The turn ``message`` asks ``agent`` to run, read from an entry whose ``id`` field is
        ``turn_id``; raises ``WireError`` when it may not."""
        served = self._agents[agent]
        if message.agent != agent:
            raise _wire.WireError(
                DeadLetterReason.UNKNOWN_AGENT,
                f"turn addressed to {message.agent!r} arrived on agent {agent!r}'s stream",
            )
        try:
            tool = ToolRegistry.get(message.tool)
        except UnregisteredToolError:
            raise _wire.WireError(
                DeadLetterReason.UNKNOWN_TOOL, f"no tool named {message.tool!r} in this worker"
            ) from None
        if tool not in served._tool_set:
            raise _wire.WireError(
                DeadLetterReason.TOOL_NOT_IN_AGENT,
                f"agent {agent!r} does not have tool {message.tool!r}",
            )
        problem = self._argument_problem(tool, message.args, message.kwargs)
        if problem:
            raise _wire.WireError(DeadLetterReason.BAD_ARGUMENTS, problem)
        turn: Turn[Any] = Turn(tool, message.timeout, message.args, message.kwargs, message.tags)
        if message.hooks:
            try:
                turn.hooks = HookRegistry.from_names(message.hooks)
            except UnregisteredHookError as exc:
                raise _wire.WireError(DeadLetterReason.BAD_ARGUMENTS, str(exc)) from None
        if message.id != turn_id:
            # The entry's id names the reply stream and the dedup and cancel records, and
            # only the envelope is signed: an id of its own would let a captured turn run
            # again under a fresh id, or answer on another turn's reply stream. (Checked
            # last: a turn wrong in other ways too is refused for those.)
            raise _wire.WireError(
                DeadLetterReason.UNDECODABLE,
                f"the entry's id field {turn_id!r} differs from the envelope's id "
                f"{message.id!r} (they must be equal)",
            )
        return turn

    def _argument_problem(
        self, tool: BaseTool, args: list[Any], kwargs: dict[str, Any]
    ) -> str | None:
        key = (tool, len(args), frozenset(kwargs))
        try:
            return self._argument_checks[key]
        except KeyError:
            pass
        problem = self._check_arguments(tool, args, kwargs)
        if len(self._argument_checks) >= 4096:
            self._argument_checks.clear()
        self._argument_checks[key] = problem
        return problem

    def _check_arguments(
        self, tool: BaseTool, args: list[Any], kwargs: dict[str, Any]
    ) -> str | None:
        signature = self._signatures.get(tool.__name__)
        if signature is None:
            signature = self._signatures[tool.__name__] = inspect.signature(tool.fn)
        plan = tool._plan
        given_by_plan = plan.injected_names | plan.fixed.keys()
        missing = []
        position = 0
        for param in signature.parameters.values():
            if param.kind in (param.VAR_POSITIONAL, param.VAR_KEYWORD):
                continue
            positional = param.kind in (param.POSITIONAL_ONLY, param.POSITIONAL_OR_KEYWORD)
            index = position
            position += positional
            if param.default is not param.empty or param.name in given_by_plan:
                continue
            if (positional and index < len(args)) or (
                param.kind is not param.POSITIONAL_ONLY and param.name in kwargs
            ):
                continue
            missing.append(param.name)
        if missing:
            return f"tool {tool.__name__!r} is missing required argument(s): {', '.join(missing)}"
        return None
