"""The agent episode graph: the student acts with tools, step by step, and a wrong attempt may be
met with a demonstration.

    attempt_act <-> tool (until an answer or max_steps) -> verify -> decide -> explain
    -> reattempt_act <-> tool -> verify -> record

Each `*_act` node is one model step (one `generate` call, so a batching backend batches the steps
of concurrent episodes); `tool` runs the step's call through the actor's `ToolRunner`; an invalid
action gets an error observation and counts as a step. `decide` is the episode graph's own node
(the same budget and broker); `explain` has the teacher demonstrate (a trajectory of its own, with
real tool executions, shown to the student as text before the re-attempt) or, with
explain="text", write a worked explanation as in the episode graph. Compiled without a
checkpointer, like `graphs.episode` (see there why).
"""

from __future__ import annotations

import dataclasses
import operator
from dataclasses import dataclass
from functools import partial
from typing import Annotated, Any

from langgraph.graph import END, START, StateGraph

from pedagogy.agents.acting import Actor, Step, trajectory
from pedagogy.errors import ConfigError
from pedagogy.graphs import episode as E
from pedagogy.graphs.episode import Agents, EpisodeState
from pedagogy.memory.records import ExplanationRecord, ToolCallRecord, VerdictRecord

EXPLAIN = ("demonstrate", "text")


@dataclass(kw_only=True)
class AgentEpisodeAgents(Agents):
    """The agents of an agent episode: the episode graph's (teacher budget, verifier, broker)
    plus the acting student and, for demonstrations, the acting teacher."""

    actor: Actor
    """The student, acting with tools."""
    demonstrator: Actor | None = None
    """The teacher, acting with tools (`DemonstrationBackend` or an LLM); needed for
    explain="demonstrate"."""
    explain: str = "demonstrate"
    """demonstrate: the teacher's demonstration trajectory is the explanation | text: the
    teacher's written explanation (`Teacher.explain`)."""
    eval_actor: Actor | None = None
    """The student as measured on held-out problems, when it acts otherwise there (e.g. with
    self-consistent action generation); None: `actor`."""

    def __post_init__(self) -> None:
        if self.explain not in EXPLAIN:
            raise ConfigError(f"explain {self.explain!r}: choose demonstrate or text")
        if self.explain == "demonstrate" and self.demonstrator is None:
            raise ConfigError(
                "explain='demonstrate' needs a demonstrator (an Actor for the teacher, e.g. "
                "Actor(DemonstrationBackend(domain), tools, agent='teacher')); or use explain='text'"
            )

    def settings(self) -> dict[str, Any]:
        """What a replay must run with (stored in the episode's decisions as "agent")."""
        return {
            "max_steps": self.actor.max_steps,
            "explain": self.explain,
            "teacher_max_steps": self.demonstrator.max_steps if self.demonstrator else None,
        }


class AgentEpisodeState(EpisodeState, total=False):
    tool_calls: Annotated[list[ToolCallRecord], operator.add]
    trajectories: Annotated[list[dict[str, Any]], operator.add]
    """One summary per finished trajectory: kind, steps, tools, invalid, answer (, correct)."""
    phase: str
    """attempt | reattempt: whose steps `steps` holds."""
    steps: list[Step]
    attempt_text: str
    """The first attempt's steps and observations as text (what the broker and teacher see)."""


def _seq(state: AgentEpisodeState) -> int:
    return len(state.get("turns", []))


def _summary(kind: str, steps: list[Step]) -> dict[str, Any]:
    last = steps[-1] if steps else None
    return {
        "kind": kind,
        "steps": len(steps),
        "tools": [s.action.tool for s in steps if s.action.kind == "call"],
        "invalid": sum(s.action.kind == "invalid" for s in steps),
        "answer": last.action.answer if last is not None and last.action.kind == "answer" else None,
    }


async def _act(state: AgentEpisodeState, agents: AgentEpisodeAgents, phase: str) -> dict[str, Any]:
    steps = list(state.get("steps") or []) if state.get("phase") == phase else []
    prefix = state.get("explanation") if phase == "reattempt" else None
    step = await agents.actor.act(
        state["problem"],
        steps,
        kind=phase,
        seq=_seq(state),
        seed=state.get("seed"),
        prefix=prefix,
    )
    step.turn.episode_id = state["episode_id"]
    return {"phase": phase, "steps": steps + [step], "turns": [step.turn]}


async def attempt_act(state: AgentEpisodeState, agents: AgentEpisodeAgents) -> dict[str, Any]:
    """One step of the student's first attempt."""
    return await _act(state, agents, "attempt")


async def reattempt_act(state: AgentEpisodeState, agents: AgentEpisodeAgents) -> dict[str, Any]:
    """One step of the re-attempt, with the explanation (demonstration) before the problem."""
    return await _act(state, agents, "reattempt")


async def tool(state: AgentEpisodeState, agents: AgentEpisodeAgents) -> dict[str, Any]:
    """Run the last step's tool call and record it."""
    step = dataclasses.replace(state["steps"][-1])
    call = await agents.actor.execute(step)
    call.episode_id = state["episode_id"]
    return {"steps": state["steps"][:-1] + [step], "tool_calls": [call]}


async def verify(state: AgentEpisodeState, agents: AgentEpisodeAgents) -> dict[str, Any]:
    """Check the trajectory's final answer (none: wrong), as the episode graph checks a reply."""
    phase, steps, problem = state["phase"], state["steps"], state["problem"]
    last = steps[-1]
    response = last.action.text if last.action.kind == "answer" else ""
    verdict, judge_turn = await agents.verifier.verify(problem, response, _seq(state))
    vrec = VerdictRecord(
        last.turn.id,
        verdict.correct,
        verdict.score,
        verdict.parsed_answer,
        verdict.verifier,
        verdict.detail,
    )
    update: dict[str, Any] = {"verdicts": [vrec], "trajectories": [_summary(phase, steps)]}
    if judge_turn is not None:
        judge_turn.episode_id = state["episode_id"]
        update["turns"] = [judge_turn]
    if phase == "attempt":
        text = trajectory(phase, agents.actor.agent, problem.prompt, steps).text()
        update.update(
            first=verdict,
            final=verdict,
            student_version=steps[0].turn.model_version,
            attempt_text=text[len(problem.prompt) + 1 :],
        )
    else:
        update["final"] = verdict
    return update


def _attempt_view(state: AgentEpisodeState) -> dict[str, Any]:
    """The state as the episode graph's nodes read it: turns[0] is "the attempt", here the whole
    first trajectory as text (same number of turns, so the sequence numbers stay right)."""
    turns = list(state["turns"])
    turns[0] = dataclasses.replace(turns[0], response=state.get("attempt_text", ""))
    return {**state, "turns": turns}


async def decide(state: AgentEpisodeState, agents: AgentEpisodeAgents) -> dict[str, Any]:
    """The episode graph's decision: budget, or the round's broker."""
    return await E.decide(_attempt_view(state), agents)


async def explain(state: AgentEpisodeState, agents: AgentEpisodeAgents) -> dict[str, Any]:
    """The teacher demonstrates (or, explain="text", writes an explanation)."""
    if agents.explain == "text":
        return await E.explain(_attempt_view(state), agents)
    problem, teacher, eid = state["problem"], agents.demonstrator, state["episode_id"]
    steps = await teacher.run(
        problem, kind="demonstration", seq=_seq(state), seed=state.get("seed")
    )
    for s in steps:
        s.turn.episode_id = eid
        if s.tool_call is not None:
            s.tool_call.episode_id = eid
    last = steps[-1]
    response = last.action.text if last.action.kind == "answer" else ""
    summary = _summary("demonstration", steps)
    summary["correct"] = agents.verifier.domain.verify(problem, response).correct
    shown = trajectory("demonstration", teacher.agent, problem.prompt, steps).text()
    last.turn.detail["shown"] = shown  # what the re-attempt is shown, stored with the turn
    charge = E.unspent(state)
    return {
        "turns": [s.turn for s in steps],
        "tool_calls": [s.tool_call for s in steps if s.tool_call is not None],
        "explanations": [
            ExplanationRecord(last.turn.id, style="demonstration", budget_spent=charge, text=shown)
        ],
        "explanation": shown,
        "trajectories": [summary],
    }


def record(state: AgentEpisodeState, agents: AgentEpisodeAgents) -> dict[str, Any]:
    """The episode record, with its tool calls and the trajectories' decisions."""
    rec = E.record(state)["record"]
    rec.tool_calls = list(state.get("tool_calls", []))
    rec.decisions = decisions_of(state, agents)
    return {"record": rec}


def decisions_of(
    state: AgentEpisodeState, agents: AgentEpisodeAgents | None = None
) -> dict[str, Any]:
    """The episode graph's decisions plus, per trajectory (attempt, demonstration, reattempt),
    its steps, tool names, invalid actions and answer (and whether a demonstration was right)."""
    out = E.decisions_of(state)
    for t in state.get("trajectories", []):
        kind = t["kind"]
        for key in ("steps", "tools", "invalid", "answer", "correct"):
            if key in t:
                out[f"{kind}_{key}"] = t[key]
    if agents is not None:
        out["agent"] = agents.settings()
    return out


def _after_act(state: AgentEpisodeState, agents: AgentEpisodeAgents) -> str:
    steps = state["steps"]
    if steps[-1].action.kind == "call":
        return "tool"
    if steps[-1].final or len(steps) >= agents.actor.max_steps:
        return "verify"
    return f"{state['phase']}_act"


def _after_tool(state: AgentEpisodeState, agents: AgentEpisodeAgents) -> str:
    if len(state["steps"]) >= agents.actor.max_steps:
        return "verify"
    return f"{state['phase']}_act"


def _after_verify(state: AgentEpisodeState) -> str:
    return "decide" if state["phase"] == "attempt" else "record"


def _after_explain(state: AgentEpisodeState, agents: AgentEpisodeAgents) -> str:
    return "reattempt_act" if agents.reattempt else "record"


def build_agent_episode_graph(agents: AgentEpisodeAgents):
    """Compile the agent episode graph bound to `agents` (a `graph_factory` for the loop)."""
    if not isinstance(agents, AgentEpisodeAgents):
        raise ConfigError(
            f"build_agent_episode_graph needs AgentEpisodeAgents (an Agents with an acting "
            f"student), got {type(agents).__name__}; or use graphs.episode.build_episode_graph"
        )
    g = StateGraph(AgentEpisodeState)
    g.add_node("attempt_act", partial(attempt_act, agents=agents))
    g.add_node("tool", partial(tool, agents=agents))
    g.add_node("verify", partial(verify, agents=agents))
    g.add_node("decide", partial(decide, agents=agents))
    g.add_node("explain", partial(explain, agents=agents))
    g.add_node("reattempt_act", partial(reattempt_act, agents=agents))
    g.add_node("record", partial(record, agents=agents))
    after_act = partial(_after_act, agents=agents)
    g.add_edge(START, "attempt_act")
    g.add_conditional_edges("attempt_act", after_act, ["tool", "attempt_act", "verify"])
    g.add_conditional_edges("reattempt_act", after_act, ["tool", "reattempt_act", "verify"])
    g.add_conditional_edges(
        "tool", partial(_after_tool, agents=agents), ["attempt_act", "reattempt_act", "verify"]
    )
    g.add_conditional_edges("verify", _after_verify, ["decide", "record"])
    g.add_conditional_edges("decide", E._after_decide, ["explain", "record"])
    g.add_conditional_edges(
        "explain", partial(_after_explain, agents=agents), ["reattempt_act", "record"]
    )
    g.add_edge("record", END)
    # Two trajectories of up to max_steps steps, each step up to two nodes, plus the rest.
    limit = 4 * agents.actor.max_steps + 16
    return g.compile(checkpointer=False).with_config(recursion_limit=limit)
