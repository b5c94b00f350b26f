"""The episode graph: pose -> attempt -> verify -> (wrong?) explain -> re-attempt -> verify -> record.

Nodes are public async functions of (state, agents) returning partial state updates; the factory
binds them to an `Agents` bundle and compiles the graph without a checkpointer: a checkpoint per
episode step costs more than the tiny student's whole generation (measured: ~177 checkpointed graph
runs/s against ~3,000 batched generations/s), so the loop graph checkpoints per round instead and
the store makes episodes idempotent.
"""

from __future__ import annotations

import operator
from dataclasses import dataclass
from functools import partial
from typing import Annotated, Any, TypedDict

from langgraph.graph import END, START, StateGraph

from pedagogy.agents.roles import Student, Teacher, Verifier, concrete_style
from pedagogy.domains.base import Problem, Verdict
from pedagogy.errors import ConfigError
from pedagogy.memory.records import EpisodeRecord, ExplanationRecord, TurnRecord, VerdictRecord


@dataclass
class Agents:
    """The agents an episode needs."""

    student: Student
    teacher: Teacher
    verifier: Verifier
    reattempt: bool = True
    broker: Any = None
    """The round's `graphs.broker.InterventionBroker`; None: the teacher's budget decides,
    first come, first served (a lone episode, a replay)."""


class EpisodeState(TypedDict, total=False):
    episode_id: str
    run_id: str
    round: int
    index: int
    seed: int
    problem: Problem
    student_version: str | None
    turns: Annotated[list[TurnRecord], operator.add]
    verdicts: Annotated[list[VerdictRecord], operator.add]
    explanations: Annotated[list[ExplanationRecord], operator.add]
    first: Verdict
    final: Verdict
    intervene: bool
    budget_left: int | None
    reserved: Annotated[float, operator.add]
    """Teacher budget `decide` reserved for this episode (1.0 per intervention); its
    explanations are charged out of it (`explain`)."""
    explanation: str
    """The latest explanation exactly as the student is shown it."""
    record: EpisodeRecord


def _seq(state: EpisodeState) -> int:
    return len(state.get("turns", []))


async def _attempt_and_verify(
    state: EpisodeState, agents: Agents, explanation: str | None
) -> dict[str, Any]:
    problem = state["problem"]
    turn = await agents.student.attempt(problem, _seq(state), explanation, seed=state.get("seed"))
    turn.episode_id = state["episode_id"]
    verdict, judge_turn = await agents.verifier.verify(problem, turn.response, turn.seq + 1)
    turns = [turn]
    if judge_turn is not None:
        judge_turn.episode_id = state["episode_id"]
        turns.append(judge_turn)
    vrec = VerdictRecord(
        turn.id,
        verdict.correct,
        verdict.score,
        verdict.parsed_answer,
        verdict.verifier,
        verdict.detail,
    )
    key = "first" if explanation is None else "final"
    update: dict[str, Any] = {"turns": turns, "verdicts": [vrec], key: verdict}
    if explanation is None:
        update["final"] = verdict
        update["student_version"] = turn.model_version
    return update


async def attempt(state: EpisodeState, agents: Agents) -> dict[str, Any]:
    """The student's first attempt, verified."""
    return await _attempt_and_verify(state, agents, None)


async def decide(state: EpisodeState, agents: Agents) -> dict[str, Any]:
    """Intervene on a wrong attempt when the round's policy (or the teacher's budget) says so."""
    left = agents.teacher.remaining()
    if state["first"].correct:
        return {"intervene": False, "budget_left": left}
    if agents.broker is None:
        intervene = agents.teacher.reserve()
    else:
        problem = state["problem"]
        first_turn = state["turns"][0]
        intervene = await agents.broker.decide(
            state["episode_id"], state["index"], problem, first_turn.response
        )
    return {"intervene": intervene, "budget_left": left, "reserved": 1.0 if intervene else 0.0}


def unspent(state: EpisodeState) -> float:
    """What is left of the budget `decide` reserved for the episode after its explanations."""
    charged = sum(x.budget_spent for x in state.get("explanations", []))
    return max(state.get("reserved", 0.0) - charged, 0.0)


async def explain(
    state: EpisodeState, agents: Agents, *, style: Any = None, cost: float | None = None
) -> dict[str, Any]:
    """The teacher explains the wrong attempt; `explanation` is the text the student is shown.

    Bind the options with `functools.partial` in a custom graph, e.g. a two-tier graph's hint
    ``partial(explain, agents=agents, style=ConciseStyle(), cost=0.5)``.

    Args:
        style: the `ExplanationStyle` (custom ones too; every teacher honours it, see
            `Teacher.explain`); None: the round's (`teacher.style_for`), else as the teacher
            writes ("worked").
        cost: what this explanation is charged of the budget `decide` reserved for the
            episode; None: all that is still unspent (the whole reservation for the first
            explanation, nothing for later ones). An episode's explanations never add up to
            more than its reservation, and add up to all of it when its last one uses None.
    """
    problem, first_turn, teacher = state["problem"], state["turns"][0], agents.teacher
    if style is None and teacher.style_for is not None:
        style = teacher.style_for(problem)
    style = concrete_style(style, problem)
    left = unspent(state)
    if cost is None:
        charge = left
    elif isinstance(cost, bool) or not isinstance(cost, (int, float)) or not cost >= 0:
        raise ConfigError(
            f"explain cost must be a number >= 0 (a share of the episode's reservation), got "
            f"{cost!r}; e.g. cost=0.5 for each of two tiers, or None for what is left"
        )
    elif cost > left + 1e-9:
        raise ConfigError(
            f"explain cost {cost} is more than the {left:g} left of the teacher budget decide "
            f"reserved for episode {state['episode_id']} ({state.get('reserved', 0.0):g}); give "
            "the explanations of one intervention costs that add up to at most 1 (e.g. 0.5 "
            "each), or leave the last one's cost None (what is left)"
        )
    else:
        charge = float(cost)
    turn = await teacher.explain(problem, first_turn.response, _seq(state), style)
    turn.episode_id = state["episode_id"]
    text = turn.detail.get("shown", turn.response)
    name = getattr(style, "name", "worked")
    return {
        "turns": [turn],
        "explanations": [ExplanationRecord(turn.id, style=name, budget_spent=charge, text=text)],
        "explanation": text,
    }


async def reattempt(state: EpisodeState, agents: Agents) -> dict[str, Any]:
    """The student tries again with the explanation in context."""
    return await _attempt_and_verify(state, agents, state["explanation"])


def record(state: EpisodeState) -> dict[str, Any]:
    """Assemble the episode record (written to the store by the caller, in batches)."""
    first, final = state["first"], state["final"]
    explained = bool(state.get("intervene"))
    if first.correct:
        outcome = "correct_first"
    elif final.correct and explained:
        outcome = "correct_after_explanation"
    else:
        outcome = "wrong"
    if any(t.error for t in state.get("turns", [])):
        outcome = "error"
    problem = state["problem"]
    rec = EpisodeRecord(
        id=state["episode_id"],
        run_id=state["run_id"],
        round=state["round"],
        index=state["index"],
        problem_id=problem.id,
        arm=problem.arm,
        student_version=state.get("student_version"),
        outcome=outcome,
        correct_first=first.correct,
        correct_final=final.correct,
        explained=explained,
        seed=state.get("seed", 0),
        turns=list(state.get("turns", [])),
        verdicts=list(state.get("verdicts", [])),
        explanations=list(state.get("explanations", [])),
        decisions=decisions_of(state),
    )
    return {"record": rec}


def decisions_of(state: EpisodeState) -> dict[str, Any]:
    """The derived decisions that an exact replay must reproduce."""
    return {
        "first_correct": state["first"].correct,
        "first_answer": state["first"].parsed_answer,
        "intervene": bool(state.get("intervene")),
        "budget_left": state.get("budget_left"),
        "final_correct": state["final"].correct,
        "final_answer": state["final"].parsed_answer,
    }


def _after_decide(state: EpisodeState) -> str:
    return "explain" if state["intervene"] else "record"


def _after_explain(state: EpisodeState, agents: Agents) -> str:
    return "reattempt" if agents.reattempt else "record"


def build_episode_graph(agents: Agents):
    """Compile the episode graph bound to `agents`."""
    g = StateGraph(EpisodeState)
    g.add_node("attempt", partial(attempt, agents=agents))
    g.add_node("decide", partial(decide, agents=agents))
    g.add_node("explain", partial(explain, agents=agents))
    g.add_node("reattempt", partial(reattempt, agents=agents))
    g.add_node("record", record)
    g.add_edge(START, "attempt")
    g.add_edge("attempt", "decide")
    g.add_conditional_edges("decide", _after_decide, ["explain", "record"])
    g.add_conditional_edges(
        "explain", partial(_after_explain, agents=agents), ["reattempt", "record"]
    )
    g.add_edge("reattempt", "record")
    g.add_edge("record", END)
    return g.compile(checkpointer=False)  # the store records episodes; see graphs.loop.Session
