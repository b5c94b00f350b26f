"""The loop's runtime: a `Session` holds what the loop graph's nodes work with but never checkpoint
(store, backends, domain, agents) and the helpers several nodes share, so each node module can be
read on its own. The graph's own state, `LoopState`, stays small and JSON-able in `graphs.loop`.
"""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pedagogy.agents.adaptive import cell_key
from pedagogy.agents.curriculum import build_sampler
from pedagogy.agents.roles import Generator
from pedagogy.backends.base import HasCircuitBreaker, Scores
from pedagogy.config import RunConfig
from pedagogy.domains.base import Domain, Problem, problem_parameters
from pedagogy.graphs.budget import BudgetGuard
from pedagogy.graphs.episode import Agents, build_episode_graph
from pedagogy.graphs.history import RoundHistory
from pedagogy.memory.base import Store
from pedagogy.memory.records import CurriculumStateRecord, DecisionRecord
from pedagogy.training.pool import TrainingPool

__all__ = ["EventSink", "Session"]


EventSink = Callable[[str, dict[str, Any]], None]


def _no_events(kind: str, data: dict[str, Any]) -> None:
    return None


def _no_guard() -> None:
    return None


@dataclass
class Session:
    """Runtime objects the loop's nodes work with (never checkpointed)."""

    config: RunConfig
    run_id: str
    store: Store
    domain: Domain
    agents: Agents
    generator: Generator
    student_backend: Any
    """A backend with reload(path, version_id) (transformers)."""
    heldout: dict[tuple[str, int], list[Problem]]
    arms: list[str]
    models_dir: Path
    emit: EventSink = _no_events
    graph_factory: Callable[[Agents], Any] = build_episode_graph
    """Builds the episode graph from the agents; swap it for a custom graph."""
    episode_graph: Any = field(default=None, init=False)
    heldout_prompts: set[str] = field(default_factory=set, init=False)
    budget: BudgetGuard = field(default_factory=BudgetGuard, init=False)
    """The loop's clock and budget check (`config.budget`)."""
    guard: Callable[[], None] = _no_guard
    """Called before every node: raises when this process lost the run's lease."""
    _pool: TrainingPool | None = field(default=None, init=False, repr=False)
    _history: RoundHistory | None = field(default=None, init=False, repr=False)
    teacher_path: str | None = None
    """The teacher's local model folder when it is a `transformers` model (an on-policy job's
    teacher); None for other teachers."""
    rollouts: Any = None
    """Where a round's episodes run when not in this process: a `graphs.rollouts_ray.RayRollouts`
    (`ray.address`); None: here."""
    base_dir: Path | None = None
    """The directory relative model paths of the run were stored from (runs written before
    paths were stored absolute); None: they are taken as they are."""

    def __post_init__(self) -> None:
        graph = self.graph_factory(self.agents)
        # Episodes are never checkpointed: the SQL store is their record, and the loop resumes
        # from its own checkpoint by rerunning the unrecorded ones. A compiled graph invoked
        # inside a node would otherwise inherit the loop's saver: a checkpoint per episode step
        # (slower than the tiny student's generation), and stale episode state on resume.
        if getattr(graph, "checkpointer", False) is not False and hasattr(graph, "copy"):
            graph = graph.copy({"checkpointer": False})
        self.episode_graph = graph
        self.heldout_prompts = {p.prompt for ps in self.heldout.values() for p in ps}

    def training_pool(self) -> TrainingPool:
        """The run's examples, read round by round (built on first use)."""
        if self._pool is None:
            self._pool = TrainingPool(
                self.store,
                self.run_id,
                self.domain,
                acting=self.config.agent.enabled,
                in_context=self.config.training.in_context,
            )
        return self._pool

    def history(self) -> RoundHistory:
        """Earlier rounds' first attempts, each round read once (built on first use)."""
        if self._history is None:
            self._history = RoundHistory(self.store, self.run_id, self.cell_of)
        return self._history

    def profile(self, round_: int):
        """The student profile of the rounds before `round_`."""
        from pedagogy.agents.profile import StudentProfile

        profile = StudentProfile()
        for r, results in sorted(self.history().tallies(round_).items()):
            profile.update(r, results)
        return profile

    def intervention_policy(self, state: dict[str, Any] | None, round_: int):
        """The configured intervention policy, continuing from `state` when given."""
        from pedagogy.agents.intervention import POLICIES, build_policy

        ep = self.config.episodes
        options = dict(ep.intervention_options)
        # What the run supplies to a policy that takes it (random: seed; utility: student and,
        # without log-probabilities, the profile; a plugin's policy likewise).
        takes = _parameters(POLICIES.get(ep.intervention))
        if "seed" in takes:
            options.setdefault("seed", self.config.seed)
        if "student" in takes:
            options.setdefault("student", self.student_backend)
        if "profile" in takes and not isinstance(self.student_backend, Scores):
            options.setdefault("profile", self.profile(round_))
        policy = build_policy(ep.intervention, **options)
        if state:
            policy.load_state(state)
        return policy

    async def style_for_round(self, round_: int, plan: list[dict[str, Any]]):
        """The explanation style per problem for this round (None: plain worked solutions)."""
        from pedagogy.agents import explanations as X

        name = self.config.episodes.style
        if name == "worked":
            return None
        if name == "adaptive":
            profile = self.profile(round_)
            return lambda p: X.AdaptiveStyle(
                mastery=profile.mastery(p.arm) if profile.attempts(p.arm) else None
            )
        if name != "probe":  # concise, detailed, a plugin's: one style for the round
            style = X.build_style(name)
            return lambda problem: style
        # probe: the style under which the student itself finds the solutions likeliest
        if not isinstance(self.student_backend, Scores):
            return None
        earlier = self.store.decisions(self.run_id, round_, "style")
        if earlier:  # a resumed round keeps the style it probed
            style = X.build_style(earlier[-1].detail["winner"])
            return lambda problem: style
        problems = self.store.get_problems([item["problem_id"] for item in plan[:32]])
        pairs = [(p, s) for p in problems.values() if (s := self.domain.solve(p)) is not None][:16]
        if not pairs:
            return None
        result = await asyncio.to_thread(
            X.probe_styles, self.student_backend, pairs, ["worked", "concise", "detailed"]
        )
        self.store.record_decisions(
            [
                DecisionRecord(
                    self.run_id,
                    round_,
                    "style",
                    "probe",
                    f"round-{round_}",
                    True,
                    result.mean_gain[result.winner],
                    {"winner": result.winner, "mean_gain": result.mean_gain},
                )
            ]
        )
        style = X.build_style(result.winner)
        return lambda problem: style

    def model_path(self, path: str) -> str:
        """A stored model path as this process can open it: relative ones (runs written before
        paths were stored absolute) against `base_dir`, or in the run's models folder."""
        p = Path(path)
        if p.is_absolute():
            return path
        for candidate in (
            *([self.base_dir / p] if self.base_dir is not None else []),
            self.models_dir / p.name,
        ):
            if candidate.exists():
                return str(candidate)
        return path  # a hub id, or a path the backend will name when it cannot load it

    def explanation_for(self, problem: Problem) -> tuple[str, str | None]:
        """What a policy assumes the student would be shown: the domain's worked solution (what
        the scripted teacher says) or, without one, the reference answer line."""
        solution = self.domain.solve(problem)
        return (solution if solution is not None else f"A:{problem.answer}"), solution

    def cell_of(self, problem: Problem) -> str:
        """The generator settings that made `problem`, as a cell name (adaptive generator)."""
        return cell_key(problem_parameters(self.domain, problem))

    def sampler(self, state: dict[str, Any] | None):
        """The configured curriculum sampler, continued from `state` (a stored `state()`) if given."""
        from pedagogy.agents.curriculum import SAMPLERS

        c = self.config.curriculum
        # Each sampler's OPTIONS name the curriculum settings it takes (a plugin's too).
        takes = getattr(SAMPLERS.get(c.sampler), "OPTIONS", ())
        options: dict[str, Any] = {k: getattr(c, k) for k in takes if k in type(c).model_fields}
        if c.skill_graph:
            options.update(
                gated=True,
                prerequisites=c.prerequisites,
                unlock_at=c.unlock_at,
                chain=c.level_chain,
            )
        sampler = build_sampler(c.sampler, self.arms, self.config.seed, **options)
        if state:
            sampler.load_state(state)
        return sampler

    def round_state(self, round_: int) -> dict[str, Any]:
        """The round's stored curriculum record (plan, sampler, results, policy state), a copy;
        empty before the round was planned. Nodes read it back to redo nothing on a rerun."""
        stored = next(
            (c.state for c in self.store.curriculum_states(self.run_id) if c.round == round_), {}
        )
        return dict(stored)

    def merge_round_state(
        self, round_: int, values: dict[str, Any], decisions: list[DecisionRecord] | None = None
    ) -> None:
        """Add `values` to the round's stored curriculum record, keeping what is there; the
        `decisions` they follow from go in with it (one transaction)."""
        merged = {**self.round_state(round_), **values}
        record = CurriculumStateRecord(self.run_id, round_, merged)
        self.store.save_curriculum_state(record, decisions or ())

    def record_circuit_events(self, round_: int) -> None:
        """Store each endpoint breaker's changes of state since the last node as `circuit`
        decisions of the round (subject: the endpoint; chosen: whether calls use it again;
        value: its consecutive connection failures; detail: the event and the role, and for a
        backend on a Ray actor the actor's number). The turn during which each happened holds
        it too (`detail["circuit"]`)."""
        events: list[tuple[str, Any, dict[str, Any]]] = []
        seen: set[int] = set()
        parts = {
            "teacher": self.agents.teacher,
            "student": self.agents.student,
            "verifier": self.agents.verifier,
            "generator": self.generator,
        }
        for role, part in parts.items():
            backend = getattr(part, "backend", None)  # a procedural generator has none
            if not isinstance(backend, HasCircuitBreaker) or id(backend) in seen:
                continue
            seen.add(id(backend))
            events.extend((role, event, {}) for event in backend.breaker.take_events())
        if self.rollouts is not None:  # the breakers of backends on Ray actors
            events.extend(
                (role, e, {"actor": k}) for k, role, e in self.rollouts.take_circuit_events()
            )
        decisions = [
            DecisionRecord(
                self.run_id,
                round_,
                "circuit",
                "breaker",
                event.endpoint,
                event.state != "open",
                float(event.failures),
                {**event.to_detail(), "role": role, **where},
            )
            for role, event, where in events
        ]
        if decisions:
            self.store.record_decisions(decisions)

    def record_once(self, round_: int, kind: str, decisions: list[DecisionRecord]) -> None:
        """Store a round's decisions of one kind unless a rerun of the node already did."""
        if decisions and not self.store.decisions(self.run_id, round_, kind):
            self.store.record_decisions(decisions)


def _parameters(cls: Any) -> set[str]:
    """The keyword parameters `cls(...)` takes (a policy's: which the run supplies)."""
    try:
        return set(inspect.signature(cls).parameters)
    except (TypeError, ValueError):
        return set()
