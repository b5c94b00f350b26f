"""The loop graph: plan round -> run episodes -> update curriculum -> (train the generator) ->
maybe train -> evaluate -> promote or roll back -> next round.

The graph's state is small and JSON-able (round, plan, sampler state, promoted version); heavy
runtime objects (store, backends, domain) live in a `Session` the nodes are bound to. With a
LangGraph checkpointer the state is saved after every node, so a killed run resumes at the node it
was in: episodes are written idempotently, keyed by (run, round, index), so re-running
`run_episodes` completes the round's plan with nothing lost and nothing done twice. Every other
node is idempotent too (a kill after its writes and before its checkpoint runs it again): an
evaluation is read back, `plan_round` returns the plan it stored last, `train` returns its
finished job's candidate or restarts its interrupted job on the items it stored.

The nodes live by concern: `graphs.session` (the Session and its shared helpers),
`graphs.planning`, `graphs.practice` (running episodes), `graphs.round_training` and
`graphs.evaluation`; this module wires them into the graph and re-exports their public names.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial, wraps
from typing import Any, TypedDict

from langgraph.graph import END, START, StateGraph

from pedagogy.domains.base import arm_name
from pedagogy.graphs.evaluation import evaluate_and_promote, evaluate_base, evaluate_version
from pedagogy.graphs.planning import plan_round
from pedagogy.graphs.practice import run_episodes
from pedagogy.graphs.refinement import train_generator
from pedagogy.graphs.round_training import train
from pedagogy.graphs.session import EventSink, Session
from pedagogy.graphs.session import _no_events as _no_events  # the runner's default sink
from pedagogy.memory.anchor import write_anchor
from pedagogy.memory.crash import crash_point
from pedagogy.memory.records import DecisionRecord

__all__ = [
    "EventSink",
    "LoopState",
    "Session",
    "build_loop_graph",
    "evaluate_and_promote",
    "evaluate_base",
    "evaluate_version",
    "plan_round",
    "run_episodes",
    "train",
    "update_curriculum",
]


class LoopState(TypedDict, total=False):
    round: int
    """The round in progress (0 before the first)."""
    plan: list[dict[str, Any]]
    sampler_state: dict[str, Any]
    student_version: str
    student_path: str
    accuracy: float
    """Mean held-out accuracy of the promoted student."""
    candidate: dict[str, Any] | None
    policy_state: dict[str, Any]
    """The intervention policy's state after the last finished round."""
    elapsed_s: float
    """Seconds the loop has run, resumes added up (pedagogy.graphs.budget)."""
    stopped: bool
    """The plateau rule ended the run before its last round (a "stop" decision says why)."""


# -- nodes and edges ----------------------------------------------------------------------------


async def update_curriculum(state: LoopState, session: Session) -> dict[str, Any]:
    """Reward each arm by its learning progress on this round's first attempts, or (grounded)
    on the held-out set as measured for the student in service."""
    round_ = state["round"]
    results: dict[str, tuple[int, int]] = {}
    if session.config.curriculum.grounded:
        results = _heldout_results(session, state["student_version"])
    else:
        for ep in session.store.episodes(session.run_id, round_):
            c, n = results.get(ep.arm, (0, 0))
            results[ep.arm] = (c + int(ep.correct_first), n + 1)
    sampler = session.sampler(state.get("sampler_state"))
    seen = len(getattr(sampler, "events", []))
    rewards = sampler.update(results)
    unlocks = list(getattr(sampler, "events", []))[seen:]
    new_state = sampler.state()
    session.merge_round_state(
        round_,
        {
            "results": results,
            "rewards": rewards,
            "sampler": new_state,
            "values": dict(getattr(sampler, "values", {})),
        },
    )
    kind = session.config.curriculum.sampler
    session.record_once(
        round_,
        "arm_reward",
        [
            DecisionRecord(
                session.run_id,
                round_,
                "arm_reward",
                kind,
                arm,
                None,
                reward,
                {"correct": results[arm][0], "attempted": results[arm][1]},
            )
            for arm, reward in sorted(rewards.items())
        ],
    )
    session.record_once(
        round_,
        "unlock",
        [
            DecisionRecord(
                session.run_id,
                round_,
                "unlock",
                "skill_graph",
                e["arm"],
                True,
                None,
                {"prerequisites": e["prerequisites"]},
            )
            for e in unlocks
        ],
    )
    session.emit("curriculum_updated", {"round": round_, "results": results, "rewards": rewards})
    return {"sampler_state": new_state}


def _heldout_results(session: Session, version_id: str) -> dict[str, tuple[int, int]]:
    """{arm: (correct, n)} of the latest held-out evaluation of `version_id` (SOAR's grounded
    signal: the student's measured accuracy after training, not its practice success)."""
    evals = [
        e for e in session.store.evaluations(session.run_id) if e.model_version_id == version_id
    ]
    if not evals:
        return {}
    latest = max(e.round for e in evals)
    return {arm_name(e.skill, e.level): (e.correct, e.n) for e in evals if e.round == latest}


def _should_train(state: LoopState, session: Session) -> str:
    return "train" if state["round"] % session.config.training.every_rounds == 0 else "next"


def _next_or_end(state: LoopState, session: Session) -> str:
    if state.get("stopped"):
        return END
    return "plan_round" if state["round"] < session.config.rounds else END


def _timed(node: Callable[..., Any], session: Session) -> Callable[..., Any]:
    """`node` bound to `session`, its update carrying the loop's running time (`elapsed_s`, what
    `budget.wall_seconds` limits). The run's lease is checked before it; after it, the circuit
    breakers' changes during it are stored as decisions; after its writes, the test hook `crash_point` may kill the process before LangGraph checkpoints its update."""

    async def timed(state: LoopState) -> dict[str, Any]:
        session.guard()
        update = await node(state, session=session)
        session.record_circuit_events((update or {}).get("round", state.get("round", 0)))
        crash_point(node.__name__)
        return {**(update or {}), "elapsed_s": session.budget.lap(state)}

    return timed


def _anchored(node: Callable[..., Any]) -> Callable[..., Any]:
    """`node`, the round's last, then the chain's head appended to the run folder's
    anchors.jsonl (`pedagogy.memory.anchor`): one anchor per round, marked finished when the run
    ends after it."""

    @wraps(node)
    async def anchored(state: LoopState, session: Session) -> dict[str, Any]:
        update = await node(state, session=session)
        after: LoopState = {**state, **(update or {})}  # type: ignore[typeddict-item]
        finished = _next_or_end(after, session) == END
        run_dir = session.models_dir.parent  # the run folder: models/ lies in it
        write_anchor(session.store, session.run_id, run_dir, state["round"], finished)
        return update

    return anchored


def build_loop_graph(session: Session, checkpointer: Any = None):
    """Compile the loop graph bound to `session` (checkpointed when a checkpointer is given)."""
    g = StateGraph(LoopState)
    g.add_node("evaluate_base", _timed(evaluate_base, session))
    g.add_node("plan_round", _timed(plan_round, session))
    g.add_node("run_episodes", _timed(run_episodes, session))
    g.add_node("update_curriculum", _timed(update_curriculum, session))
    g.add_node("train", _timed(train, session))
    g.add_node("evaluate_and_promote", _timed(_anchored(evaluate_and_promote), session))
    g.add_edge(START, "evaluate_base")
    g.add_edge("evaluate_base", "plan_round")
    g.add_edge("plan_round", "run_episodes")
    g.add_edge("run_episodes", "update_curriculum")
    before_train = "update_curriculum"
    if session.config.generator.train:  # the co-evolving generator learns after each round
        g.add_node("train_generator", _timed(train_generator, session))
        g.add_edge("update_curriculum", "train_generator")
        before_train = "train_generator"
    g.add_conditional_edges(
        before_train,
        partial(_should_train, session=session),
        {"train": "train", "next": "evaluate_and_promote"},
    )
    g.add_edge("train", "evaluate_and_promote")
    g.add_conditional_edges(
        "evaluate_and_promote", partial(_next_or_end, session=session), ["plan_round", END]
    )
    return g.compile(checkpointer=checkpointer)
