"""Tools by name, so configs and domains can say ``tools: [calculator, retrieve]``.

Built-ins are registered here; users add their own with ``register_tool("mine", make_tool)``.
A factory is any callable taking keyword options and returning a Tool. `TOOLS` is the registry
(`pedagogy.registry.Registry`): a config's `agent.tools` is checked against it when it loads.

A tool that cannot work without something its domain supplies (``retrieve`` needs a corpus)
says so with ``needs``: the options of which one must be given, by the domain's
``tool_options()`` or by the config's ``agent.tool_options``. A config that asks for such a
tool from a domain that supplies none of them is refused when it loads (`tool_needs`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from pedagogy.errors import ConfigError
from pedagogy.registry import Registry
from pedagogy.tools.base import Tool

__all__ = [
    "TOOLS",
    "ToolFactory",
    "build_tool",
    "known_tools",
    "register_tool",
    "tool_needs",
    "tool_options_target",
]

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


TOOLS: Registry[ToolFactory] = Registry(
    "tool",
    {"calculator": _calculator, "python": _python, "retrieve": _retrieve},
    register_with="register_tool",
)
_REGISTRY = TOOLS
"""The former name of `TOOLS` (the same object)."""

_NEEDS: dict[str, tuple[str, ...]] = {"retrieve": ("path", "documents")}
"""Per tool, the options of which one must be given for it to work (none: it stands alone)."""

_BUILT_IN = dict(TOOLS)
_OPTIONS_OF = {
    "calculator": "pedagogy.tools.calculator:calculator_tool",
    "python": "pedagogy.tools.sandbox:SandboxLimits",
    "retrieve": "pedagogy.tools.retrieve:retrieve_tool",
}
"""What takes each built-in tool's options (its factory only forwards them)."""


def tool_options_target(name: str) -> str | Callable[..., Any] | None:
    """What takes tool `name`'s options as keyword parameters ("module:attribute" or the
    registered factory), for checking a config's options when it loads; None: unknown name."""
    factory = TOOLS.get(name, None)
    if factory is not None and factory is _BUILT_IN.get(name):
        return _OPTIONS_OF[name]
    return factory


def register_tool(
    name: str, factory: ToolFactory, *, replace: bool = False, needs: Iterable[str] = ()
) -> None:
    """Make ``build_tool(name, **options)`` call ``factory(**options)``.

    `needs`: options of which one must be given (by the domain or the config) for the tool to
    work, e.g. ``("path", "documents")`` for a tool over a corpus; empty: it stands alone."""
    needs = tuple(needs)
    if not all(isinstance(n, str) and n for n in needs):
        raise ConfigError(f"needs of tool {name!r} must be option names, got {list(needs)!r}")
    TOOLS.register(name, factory, replace=replace)
    _NEEDS[name] = needs


def tool_needs(name: str) -> tuple[str, ...]:
    """The options of which tool `name` needs one (from its domain or the config); () when it
    stands alone, or is not a registered tool."""
    return _NEEDS.get(name, ()) if name in TOOLS else ()


def known_tools() -> list[str]:
    return TOOLS.names()


def build_tool(name: str, **options: Any) -> Tool:
    """A tool by registered name, e.g. ``build_tool("retrieve", path="corpus.jsonl")``."""
    factory = TOOLS.get(name)  # unknown: the valid names and how to register one
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
