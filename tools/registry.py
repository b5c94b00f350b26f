"""Tools by name, so configs and domains can say ``tools: [calculator, retrieve]``.

Built-ins are registered here; users add their own with ``register_tool("mine", make_tool)``.
A factory is any callable taking keyword options and returning a Tool.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from pedagogy.errors import ConfigError, UnknownNameError
from pedagogy.tools.base import Tool

__all__ = ["ToolFactory", "build_tool", "known_tools", "register_tool"]

ToolFactory = Callable[..., Tool]


def _calculator(**options: Any) -> Tool:
    from pedagogy.tools.calculator import calculator_tool

    return calculator_tool(**options)


def _python(**options: Any) -> Tool:
    from pedagogy.tools.python_tool import python_tool

    return python_tool(**options)


def _retrieve(**options: Any) -> Tool:
    from pedagogy.tools.retrieve import retrieve_tool

    return retrieve_tool(**options)


_REGISTRY: dict[str, ToolFactory] = {
    "calculator": _calculator,
    "python": _python,
    "retrieve": _retrieve,
}


_BUILT_IN = dict(_REGISTRY)
_OPTIONS_OF = {
    "calculator": "pedagogy.tools.calculator:calculator_tool",
    "python": "pedagogy.tools.sandbox:SandboxLimits",
    "retrieve": "pedagogy.tools.retrieve:retrieve_tool",
}
"""What takes each built-in tool's options (its factory only forwards them)."""


def tool_options_target(name: str) -> str | Callable[..., Any] | None:
    """What takes tool `name`'s options as keyword parameters ("module:attribute" or the
    registered factory), for checking a config's options when it loads; None: unknown name."""
    factory = _REGISTRY.get(name)
    if factory is not None and factory is _BUILT_IN.get(name):
        return _OPTIONS_OF[name]
    return factory


def register_tool(name: str, factory: ToolFactory, *, replace: bool = False) -> None:
    """Make ``build_tool(name, **options)`` call ``factory(**options)``."""
    if not isinstance(name, str) or not name:
        raise ConfigError(f"a tool name must be a non-empty string, got {name!r}")
    if not callable(factory):
        raise ConfigError(f"the factory for tool {name!r} must be callable, got {factory!r}")
    if name in _REGISTRY and not replace:
        raise ConfigError(
            f"tool {name!r} is already registered; pick another name or pass replace=True"
        )
    _REGISTRY[name] = factory


def known_tools() -> list[str]:
    return sorted(_REGISTRY)


def build_tool(name: str, **options: Any) -> Tool:
    """A tool by registered name, e.g. ``build_tool("retrieve", path="corpus.jsonl")``."""
    factory = _REGISTRY.get(name)
    if factory is None:
        raise UnknownNameError("tool", name, list(_REGISTRY))
    try:
        tool = factory(**options)
    except TypeError as exc:
        raise ConfigError(f"bad options {sorted(options)} for tool {name!r}: {exc}") from exc
    if not isinstance(tool, Tool):
        raise ConfigError(
            f"the factory for tool {name!r} returned {type(tool).__name__}, which lacks the Tool "
            "attributes (name, description, parameters) or an async call(arguments)"
        )
    return tool
