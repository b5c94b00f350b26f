"""Exact replay: re-run stored episodes through the same graph, serving recorded responses.

No model is called: each agent's backend is a `ReplayBackend` that hands back the responses the
agent gave, in order. A request with no recorded response would have needed a model call: it is
counted (it must be 0), and every derived decision (verdicts, the intervention decision, the
outcome) is compared with what was stored (mismatches must be 0).

Agent episodes (their decisions hold "agent") replay through the agent episode graph with the
tools' stored observations (`RecordedToolRunner`): no tool is executed (counted: must be 0), and a
requested call that differs from the stored one is a mismatch. The actors' tools are stand-ins
rebuilt from the specs stored with the requests, so a replay needs neither the tools nor their
data; the actors' settings come from the episode's own decisions.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from pedagogy.backends.base import ChatRequest, Completion
from pedagogy.domains.base import Domain
from pedagogy.memory.base import Store
from pedagogy.memory.records import EpisodeRecord, ToolCallRecord, TurnRecord


class ReplayBackend:
    """Serves one agent's recorded responses in order; counts requests it cannot serve.

    A turn that called a tool natively (tools API) comes back with that call, from `tool_calls`.
    """

    name = "replay"

    def __init__(
        self,
        turns: Sequence[TurnRecord],
        model: str = "replay",
        tool_calls: Sequence[ToolCallRecord] = (),
    ):
        self.model = model
        self._turns = list(turns)
        self._calls = {c.turn_id: c for c in tool_calls}
        self.misses = 0

    @property
    def unused(self) -> int:
        return len(self._turns)

    async def generate(self, requests: Sequence[ChatRequest]) -> list[Completion]:
        out = []
        for _ in requests:
            if not self._turns:
                self.misses += 1
                out.append(Completion(text="", model=self.model, error="no recorded response"))
                continue
            t = self._turns.pop(0)
            out.append(
                Completion(
                    text=t.response,
                    model=t.model,
                    prompt_tokens=t.prompt_tokens,
                    completion_tokens=t.completion_tokens,
                    latency_s=0.0,
                    cost=t.cost,
                    model_version=t.model_version,
                    error=t.error,
                    tool_calls=self._native_calls(t),
                )
            )
        return out

    def _native_calls(self, turn: TurnRecord) -> list[Any]:
        call = self._calls.get(turn.id)
        if call is None or not (turn.detail or {}).get("native"):
            return []
        from pedagogy.tools.base import ToolCall

        return [ToolCall(name=call.tool, arguments=dict(call.arguments), id=call.call_id)]


@dataclass
class EpisodeReplay:
    episode_id: str
    model_calls: int
    mismatches: list[str] = field(default_factory=list)
    tool_executions: int = 0


@dataclass
class ReplayReport:
    run_id: str
    episodes: int
    model_calls: int
    mismatches: int
    details: list[EpisodeReplay] = field(default_factory=list)
    tool_executions: int = 0

    def to_dict(self) -> dict[str, Any]:
        return {
            "run_id": self.run_id,
            "episodes": self.episodes,
            "model_calls": self.model_calls,
            "tool_executions": self.tool_executions,
            "mismatches": self.mismatches,
            "mismatched_episodes": [
                {
                    "episode_id": d.episode_id,
                    "model_calls": d.model_calls,
                    "tool_executions": d.tool_executions,
                    "mismatches": d.mismatches,
                }
                for d in self.details
                if d.mismatches or d.model_calls or d.tool_executions
            ],
        }


@dataclass
class RecordedDecision:
    """Stands in for the round's intervention broker: the policy's stored decision, no call."""

    intervene: bool

    async def decide(self, episode: str, index: int, problem: Any, attempt: str) -> bool:
        return self.intervene


async def replay_episode(
    episode: EpisodeRecord,
    store: Store,
    domain: Domain,
    *,
    reattempt: bool,
    judged: bool,
    episode_graph: Callable[..., Any] | None = None,
    decided: bool | None = None,
) -> EpisodeReplay:
    """Replay one episode. `decided` is the intervention policy's stored decision for it, if the
    run recorded one (it decided per round, over all the round's wrong attempts)."""
    from pedagogy.agents.roles import Student, Teacher, Verifier
    from pedagogy.graphs.episode import Agents, build_episode_graph

    if "agent" in episode.decisions:
        return await replay_agent_episode(
            episode,
            store,
            domain,
            reattempt=reattempt,
            judged=judged,
            decided=decided,
            episode_graph=episode_graph,
        )

    by_agent = _by_agent(episode)
    backends = {a: ReplayBackend(by_agent.get(a, [])) for a in ("student", "teacher", "verifier")}
    budget = episode.decisions.get("budget_left")
    agents = Agents(
        student=Student(backends["student"]),
        teacher=Teacher(backends["teacher"], budget=budget),
        verifier=Verifier(domain, backends["verifier"] if judged else None),
        reattempt=reattempt,
        broker=None if decided is None else RecordedDecision(decided),
    )
    problem = store.get_problems([episode.problem_id])[episode.problem_id]
    out = await (episode_graph or build_episode_graph)(agents).ainvoke(_input(episode, problem))
    mismatches = _compare(episode, out["record"])
    unused = sum(b.unused for b in backends.values())
    if unused:
        mismatches.append(f"{unused} recorded turns were not requested on replay")
    calls = sum(b.misses for b in backends.values())
    return EpisodeReplay(episode.id, calls, mismatches)


def _input(episode: EpisodeRecord, problem: Any) -> dict[str, Any]:
    return {
        "episode_id": episode.id,
        "run_id": episode.run_id,
        "round": episode.round,
        "index": episode.index,
        "seed": episode.seed,
        "problem": problem,
    }


def _compare(episode: EpisodeRecord, rec: EpisodeRecord) -> list[str]:
    mismatches = []
    for key, stored in episode.decisions.items():
        got = rec.decisions.get(key)
        if got != stored:
            mismatches.append(f"{key}: stored {stored!r}, replayed {got!r}")
    for key in ("outcome", "correct_first", "correct_final", "explained"):
        if getattr(rec, key) != getattr(episode, key):
            mismatches.append(
                f"{key}: stored {getattr(episode, key)!r}, replayed {getattr(rec, key)!r}"
            )
    return mismatches


def _by_agent(episode: EpisodeRecord) -> dict[str, list[TurnRecord]]:
    by_agent: dict[str, list[TurnRecord]] = {}
    for t in sorted(episode.turns, key=lambda t: t.seq):
        by_agent.setdefault(t.agent, []).append(t)
    return by_agent


def _replay_actor(
    turns: list[TurnRecord], backend: ReplayBackend, runner: Any, agent: str, max_steps: int | None
) -> Any:
    """An actor that acts as the recorded one did: its tools rebuilt from the stored specs, the
    recorded first-thought prefixes, one sample per step, observations from the store."""
    from pedagogy.agents.acting import Actor, tools_from_specs

    acting = [t for t in turns if (t.detail or {}).get("trajectory")]
    specs = next((t.request.get("tools") for t in acting if t.request.get("tools")), None)
    firsts = [t.detail for t in acting if t.detail.get("step") == 0]
    prefixes = [d.get("ftp") for d in firsts]
    mode = next((d["ftp_mode"] for d in firsts if d.get("ftp_mode")), "prefix")

    def ftp(problem: Any) -> str | None:
        return prefixes.pop(0) if prefixes else None

    return Actor(
        backend,
        tools_from_specs(specs),
        max_steps=max_steps or 1,
        runner=runner,
        agent=agent,
        ftp=ftp if any(prefixes) else None,
        ftp_mode=mode,
    )


async def replay_agent_episode(
    episode: EpisodeRecord,
    store: Store,
    domain: Domain,
    *,
    reattempt: bool,
    judged: bool,
    decided: bool | None = None,
    episode_graph: Callable[..., Any] | None = None,
) -> EpisodeReplay:
    """Replay one agent episode: 0 model calls, 0 tool executions, every decision compared.
    `episode_graph`: the graph the run used (default: the agent episode graph)."""
    from pedagogy.agents.acting import RecordedToolRunner
    from pedagogy.agents.roles import Student, Teacher, Verifier
    from pedagogy.graphs.agent_episode import AgentEpisodeAgents, build_agent_episode_graph

    settings = episode.decisions["agent"]
    by_agent = _by_agent(episode)
    calls = episode.tool_calls
    backends = {
        a: ReplayBackend(by_agent.get(a, []), tool_calls=calls)
        for a in ("student", "teacher", "verifier")
    }
    runner = RecordedToolRunner(calls)
    demonstrate = settings.get("explain", "demonstrate") == "demonstrate"
    teacher_steps = settings.get("teacher_max_steps") or 1
    agents = AgentEpisodeAgents(
        student=Student(backends["student"]),
        teacher=Teacher(backends["teacher"], budget=episode.decisions.get("budget_left")),
        verifier=Verifier(domain, backends["verifier"] if judged else None),
        reattempt=reattempt,
        broker=None if decided is None else RecordedDecision(decided),
        actor=_replay_actor(
            by_agent.get("student", []),
            backends["student"],
            runner,
            "student",
            settings.get("max_steps"),
        ),
        demonstrator=_replay_actor(
            by_agent.get("teacher", []), backends["teacher"], runner, "teacher", teacher_steps
        )
        if demonstrate
        else None,
        explain=settings.get("explain", "demonstrate"),
    )
    problem = store.get_problems([episode.problem_id])[episode.problem_id]
    graph = episode_graph or build_agent_episode_graph
    out = await graph(agents).ainvoke(_input(episode, problem))
    mismatches = _compare(episode, out["record"]) + runner.mismatches
    unused = sum(b.unused for b in backends.values())
    if unused:
        mismatches.append(f"{unused} recorded turns were not requested on replay")
    if runner.unused:
        mismatches.append(f"{runner.unused} recorded tool calls were not requested on replay")
    if runner.misses:
        mismatches.append(f"{runner.misses} tool calls had no recorded observation")
    model_calls = sum(b.misses for b in backends.values())
    return EpisodeReplay(episode.id, model_calls, mismatches, runner.executions)


def replay_run(
    store: Store,
    run_id: str,
    episode_id: str | None = None,
    episode_graph: Callable[..., Any] | None = None,
) -> ReplayReport:
    """Replay every episode of a run (or one), with zero model calls (and tool executions).

    The run's stored config is loaded, which imports the plugins it recorded. Episodes replay
    through the graph the run recorded (`episodes.graph`), or `episode_graph` when given (a
    factory defined in a script, which a record cannot import); a graph that cannot be found is
    refused in one line that names it, never replaced by the default. Agent episodes replay
    through the agent episode graph unless the run recorded another.
    """
    from pedagogy.config import config_from_dict
    from pedagogy.errors import StoreError
    from pedagogy.parts import require_parts
    from pedagogy.runner import build_domain_from

    run = store.get_run(run_id)
    config = config_from_dict(run.config, f"run {run_id}")
    recorded = require_parts(config, f"run {run_id}", graph=episode_graph is None)
    episode_graph = episode_graph or recorded
    domain = build_domain_from(config)
    decided = {d.subject: bool(d.chosen) for d in store.decisions(run_id, kind="intervention")}
    if episode_id is not None:
        episode = store.get_episode(episode_id)
        if episode.run_id != run_id:
            raise StoreError(f"episode {episode_id} belongs to run {episode.run_id}, not {run_id}")
        episodes = [episode]
    else:
        episodes = store.episodes(run_id, with_turns=True)

    async def all_() -> list[EpisodeReplay]:
        return [
            await replay_episode(
                ep,
                store,
                domain,
                reattempt=config.episodes.reattempt,
                judged=config.verifier.kind == "llm_judge",
                episode_graph=episode_graph,
                decided=decided.get(ep.id),
            )
            for ep in episodes
        ]

    details = asyncio.run(all_())
    return ReplayReport(
        run_id=run_id,
        episodes=len(details),
        model_calls=sum(d.model_calls for d in details),
        mismatches=sum(len(d.mismatches) for d in details),
        details=details,
        tool_executions=sum(d.tool_executions for d in details),
    )
