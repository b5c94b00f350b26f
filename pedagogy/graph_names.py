"""The episode graphs a config may name (`episodes.graph`): the registry's table itself.

It lives here, beside the config, rather than in `pedagogy.graphs.registry` (which registers
into it, resolves from it and re-exports it as `GRAPHS`), because the config checks the name
when it loads and the config is imported by layers that never import the graphs (training,
memory). It holds names and import paths only: nothing here imports LangGraph.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from pedagogy.registry import Registry

__all__ = ["GRAPHS", "GraphFactory"]

GraphFactory = Callable[[Any], Any]
"""Agents -> a compiled LangGraph graph (``ainvoke(input) -> {"record": EpisodeRecord}``)."""

GRAPHS: Registry[GraphFactory | str] = Registry(
    "episode graph",
    {
        "episode": "pedagogy.graphs.episode:build_episode_graph",
        "agent_episode": "pedagogy.graphs.agent_episode:build_agent_episode_graph",
    },
    register_with="register_graph",
)
"""Built-ins as import paths: naming one must not import LangGraph. Register with
`pedagogy.graphs.registry.register_graph`."""
