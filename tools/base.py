"""What a tool is, what calling it looks like, and what comes back.

A tool is anything with a ``name``, a ``description``, a JSON schema of its arguments and an async
``call`` that never raises for bad input or a failed execution: failures are observations with
``ok=False`` and a machine-readable ``error``, so an agent can read them and try again.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

from pedagogy.errors import ConfigError, PedagogyError

__all__ = [
    "Observation",
    "Tool",
    "ToolCall",
    "ToolError",
    "run_tool_call",
    "tool_spec",
]

_call_ids = itertools.count(1)


@dataclass
class ToolCall:
    """One call an agent asked for."""

    name: str
    """The tool's name."""
    arguments: dict[str, Any]
    """The parsed JSON arguments."""
    id: str = ""
    """The call id (OpenAI ``tool_call`` id); ``call_<n>`` is generated when empty."""

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name:
            raise ConfigError(f"ToolCall name must be a non-empty string, got {self.name!r}")
        if not isinstance(self.arguments, dict):
            raise ConfigError(
                f"ToolCall arguments must be a dict (a JSON object), got {type(self.arguments).__name__}"
            )
        if not self.id:
            self.id = f"call_{next(_call_ids)}"


@dataclass
class Observation:
    """What a tool call produced, as the agent will see it."""

    text: str
    """What the agent is shown (already truncated to the tool's limit)."""
    ok: bool = True
    """False: refused, timed out, crashed or given bad arguments."""
    error: str | None = None
    """Why not ok: "timeout", "cpu_limit", "memory_limit", "bad_arguments", "unknown_tool", ..."""
    latency_s: float = 0.0
    truncated: bool = False
    detail: dict[str, Any] = field(default_factory=dict)
    """Anything else worth storing: exit code, signal, resource usage, scores."""


@runtime_checkable
class Tool(Protocol):
    """Something an agent can call. ``call`` returns failures as observations, never raises."""

    name: str
    description: str
    parameters: dict[str, Any]
    """JSON schema of the arguments object."""

    async def call(self, arguments: dict[str, Any]) -> Observation: ...


class ToolError(PedagogyError):
    """Raised inside a tool function to fail the call with a readable message and a reason."""

    def __init__(self, message: str, *, error: str = "refused"):
        super().__init__(message)
        self.error = error


def tool_spec(tool: Tool) -> dict[str, Any]:
    """The OpenAI tools-API entry for ``tool``."""
    return {
        "type": "function",
        "function": {
            "name": tool.name,
            "description": tool.description,
            "parameters": tool.parameters,
        },
    }


async def run_tool_call(tools: Mapping[str, Tool] | Iterable[Tool], call: ToolCall) -> Observation:
    """Execute ``call`` with the matching tool; an unknown name or a broken tool is an observation."""
    by_name = dict(tools) if isinstance(tools, Mapping) else {t.name: t for t in tools}
    tool = by_name.get(call.name)
    if tool is None:
        known = ", ".join(sorted(by_name)) or "none"
        return Observation(
            text=f"error: unknown tool {call.name!r}; available tools: {known}",
            ok=False,
            error="unknown_tool",
        )
    start = time.monotonic()
    try:
        observation = await tool.call(call.arguments)
    except Exception as exc:  # a tool broke its contract; the episode must go on
        observation = Observation(
            text=f"error: tool {call.name!r} failed: {type(exc).__name__}: {exc}",
            ok=False,
            error="tool_error",
        )
    if not observation.latency_s:
        observation.latency_s = round(time.monotonic() - start, 6)
    return observation
