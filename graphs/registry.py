"""Episode graphs by name, so that a config (`episodes.graph`) and a run's record can name one.

A graph factory takes the episode's agents and returns a compiled graph whose run ends with
``{"record": EpisodeRecord}`` (see `pedagogy.graphs.episode`). Users add theirs with
``register_graph("self_check", build_graph)`` in a plugin module; a config may also name a
factory by import path, ``"mypackage.graphs:build_graph"``. A run records the name it ran with,
so `pedagogy replay` runs the same graph, or says which one it needs.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any

from pedagogy.errors import ConfigError

__all__ = ["GraphFactory", "graph_ref", "known_graphs", "register_graph", "resolve_graph"]

GraphFactory = Callable[[Any], Any]
"""Agents -> a compiled LangGraph graph (``ainvoke(input) -> {"record": EpisodeRecord}``)."""

_REGISTRY: dict[str, GraphFactory | str] = {
    "episode": "pedagogy.graphs.episode:build_episode_graph",
    "agent_episode": "pedagogy.graphs.agent_episode:build_agent_episode_graph",
}
"""Built-ins as import paths: naming one must not import LangGraph."""

_HOW = "pass --plugin MODULE (the module that calls register_graph) or install its package"


def register_graph(name: str, factory: GraphFactory, *, replace: bool = False) -> None:
    """Make ``episodes.graph: <name>`` run episodes through ``factory(agents)``."""
    if not isinstance(name, str) or not name or ":" in name:
        raise ConfigError(f"a graph name must be a non-empty string without ':', got {name!r}")
    if not callable(factory):
        raise ConfigError(f"the factory for graph {name!r} must be callable, got {factory!r}")
    if name in _REGISTRY and not replace:
        raise ConfigError(
            f"graph {name!r} is already registered; pick another name or pass replace=True"
        )
    _REGISTRY[name] = factory


def known_graphs() -> list[str]:
    return sorted(_REGISTRY)


def registered_graph(name: str) -> GraphFactory | str | None:
    """What `name` is registered as (a factory, or a built-in's import path); None: unknown."""
    return _REGISTRY.get(name)


def graph_ref(factory: GraphFactory) -> str:
    """How a run records `factory`: its registered name, else its import path "module:name"
    (which `resolve_graph` can import again unless it lives in a script or a function body)."""
    for name, registered in _REGISTRY.items():
        if registered is factory or registered == _path(factory):
            return name
    return _path(factory)


def _path(factory: GraphFactory) -> str:
    module = getattr(factory, "__module__", None) or "?"
    name = getattr(factory, "__qualname__", None) or type(factory).__qualname__
    return f"{module}:{name}"


def resolve_graph(ref: str) -> GraphFactory:
    """The factory `ref` names: a registered name or "module:function". Errors say what is
    missing and how to supply it."""
    registered = _REGISTRY.get(ref)
    if registered is not None and not isinstance(registered, str):
        return registered
    path = registered if isinstance(registered, str) else ref
    if ":" not in path:
        known = ", ".join(known_graphs())
        raise ConfigError(
            f"unknown episode graph {ref!r} (known: {known}); {_HOW}, or name the factory as "
            "'module:function'"
        )
    module, _, attr = path.partition(":")
    if module == "__main__" or "<" in attr:
        where = "a script" if module == "__main__" else "a function body"
        raise ConfigError(
            f"episode graph {ref!r} was defined in {where}, so it cannot be imported; move it "
            "into a module and name it 'module:function' (or register it in a plugin), or "
            "replay from Python with replay_run(..., episode_graph=<the factory>)"
        )
    try:
        obj: Any = importlib.import_module(module)
    except ImportError as err:
        raise ConfigError(
            f"episode graph {ref!r}: cannot import module {module!r} ({err}); put it on "
            "PYTHONPATH or install the package that provides it"
        ) from None
    for part in attr.split("."):
        obj = getattr(obj, part, None)
        if obj is None:
            raise ConfigError(
                f"episode graph {ref!r}: module {module!r} has no {attr!r}; check the name"
            )
    if not callable(obj):
        raise ConfigError(f"episode graph {ref!r} is {type(obj).__name__}, not a graph factory")
    return obj
