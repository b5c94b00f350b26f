"""Run an episode through the ready-made graphs' node functions, without compiling a graph.

A replay serves every response from the store, so an episode is pure computation, and LangGraph's
cost dominated it: compiling a graph per episode (its agents are bound into its nodes) and running
each node as a Pregel step. Here each built-in graph is a table of its nodes, where each goes next
(the graph modules' own routing functions) and the places it may go; `drive` runs an episode
through a table, merging each node's update into the state as the graph's reducers do (read from
the graph's state schema). Tests check that each table has exactly the compiled graph's edges, so
a change to a graph that is not made here fails them rather than replaying something else.

Only the built-in graphs have tables: a custom episode graph replays through the graph itself.
The loop runs live episodes the same way (`invoke`): LangGraph still defines the episode and
checks the table, but a round of a thousand episodes does not pay a Pregel run per episode.
"""

from __future__ import annotations

import typing
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache
from typing import Any

from pedagogy.errors import PedagogyError
from pedagogy.graphs import agent_episode as A
from pedagogy.graphs import episode as E

__all__ = ["AGENT_EPISODE", "EPISODE", "Wiring", "drive", "invoke", "wiring_for"]

END = "__end__"

Route = Callable[[dict[str, Any], Any], str]


@dataclass(frozen=True)
class Node:
    run: Callable[[dict[str, Any], Any], Any]
    """(state, agents) -> the node's update (awaitable for an async node)."""
    route: str | Route
    """The next node, or (state, agents) -> the next node."""
    ends: tuple[str, ...]
    """Every node `route` can lead to (what the compiled graph's edges say)."""


@dataclass(frozen=True)
class Wiring:
    """A built-in graph as a table: its first node, its nodes, its state schema."""

    name: str
    start: str
    nodes: dict[str, Node]
    state: type

    def limit(self, agents: Any) -> int:
        """The most steps an episode may take: the compiled graph's recursion limit."""
        if self.state is A.AgentEpisodeState:
            return 4 * agents.actor.max_steps + 16
        return 25  # LangGraph's default


def _plain(fn: Callable[[dict[str, Any]], Any]) -> Callable[[dict[str, Any], Any], Any]:
    return lambda state, agents: fn(state)


EPISODE = Wiring(
    "episode",
    "attempt",
    {
        "attempt": Node(E.attempt, "decide", ("decide",)),
        "decide": Node(E.decide, _plain(E._after_decide), ("explain", "record")),
        "explain": Node(E.explain, E._after_explain, ("reattempt", "record")),
        "reattempt": Node(E.reattempt, "record", ("record",)),
        "record": Node(_plain(E.record), END, (END,)),
    },
    E.EpisodeState,
)
"""`graphs.episode.build_episode_graph` as a table."""

AGENT_EPISODE = Wiring(
    "agent_episode",
    "attempt_act",
    {
        "attempt_act": Node(A.attempt_act, A._after_act, ("tool", "attempt_act", "verify")),
        "reattempt_act": Node(A.reattempt_act, A._after_act, ("tool", "reattempt_act", "verify")),
        "tool": Node(A.tool, A._after_tool, ("attempt_act", "reattempt_act", "verify")),
        "verify": Node(A.verify, _plain(A._after_verify), ("decide", "record")),
        "decide": Node(A.decide, _plain(E._after_decide), ("explain", "record")),
        "explain": Node(A.explain, A._after_explain, ("reattempt_act", "record")),
        "record": Node(A.record, END, (END,)),
    },
    A.AgentEpisodeState,
)
"""`graphs.agent_episode.build_agent_episode_graph` as a table."""


def wiring_for(factory: Any) -> Wiring | None:
    """The table of a built-in graph factory; None for any other (it replays as a graph)."""
    if factory is E.build_episode_graph:
        return EPISODE
    if factory is A.build_agent_episode_graph:
        return AGENT_EPISODE
    return None


@cache
def _reducers(state: type) -> dict[str, Callable[[Any, Any], Any]]:
    """The state keys that accumulate (``Annotated[..., reducer]``) and their reducers."""
    hints = typing.get_type_hints(state, include_extras=True)
    return {
        key: hint.__metadata__[-1]
        for key, hint in hints.items()
        if typing.get_origin(hint) is typing.Annotated and callable(hint.__metadata__[-1])
    }


async def drive(wiring: Wiring, agents: Any, state: dict[str, Any]) -> dict[str, Any]:
    """Run one episode from its input `state` through `wiring`; the final state (with "record"),
    as the compiled graph's ``ainvoke`` returns it."""
    reducers = _reducers(wiring.state)
    state = dict(state)
    name, limit = wiring.start, wiring.limit(agents)
    for _ in range(limit):
        node = wiring.nodes[name]
        update = node.run(dict(state), agents)
        if hasattr(update, "__await__"):
            update = await update
        for key, value in (update or {}).items():
            reduce = reducers.get(key)
            state[key] = value if reduce is None or key not in state else reduce(state[key], value)
        name = node.route if isinstance(node.route, str) else node.route(state, agents)
        if name not in node.ends:
            raise PedagogyError(
                f"the {wiring.name} graph's routing sent episode {state.get('episode_id')} to "
                f"{name!r}, which is not one of {', '.join(node.ends)}; update the table in "
                "pedagogy.graphs.replay_drive to match the graph"
            )
        if name == END:
            return state
    raise PedagogyError(
        f"episode {state.get('episode_id')} took more than {limit} steps through the "
        f"{wiring.name} graph (its recursion limit); the stored run does not match the graph "
        "this replay runs: replay it with the graph it recorded"
    )


async def invoke(graph: Any, factory: Any, agents: Any, state: dict[str, Any]) -> dict[str, Any]:
    """One live episode: through the table of a built-in graph (`factory` built `graph` from
    `agents`), else through the compiled `graph` itself (a custom graph)."""
    wiring = wiring_for(factory)
    if wiring is None:
        return await graph.ainvoke(state)
    return await drive(wiring, agents, state)
