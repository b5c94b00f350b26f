"""A custom episode graph: the student checks its own work once before the teacher steps in.

Built from pedagogy's public nodes plus one new node, and run inside the normal loop.
    python examples/custom_graph.py [--quick]
"""

import asyncio
import sys
from functools import partial

from langgraph.graph import END, START, StateGraph

from pedagogy.config import load_config
from pedagogy.graphs import episode as E
from pedagogy.graphs.episode import Agents, EpisodeState
from pedagogy.memory.records import VerdictRecord
from pedagogy.runner import run_loop


async def self_check(state: EpisodeState, agents: Agents) -> dict:
    """New node: one more try with a nudge, no teacher budget spent."""
    if state["first"].correct:
        return {}
    turn = await agents.student.attempt(state["problem"], len(state["turns"]), "Check each step.")
    turn.episode_id = state["episode_id"]
    verdict, _ = await agents.verifier.verify(state["problem"], turn.response, turn.seq)
    v = VerdictRecord(turn.id, verdict.correct, verdict.score, verdict.parsed_answer)
    return {"turns": [turn], "verdicts": [v], "first": verdict, "final": verdict}


def build_graph(agents: Agents):
    g = StateGraph(EpisodeState)
    for node in (E.attempt, self_check, E.decide, E.explain, E.reattempt):
        g.add_node(node.__name__, partial(node, agents=agents))
    g.add_node("record", E.record)
    g.add_edge(START, "attempt")
    g.add_edge("attempt", "self_check")
    g.add_edge("self_check", "decide")
    g.add_conditional_edges("decide", lambda s: "explain" if s["intervene"] else "record")
    g.add_edge("explain", "reattempt")
    g.add_edge("reattempt", "record")
    g.add_edge("record", END)
    return g.compile()


if __name__ == "__main__":
    quick = {"rounds": 2, "episodes": {"per_round": 32}, "training": {"max_seconds": 3}}
    quick["evaluation"] = {"heldout_per_arm": 16}
    config = load_config(None).with_overrides(
        {"workdir": "pedagogy-runs/custom-graph", **(quick if "--quick" in sys.argv else {})}
    )
    result = asyncio.run(run_loop(config, episode_graph=build_graph))
    print(f"run {result.run_id}: {result.status}; see `pedagogy show {result.run_id}`")
    print(f"database: {result.db_url}")
