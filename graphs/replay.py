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

A run replays at the speed its rows are read: episodes, turns and tool calls a chunk at a time
(`pedagogy.memory.bulk`), the built-in graphs through their node functions rather than a graph
compiled per episode (`pedagogy.graphs.replay_drive`), and a large run over forked processes, one
per core. A custom graph still replays through itself, compiled per episode: much slower.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import os
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from typing import Any

from pedagogy.backends.base import ChatRequest, Completion
from pedagogy.domains.base import Domain
from pedagogy.errors import ConfigError, PedagogyError, StoreError
from pedagogy.graphs.parts import build_domain_from, require_parts
from pedagogy.memory import bulk
from pedagogy.memory.base import Store
from pedagogy.memory.records import EpisodeRecord, ToolCallRecord, TurnRecord

CHUNK = 1000
"""Episodes read (and handed to a worker process) at a time."""


class ReplayBackend:
    """Serves one agent's recorded responses in order; counts requests it cannot serve.

    A turn that called a tool natively (tools API) comes back with that call, from `tool_calls`.
    """

    name = "replay"
    text_actions = True
    """A text model (`WritesTextActions`) by default; a replay actor takes its system message and
    first-thought mode from the recorded requests (`_replay_actor`), whatever this says."""

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
    seconds: float | None = None
    """Wall time of the replay itself (reading and replaying, not the process's start-up)."""

    def to_dict(self) -> dict[str, Any]:
        return {
            "run_id": self.run_id,
            "episodes": self.episodes,
            "model_calls": self.model_calls,
            "tool_executions": self.tool_executions,
            "mismatches": self.mismatches,
            "seconds": self.seconds,
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
    """Replay one episode through its compiled graph (`episode_graph`, else the ready-made graph
    of its kind), one graph compiled for it: the reference that `replay_run`'s faster path is
    tested against. `decided` is the intervention policy's stored decision for it, if the run
    recorded one (it decided per round, over all the round's wrong attempts)."""
    problem = store.get_problems([episode.problem_id])[episode.problem_id]
    return await _replay(
        episode,
        problem,
        domain,
        reattempt=reattempt,
        judged=judged,
        episode_graph=episode_graph,
        decided=decided,
        compiled=True,
    )


async def _replay(
    episode: EpisodeRecord,
    problem: Any,
    domain: Domain,
    *,
    reattempt: bool,
    judged: bool,
    episode_graph: Callable[..., Any] | None,
    decided: bool | None,
    compiled: bool,
) -> EpisodeReplay:
    """Replay one episode: through the built-in graph's node functions (`replay_drive`) unless
    `compiled` or the graph is a custom one, which replays as a compiled graph."""
    from pedagogy.graphs.agent_episode import build_agent_episode_graph
    from pedagogy.graphs.episode import build_episode_graph
    from pedagogy.graphs.replay_drive import drive, wiring_for

    acting = "agent" in episode.decisions
    agents, backends, runner = _agents(episode, domain, reattempt, judged, decided)
    factory = episode_graph or (build_agent_episode_graph if acting else build_episode_graph)
    wiring = None if compiled else wiring_for(factory)
    state = _input(episode, problem)
    if wiring is None:
        out = await factory(agents).ainvoke(state)
    else:
        out = await drive(wiring, agents, state)
    mismatches = _compare(episode, out["record"])
    unused = sum(b.unused for b in backends.values())
    if runner is not None:
        mismatches += runner.mismatches
    if unused:
        mismatches.append(f"{unused} recorded turns were not requested on replay")
    executions = 0
    if runner is not None:
        if runner.unused:
            mismatches.append(f"{runner.unused} recorded tool calls were not requested on replay")
        if runner.misses:
            mismatches.append(f"{runner.misses} tool calls had no recorded observation")
        executions = runner.executions
    calls = sum(b.misses for b in backends.values())
    return EpisodeReplay(episode.id, calls, mismatches, executions)


def _agents(
    episode: EpisodeRecord, domain: Domain, reattempt: bool, judged: bool, decided: bool | None
) -> tuple[Any, dict[str, ReplayBackend], Any]:
    """The agents an episode replays with: replay backends over its turns, its stored teacher
    budget and intervention decision; for an agent episode, actors acting as the recorded ones
    did and its tools' stored observations (the runner, else None)."""
    from pedagogy.agents.roles import Student, Teacher, Verifier
    from pedagogy.graphs.episode import Agents

    by_agent = _by_agent(episode)
    acting = "agent" in episode.decisions
    calls = episode.tool_calls if acting else ()
    backends = {
        a: ReplayBackend(by_agent.get(a, []), tool_calls=calls)
        for a in ("student", "teacher", "verifier")
    }
    roles = dict(
        student=Student(backends["student"]),
        teacher=Teacher(backends["teacher"], budget=episode.decisions.get("budget_left")),
        verifier=Verifier(domain, backends["verifier"] if judged else None),
        reattempt=reattempt,
        broker=None if decided is None else RecordedDecision(decided),
    )
    if not acting:
        return Agents(**roles), backends, None
    from pedagogy.agents.acting import RecordedToolRunner
    from pedagogy.graphs.agent_episode import AgentEpisodeAgents

    settings = episode.decisions["agent"]
    runner = RecordedToolRunner(calls)
    explain = settings.get("explain", "demonstrate")
    teacher_steps = settings.get("teacher_max_steps") or 1
    student = by_agent.get("student", [])
    teacher = by_agent.get("teacher", [])
    agents = AgentEpisodeAgents(
        **roles,
        actor=_replay_actor(
            student, backends["student"], runner, "student", settings.get("max_steps")
        ),
        demonstrator=_replay_actor(teacher, backends["teacher"], runner, "teacher", teacher_steps)
        if explain == "demonstrate"
        else None,
        explain=explain,
    )
    return agents, backends, runner


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
    recorded system message and first-thought prefixes, one sample per step, observations from
    the store."""
    from pedagogy.agents.acting import Actor, tools_from_specs

    acting = [t for t in turns if (t.detail or {}).get("trajectory")]
    specs = next((t.request.get("tools") for t in acting if t.request.get("tools")), None)
    firsts = [t.detail for t in acting if t.detail.get("step") == 0]
    prefixes = [d.get("ftp") for d in firsts]
    mode = next((d["ftp_mode"] for d in firsts if d.get("ftp_mode")), "prefix")
    first = (acting[0].request.get("messages") or [{}])[0] if acting else {}
    system = first.get("content") if first.get("role") == "system" else None

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
        instructions=system,
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
    """Replay one agent episode through its compiled graph: 0 model calls, 0 tool executions,
    every decision compared. `episode_graph`: the graph the run used (default: the agent
    episode graph)."""
    if "agent" not in episode.decisions:
        raise ConfigError(
            f"episode {episode.id} is not an agent episode (its decisions hold no 'agent' "
            "settings); replay it with replay_episode"
        )
    return await replay_episode(
        episode,
        store,
        domain,
        reattempt=reattempt,
        judged=judged,
        episode_graph=episode_graph,
        decided=decided,
    )


@dataclass
class _Run:
    """What every episode of a run replays with (handed to worker processes as it is)."""

    domain: Domain
    reattempt: bool
    judged: bool
    graph: Callable[..., Any] | None
    decided: dict[str, bool]


def replay_run(
    store: Store,
    run_id: str,
    episode_id: str | None = None,
    episode_graph: Callable[..., Any] | None = None,
    *,
    workers: int | None = None,
    chunk: int = CHUNK,
) -> ReplayReport:
    """Replay every episode of a run (or one), with zero model calls (and tool executions).

    The run's stored config is loaded, which imports the plugins it recorded. Episodes replay
    through the graph the run recorded (`episodes.graph`), or `episode_graph` when given (a
    factory defined in a script, which a record cannot import); a graph that cannot be found is
    refused in one line that names it, never replaced by the default. Agent episodes replay
    through the agent episode graph unless the run recorded another.

    The built-in graphs replay through their node functions (`replay_drive`), with no graph
    compiled; a custom graph is compiled once per episode (its factory binds the episode's
    agents), so it replays much more slowly. Episodes are read `chunk` at a time (one query per
    table), and a large run is split over `workers` processes (forked, each with its own
    database connections); None: one per available core when the run has at least `chunk`
    episodes per process, the database is a file or a server and the process has no other
    thread (forking a threaded process can deadlock), else 1.
    """
    from pedagogy.config import config_from_dict

    if isinstance(chunk, bool) or not isinstance(chunk, int) or chunk < 1:
        raise ConfigError(f"chunk must be a whole number of episodes >= 1, got {chunk!r}")
    run = store.get_run(run_id)
    config = config_from_dict(run.config, f"run {run_id}")
    recorded = require_parts(config, f"run {run_id}", graph=episode_graph is None)
    job = _Run(
        domain=build_domain_from(config),
        reattempt=config.episodes.reattempt,
        judged=config.verifier.kind == "llm_judge",
        graph=episode_graph or recorded,
        decided={d.subject: bool(d.chosen) for d in store.decisions(run_id, kind="intervention")},
    )
    t0 = time.perf_counter()
    if episode_id is not None:
        episode = store.get_episode(episode_id)
        if episode.run_id != run_id:
            raise StoreError(f"episode {episode_id} belongs to run {episode.run_id}, not {run_id}")
        details = _replay_chunk(job, [episode], _problems(store, [episode]))
    elif not bulk.readable(store):
        episodes = store.episodes(run_id, with_turns=True)
        details = _replay_chunk(job, episodes, _problems(store, episodes))
    else:
        ids = bulk.episode_ids(store, run_id)
        n = _workers(workers, store, len(ids), chunk)
        if n > 1:
            details = _in_processes(store, job, ids, n, chunk)
        else:
            details = []
            for i in range(0, len(ids), chunk):
                details += _replay_chunk(job, *bulk.episodes_for_replay(store, ids[i : i + chunk]))
    return ReplayReport(
        run_id=run_id,
        episodes=len(details),
        model_calls=sum(d.model_calls for d in details),
        mismatches=sum(len(d.mismatches) for d in details),
        details=details,
        tool_executions=sum(d.tool_executions for d in details),
        seconds=time.perf_counter() - t0,
    )


def _problems(store: Store, episodes: list[EpisodeRecord]) -> dict[str, Any]:
    return store.get_problems([e.problem_id for e in episodes])


def _replay_chunk(
    job: _Run, episodes: list[EpisodeRecord], problems: dict[str, Any]
) -> list[EpisodeReplay]:
    """Replay `episodes` one after another in one event loop: with every response served from
    the store nothing waits, so running them concurrently would only add overhead."""

    async def all_() -> list[EpisodeReplay]:
        return [
            await _replay(
                e,
                problems[e.problem_id],
                job.domain,
                reattempt=job.reattempt,
                judged=job.judged,
                episode_graph=job.graph,
                decided=job.decided.get(e.id),
                compiled=False,
            )
            for e in episodes
        ]

    return asyncio.run(all_())


def _workers(requested: int | None, store: Store, episodes: int, chunk: int) -> int:
    """How many processes replay `episodes` (see `replay_run`)."""
    if requested is not None:
        if isinstance(requested, bool) or not isinstance(requested, int) or requested < 1:
            raise ConfigError(f"workers must be a whole number >= 1, got {requested!r}")
        n = requested
    elif threading.active_count() > 1:
        n = 1
    else:
        n = min(_cores(), episodes // chunk)
    if "fork" not in multiprocessing.get_all_start_methods() or not bulk.forkable(store):
        return 1
    return max(1, min(n, episodes))


def _cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


_WORKER: dict[str, Any] = {}


def _start_worker(store: Store, job: _Run) -> None:
    bulk.after_fork(store)
    _WORKER.update(store=store, job=job)


def _replay_ids(ids: list[str]) -> list[EpisodeReplay]:
    return _replay_chunk(_WORKER["job"], *bulk.episodes_for_replay(_WORKER["store"], ids))


def _in_processes(
    store: Store, job: _Run, ids: list[str], workers: int, chunk: int
) -> list[EpisodeReplay]:
    """Replay `ids` over `workers` forked processes, in chunks of at most `chunk` small enough
    to keep every process busy to the end; the details come back in the order of `ids`."""
    size = max(1, min(chunk, -(-len(ids) // (4 * workers))))
    parts = [ids[i : i + size] for i in range(0, len(ids), size)]
    context = multiprocessing.get_context("fork")
    try:
        with ProcessPoolExecutor(
            workers, mp_context=context, initializer=_start_worker, initargs=(store, job)
        ) as pool:
            return [d for part in pool.map(_replay_ids, parts) for d in part]
    except BrokenProcessPool as err:
        raise PedagogyError(
            f"a replay worker process died ({err}); replay in this process instead: "
            "replay_run(..., workers=1)"
        ) from err
