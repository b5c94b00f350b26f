"""Episode graphs by name, so that a config (`episodes.graph`) and a run's record can name one.

A graph factory takes the episode's agents and returns a compiled graph whose run ends with
``{"record": EpisodeRecord}`` (see `pedagogy.graphs.episode`). Users add theirs with
``register_graph("self_check", build_graph)`` in a plugin module; a config may also name a
factory by import path, ``"mypackage.graphs:build_graph"``. A run records the name it ran with,
so `pedagogy replay` runs the same graph, or says which one it needs. `GRAPHS` is the registry
(`pedagogy.registry.Registry`, kept in `pedagogy.graph_names`): a config's `episodes.graph` is
checked against it when it loads (an import path when the run starts).
"""

from __future__ import annotations

import importlib
from typing import Any

from pedagogy.errors import ConfigError
from pedagogy.graph_names import GRAPHS, GraphFactory

__all__ = [
    "GRAPHS",
    "GraphFactory",
    "graph_ref",
    "known_graphs",
    "register_graph",
    "registered_graph",
    "resolve_graph",
]

_REGISTRY = GRAPHS
"""The former name of `GRAPHS` (the same object)."""

_HOW = "pass --plugin MODULE (the module that calls register_graph) or install its package"


def register_graph(name: str, factory: GraphFactory, *, replace: bool = False) -> None:
    """Make ``episodes.graph: <name>`` run episodes through ``factory(agents)``."""
    if isinstance(name, str) and ":" in name:  # "module:function" is an import path
        raise ConfigError(f"a graph name must be a non-empty string without ':', got {name!r}")
    GRAPHS.register(name, factory, replace=replace)


def known_graphs() -> list[str]:
    return GRAPHS.names()


def registered_graph(name: str) -> GraphFactory | str | None:
    """What `name` is registered as (a factory, or a built-in's import path); None: unknown."""
    return GRAPHS.get(name, None)


def graph_ref(factory: GraphFactory) -> str:
    """How a run records `factory`: its registered name, else its import path "module:name"
    (which `resolve_graph` can import again unless it lives in a script or a function body)."""
    for name, registered in GRAPHS.items():
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
    registered = GRAPHS.get(ref, None)
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
