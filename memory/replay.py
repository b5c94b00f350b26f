"""Exact replay: re-run stored episodes through the same graph, serving recorded responses.

No model is called: each agent's backend is a `ReplayBackend` that hands back the responses the
agent gave, in order. A request with no recorded response would have needed a model call: it is
counted (it must be 0), and every derived decision (verdicts, the intervention decision, the
outcome) is compared with what was stored (mismatches must be 0).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from pedagogy.backends.base import ChatRequest, Completion
from pedagogy.domains.base import Domain
from pedagogy.memory.base import Store
from pedagogy.memory.records import EpisodeRecord, TurnRecord


class ReplayBackend:
    """Serves one agent's recorded responses in order; counts requests it cannot serve."""

    name = "replay"

    def __init__(self, turns: Sequence[TurnRecord], model: str = "replay"):
        self.model = model
        self._turns = list(turns)
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
                )
            )
        return out


@dataclass
class EpisodeReplay:
    episode_id: str
    model_calls: int
    mismatches: list[str] = field(default_factory=list)


@dataclass
class ReplayReport:
    run_id: str
    episodes: int
    model_calls: int
    mismatches: int
    details: list[EpisodeReplay] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "run_id": self.run_id,
            "episodes": self.episodes,
            "model_calls": self.model_calls,
            "mismatches": self.mismatches,
            "mismatched_episodes": [
                {
                    "episode_id": d.episode_id,
                    "model_calls": d.model_calls,
                    "mismatches": d.mismatches,
                }
                for d in self.details
                if d.mismatches or d.model_calls
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

    by_agent: dict[str, list[TurnRecord]] = {}
    for t in sorted(episode.turns, key=lambda t: t.seq):
        by_agent.setdefault(t.agent, []).append(t)
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
    out = await (episode_graph or build_episode_graph)(agents).ainvoke(
        {
            "episode_id": episode.id,
            "run_id": episode.run_id,
            "round": episode.round,
            "index": episode.index,
            "seed": episode.seed,
            "problem": problem,
        }
    )
    rec: EpisodeRecord = out["record"]
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
    unused = sum(b.unused for b in backends.values())
    if unused:
        mismatches.append(f"{unused} recorded turns were not requested on replay")
    calls = sum(b.misses for b in backends.values())
    return EpisodeReplay(episode.id, calls, mismatches)


def replay_run(
    store: Store,
    run_id: str,
    episode_id: str | None = None,
    episode_graph: Callable[..., Any] | None = None,
) -> ReplayReport:
    """Replay every episode of a run (or one), with zero model calls.

    Runs made with a custom episode graph replay through the same factory (`episode_graph`).
    """
    from pedagogy.config import config_from_dict
    from pedagogy.errors import StoreError
    from pedagogy.runner import build_domain_from

    run = store.get_run(run_id)
    config = config_from_dict(run.config, f"run {run_id}")
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
    )
