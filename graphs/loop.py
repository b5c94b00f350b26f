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
"""

from __future__ import annotations

import asyncio
import random
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from functools import partial
from pathlib import Path
from typing import Any, TypedDict

from langgraph.graph import END, START, StateGraph

from pedagogy.agents.adaptive import AdaptiveGenerator, CellStats, cell_key
from pedagogy.agents.curriculum import build_sampler
from pedagogy.agents.roles import Generator
from pedagogy.config import RunConfig
from pedagogy.domains.base import (
    Domain,
    Problem,
    arm_name,
    parse_arm,
    problem_parameters,
    problem_variants,
)
from pedagogy.graphs.broker import InterventionBroker, episode_id
from pedagogy.graphs.budget import BudgetGuard
from pedagogy.graphs.episode import Agents, build_episode_graph
from pedagogy.graphs.history import RoundHistory
from pedagogy.graphs.refinement import Refined, first_attempts, train_generator, write_refinements
from pedagogy.graphs.stopping import Plateau, round_means
from pedagogy.memory.base import Store
from pedagogy.memory.crash import crash_point
from pedagogy.memory.records import (
    CurriculumStateRecord,
    DecisionRecord,
    EpisodeRecord,
    EvaluationRecord,
    ModelVersionRecord,
    TrainingJobRecord,
)
from pedagogy.training.data import mix_examples
from pedagogy.training.pool import TrainingPool

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
        from pedagogy.agents.intervention import build_policy

        ep = self.config.episodes
        options = dict(ep.intervention_options)
        if ep.intervention == "random":
            options.setdefault("seed", self.config.seed)
        elif ep.intervention == "utility":
            options.setdefault("student", self.student_backend)
            if not callable(getattr(self.student_backend, "score", None)):
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
        if name in ("concise", "detailed"):
            style = X.build_style(name)
            return lambda problem: style
        if name == "adaptive":
            profile = self.profile(round_)
            return lambda p: X.AdaptiveStyle(
                mastery=profile.mastery(p.arm) if profile.attempts(p.arm) else None
            )
        # probe: the style under which the student itself finds the solutions likeliest
        if not callable(getattr(self.student_backend, "score", None)):
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
        c = self.config.curriculum
        options: dict[str, Any] = {
            "uniform": {},
            "fixed_order": {"threshold": c.threshold, "explore": c.explore},
            "bandit": {
                "temperature": c.temperature,
                "alpha": c.alpha,
                "explore": c.explore,
                "reward": c.reward,
            },
            "zpd": {"band": c.band, "target": c.target, "explore": c.explore},
        }[c.sampler]
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


# -- helpers -----------------------------------------------------------------------------------


async def evaluate_version(session: Session, version_id: str, round_: int) -> float:
    """Held-out accuracy per (skill, level) of the loaded student, recorded; returns the mean."""
    from pedagogy.training.evaluate import evaluate

    t0 = time.perf_counter()
    actor = getattr(session.agents, "eval_actor", None) or getattr(session.agents, "actor", None)
    stored = [
        e
        for e in session.store.evaluations(session.run_id)
        if e.model_version_id == version_id and e.round == round_
    ]
    if stored:  # the node ran again after its writes (a resume): the numbers it recorded
        records = stored
    elif actor is not None:  # an acting student is measured acting, with real tools
        from pedagogy.training.evaluate import evaluate_agent

        acted = await evaluate_agent(actor, session.domain, session.heldout)
        records = [
            EvaluationRecord(
                session.run_id, round_, version_id, skill, level, r.n, r.correct, r.metrics()
            )
            for (skill, level), r in sorted(acted.items())
        ]
    else:
        # The practice budget unless configured otherwise: a longer one hides cut-off answers.
        budget = session.config.evaluation.max_tokens or session.agents.student.max_tokens
        results = await evaluate(
            session.student_backend, session.domain, session.heldout, max_tokens=budget
        )
        records = [
            EvaluationRecord(session.run_id, round_, version_id, skill, level, n, correct)
            for (skill, level), (correct, n) in sorted(results.items())
        ]
    session.store.record_evaluations(records)
    mean = sum(r.accuracy for r in records) / max(len(records), 1)
    session.emit(
        "evaluated",
        {
            "round": round_,
            "version": version_id,
            "mean": mean,
            "per_arm": {f"{r.skill}@{r.level}": r.accuracy for r in records},
            "agent": {f"{r.skill}@{r.level}": r.metrics for r in records if r.metrics is not None},
            "seconds": time.perf_counter() - t0,
        },
    )
    return mean


async def _pose_outside_heldout(
    session: Session, rng: random.Random, n: int, skill: str, level: int
) -> list[Problem]:
    """n problems for the arm, avoiding held-out prompts while the level has others to give.

    Small levels (1-digit a+b has ~200 problems) run out: then training problems repeat. A
    held-out set leaves every level problems to practise (`build_heldout`), so only a generator
    that poses nothing else in four tries (an LLM's) trains on held-out problems.
    """
    held = session.heldout_prompts
    kept: list[Problem] = []
    seen_any: list[Problem] = []
    for _ in range(4):
        posed = await session.generator.pose(rng, max(n - len(kept), 8), skill, level)
        seen_any.extend(posed)
        kept.extend(p for p in posed if p.prompt not in held)
        if len(kept) >= n:
            return kept[:n]
    pool = kept or seen_any
    return [pool[i % len(pool)] for i in range(n)]


def _adaptive(session: Session, round_: int):
    """With generator.adapt: the adaptive generator and the student's first-attempt success per
    arm and cell in the rounds before `round_` (recomputed from the store, so a resumed run gets
    the same numbers); else None."""
    g = session.config.generator
    if not g.adapt:
        return None
    stats = CellStats.from_attempts(
        (a.arm, a.cell, a.correct)
        for a in session.history().before(round_, cells=True)
        if a.cell is not None
    )
    return AdaptiveGenerator(target=g.adapt_target, oversample=g.adapt_oversample), stats


async def _refinements(session: Session, round_: int) -> Refined:
    """Failure-driven refinement (Socratic-Zero): `curriculum.refine` of the round's episodes as
    variants of problems the student got wrong on first attempt in the round before, made by the
    domain (`problem_variants`: same arm and shape, other values) or written by the teacher and
    the generator (`curriculum.refine_by`; see `graphs.refinement`), kept off the held-out set
    and new to the run (a variant equal to a problem posed before is skipped).
    Parents are drawn with a seeded RNG; a rerun of the node poses what the first run recorded."""
    cfg = session.config.curriculum
    want = int(round(session.config.episodes.per_round * cfg.refine))
    if want < 1 or round_ < 2:
        return Refined()
    stored = session.store.decisions(session.run_id, round_, "refine")
    if stored or session.store.decisions(session.run_id, round_, "refine_candidate"):
        # A rerun of plan_round: the variants it posed (none, if every candidate was rejected),
        # in the order it posed them; the models are not asked again.
        ids = [v for d in stored for v in d.detail["variants"]]
        found = session.store.get_problems(ids)
        return Refined([found[i] for i in ids if i in found], stored=True)
    written = cfg.refine_by != "domain"
    failed = [
        e
        for e in session.store.episodes(session.run_id, round_ - 1, with_turns=written)
        if not e.correct_first
    ]
    if not failed:
        return Refined()
    parents = session.store.get_problems(sorted({e.problem_id for e in failed}))
    rng = random.Random(f"{session.config.seed}:{round_}:refine")
    order = sorted(parents)
    rng.shuffle(order)
    if written:
        return await write_refinements(
            session, round_, [parents[p] for p in order], first_attempts(session, failed), want, rng
        )
    held, out, seen = session.heldout_prompts, [], set()
    for pid in order:
        if len(out) >= want:
            break
        made = [
            v
            for v in problem_variants(session.domain, parents[pid], rng, cfg.refine_variants)
            if v.prompt not in held
        ]
        known = session.store.get_problems([v.id for v in made])  # posed before: not new
        for v in made:
            if v.id not in known and v.id not in seen and len(out) < want:
                seen.add(v.id)
                out.append(v)
    return Refined(out)


# -- nodes ---------------------------------------------------------------------------------------


async def evaluate_base(state: LoopState, session: Session) -> dict[str, Any]:
    """Held-out accuracy of the starting student, before any teaching (round 0)."""
    if "accuracy" in state:
        return {}
    mean = await evaluate_version(session, state["student_version"], 0)
    return {"accuracy": mean, "round": 0}


async def plan_round(state: LoopState, session: Session) -> dict[str, Any]:
    """Choose the round's arms and pose its problems; the plan is checkpointed with the state."""
    round_ = state.get("round", 0) + 1
    # Budgets stop a run here, before the round poses or calls anything (pedagogy.graphs.budget).
    session.budget.check(
        session.config.budget, session.store, session.run_id, state, round_, session.emit
    )
    stored = next(
        (c.state for c in session.store.curriculum_states(session.run_id) if c.round == round_),
        {},
    )
    if "plan" in stored:  # the node ran again after its writes: its plan, nothing posed anew
        session.emit("round_planned", {"round": round_, "episodes": len(stored["plan"])})
        return {
            "round": round_,
            "plan": stored["plan"],
            "sampler_state": stored["sampler"],
            "candidate": None,
        }
    sampler = session.sampler(state.get("sampler_state"))
    probs = sampler.probabilities()
    refinement = await _refinements(session, round_)
    refined = refinement.problems
    arms = sampler.sample(session.config.episodes.per_round - len(refined))
    counts: dict[str, int] = {}
    for arm in arms:
        counts[arm] = counts.get(arm, 0) + 1
    plan: list[dict[str, Any]] = []
    problems: list[Problem] = []
    adapt = _adaptive(session, round_)
    adapted: list[DecisionRecord] = []
    for arm in sorted(counts):
        skill, level = parse_arm(arm)
        rng = random.Random(f"{session.config.seed}:{round_}:{arm}")
        if adapt is None:
            posed = await _pose_outside_heldout(session, rng, counts[arm], skill, level)
        else:  # over-sample, then pose the settings the student is ready for
            generator, stats = adapt
            candidates = await _pose_outside_heldout(
                session, rng, counts[arm] * generator.oversample, skill, level
            )
            posed, cells = generator.choose(
                rng, candidates, counts[arm], arm, stats, session.cell_of
            )
            adapted.append(
                DecisionRecord(
                    session.run_id,
                    round_,
                    "generator_params",
                    "adaptive",
                    arm,
                    True,
                    float(len(cells)),
                    {"cells": cells, "target": generator.target},
                )
            )
        problems.extend(posed)
        for p in posed:
            plan.append({"arm": arm, "problem_id": p.id, "seed": rng.randrange(2**31)})
    rng = random.Random(f"{session.config.seed}:{round_}:refine-seeds")
    problems = [*refined, *problems]  # stored first: a sampled twin is stored as the variant
    for p in refined:
        plan.append({"arm": p.arm, "problem_id": p.id, "seed": rng.randrange(2**31)})
    rng = random.Random(f"{session.config.seed}:{round_}:order")
    rng.shuffle(plan)
    for i, item in enumerate(plan):
        item["index"] = i
    session.store.add_problems(problems)
    posing = getattr(session.generator, "turns", None)
    if posing:  # an LLM generator's calls: recorded as turns outside any episode
        for k, turn in enumerate(posing):  # ids a rerun of the node repeats: stored once
            turn.id = f"{session.run_id}:pose:{round_}:{k}"
        session.store.record_turns(session.run_id, posing)
        posing.clear()
    new_state = sampler.state()
    session.store.save_curriculum_state(
        CurriculumStateRecord(
            session.run_id, round_, {"probabilities": probs, "counts": counts, "sampler": new_state}
        )
    )
    _record_once(session, round_, "generator_params", adapted)
    _record_once(
        session,
        round_,
        "curriculum",
        [
            DecisionRecord(
                session.run_id,
                round_,
                "curriculum",
                session.config.curriculum.sampler,
                arm,
                counts.get(arm, 0) > 0,
                p,
                {"count": counts.get(arm, 0)},
            )
            for arm, p in sorted(probs.items())
        ],
    )
    by_parent: dict[str, list[str]] = {}
    for p in refined:  # in posing order: a rerun reads them back in it
        by_parent.setdefault(p.parent_id or "", []).append(p.id)
    refine_by = session.config.curriculum.refine_by
    policy = {"domain": "variants", "teacher": "teacher"}.get(refine_by, "teacher+generator")
    refine_rows = [
        *refinement.decisions,
        *(
            DecisionRecord(
                session.run_id,
                round_,
                "refine",
                policy,
                parent,
                True,
                float(len(ids)),
                {"variants": ids},
            )
            for parent, ids in by_parent.items()
        ),
    ]
    if not refinement.stored:
        # The teacher's and generator's refine calls and what came of them, in one transaction:
        # a crash leaves both or neither, so a rerun never asks the models twice.
        session.store.record_turns(session.run_id, refinement.turns, refine_rows)
    # Last, the plan: once stored, a rerun of this node returns it (every write above is done).
    _merge_round_state(session, round_, {"plan": plan})
    session.emit(
        "round_planned",
        {
            "round": round_,
            "episodes": len(plan),
            "counts": counts,
            "refined": len(refined),
            "refine_candidates": len(refinement.decisions),
            "refine_accepted": sum(bool(d.chosen) for d in refinement.decisions),
        },
    )
    return {"round": round_, "plan": plan, "sampler_state": new_state, "candidate": None}


async def run_episodes(state: LoopState, session: Session) -> dict[str, Any]:
    """Run every planned episode not yet recorded, concurrently; write them in batches."""
    round_, run_id = state["round"], session.run_id
    store = session.store
    done = store.done_episode_indices(run_id, round_)
    todo = [item for item in state["plan"] if item["index"] not in done]
    spent = sum(1 for e in store.episodes(run_id, round_) if e.explained) if done else 0
    session.agents.teacher.new_round(spent)
    policy = session.intervention_policy(state.get("policy_state"), round_)
    recorded = {d.subject: bool(d.chosen) for d in store.decisions(run_id, round_, "intervention")}
    if recorded:  # a resumed round that had already decided: continue from after that decision
        saved = next((c.state for c in store.curriculum_states(run_id) if c.round == round_), {})
        if saved.get("intervention_policy"):
            policy.load_state(saved["intervention_policy"])
    ids = {item["index"]: episode_id(run_id, round_, item["index"]) for item in todo}

    def record_decisions(decisions: list[Any]) -> None:
        store.record_decisions([d.to_record(run_id, round_) for d in decisions])
        _merge_round_state(session, round_, {"intervention_policy": policy.state()})
        session.emit(
            "interventions_decided",
            {
                "round": round_,
                "policy": policy.name,
                "candidates": len(decisions),
                "explained": sum(d.intervene for d in decisions),
            },
        )

    session.agents.teacher.style_for = await session.style_for_round(round_, state["plan"])
    session.agents.teacher.mistakes_for = _mistakes_for(session, round_)
    budget = session.agents.teacher.remaining()
    session.agents.broker = InterventionBroker(
        policy,
        budget,
        set(ids.values()),
        session.explanation_for,
        record_decisions,
        recorded,
    )
    problems = store.get_problems([item["problem_id"] for item in todo])
    batch: list[EpisodeRecord] = []
    total = len(state["plan"])
    finished = len(done)
    session.emit("episodes_progress", {"round": round_, "done": finished, "total": total})

    async def one(item: dict[str, Any]) -> EpisodeRecord:
        eid = ids[item["index"]]
        try:
            out = await session.episode_graph.ainvoke(
                {
                    "episode_id": eid,
                    "run_id": run_id,
                    "round": round_,
                    "index": item["index"],
                    "seed": item["seed"],
                    "problem": problems[item["problem_id"]],
                }
            )
        finally:
            await session.agents.broker.finished(eid)
        return out["record"]

    write_batch = session.config.episodes.write_batch
    tasks = [asyncio.ensure_future(one(item)) for item in todo]
    try:
        for fut in asyncio.as_completed(tasks):
            batch.append(await fut)
            if len(batch) >= write_batch:
                store.record_episodes(batch)
                finished += len(batch)
                batch = []
                session.emit(
                    "episodes_progress", {"round": round_, "done": finished, "total": total}
                )
        if batch:
            store.record_episodes(batch)
            finished += len(batch)
    except BaseException:
        # One episode failed (or the run was interrupted): stop the others and collect their
        # outcomes, so the error is reported once instead of as one "Task exception was never
        # retrieved" traceback per pending episode.
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        raise
    finally:
        session.agents.broker = None
    session.emit("episodes_progress", {"round": round_, "done": finished, "total": total})
    return {"policy_state": policy.state()}


def _record_once(session: Session, round_: int, kind: str, decisions: list[DecisionRecord]) -> None:
    """Store a round's decisions of one kind unless a rerun of the node already did."""
    if decisions and not session.store.decisions(session.run_id, round_, kind):
        session.store.record_decisions(decisions)


def _merge_round_state(session: Session, round_: int, values: dict[str, Any]) -> None:
    """Add `values` to the round's stored curriculum record (plan, results, policy states)."""
    stored = next(
        (c for c in session.store.curriculum_states(session.run_id) if c.round == round_), None
    )
    merged = {**(stored.state if stored else {}), **values}
    session.store.save_curriculum_state(CurriculumStateRecord(session.run_id, round_, merged))


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
    planned = next(
        (s for s in session.store.curriculum_states(session.run_id) if s.round == round_), None
    )
    record = dict(planned.state) if planned else {}
    record.update(
        {
            "results": results,
            "rewards": rewards,
            "sampler": new_state,
            "values": dict(getattr(sampler, "values", {})),
        }
    )
    session.store.save_curriculum_state(CurriculumStateRecord(session.run_id, round_, record))
    kind = session.config.curriculum.sampler
    _record_once(
        session,
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
    _record_once(
        session,
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


def _first_attempt_text(episode: EpisodeRecord) -> str | None:
    """The student's first attempt as text: its response, or an acting student's whole attempt
    trajectory (steps and observations, without the prompt)."""
    for trajectory in episode.trajectories():
        if trajectory.kind == "attempt":
            return trajectory.text()[len(trajectory.prompt) :]
    first = next((t for t in episode.turns if t.agent == "student"), None)
    return first.response if first is not None else None


def _mistakes_for(session: Session, round_: int):
    """Per arm, the student's last `episodes.teacher_mistakes` wrong first attempts of the round
    before, as (prompt, answer) pairs for the teacher's prompt; None when off or in round 1."""
    k = session.config.episodes.teacher_mistakes
    if k < 1 or round_ < 2:
        return None
    wrong = [
        e
        for e in session.store.episodes(session.run_id, round_ - 1, with_turns=True)
        if not e.correct_first and e.turns
    ]
    problems = session.store.get_problems(sorted({e.problem_id for e in wrong}))
    by_arm: dict[str, list[tuple[str, str]]] = {}
    for e in sorted(wrong, key=lambda e: -e.index):
        attempt = _first_attempt_text(e)
        pairs = by_arm.setdefault(e.arm, [])
        if attempt is not None and e.problem_id in problems and len(pairs) < k:
            pairs.append((problems[e.problem_id].prompt, attempt.strip().replace("\n", " ")))

    def mistakes(problem: Problem) -> list[tuple[str, str]]:
        return [(p, a) for p, a in by_arm.get(problem.arm, []) if p != problem.prompt]

    return mistakes


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


async def train(state: LoopState, session: Session) -> dict[str, Any]:
    """Fine-tune the promoted student on verified data (new + earlier), registering a candidate."""
    cfg, store, run_id, round_ = (
        session.config.training,
        session.store,
        session.run_id,
        state["round"],
    )
    # The node may run again after a crash: a finished job of the round is its result; one that
    # was interrupted (its process died) is restarted in place, on the items it stored.
    earlier_job = store.training_job(run_id, round_)
    if earlier_job is not None and earlier_job.status in ("completed", "skipped"):
        return _finished_job(session, earlier_job)
    restart = earlier_job is not None and earlier_job.status in ("running", "interrupted")
    acting = session.config.agent.enabled
    kind = "trajectory_sft" if acting else cfg.kind
    # Each round reads only its own episodes; earlier rounds' examples are kept (a flat cost).
    current, items, segments = session.training_pool().through(round_)
    episodes, problems = current.episodes, current.problems
    if restart:
        job, chosen = earlier_job, store.dataset_items(earlier_job.id)
        new = [i for i in chosen if i.episode_id in {e.id for e in episodes}]
        new_examples = int(job.metrics.get("new_examples", len(new)))
        store.restart_training_job(job.id)
    else:
        chosen_new = await _choose_examples(session, state, episodes, problems, items, kind)
        if chosen_new is None:
            return {"candidate": None}
        chosen, new_examples, decisions = chosen_new
        job = store.start_training_job(
            TrainingJobRecord(
                id=uuid.uuid4().hex,
                run_id=run_id,
                round=round_,
                kind=kind,
                config=cfg.model_dump(),
                base_version_id=state["student_version"],
                metrics={"new_examples": new_examples},
                attempt=0 if earlier_job is None else earlier_job.attempt + 1,  # after a failure
            ),
            chosen,
            decisions,
        )
    versions = store.model_versions(run_id, "student")
    number = max((v.number for v in versions), default=0) + 1
    out_path = session.models_dir / f"student-v{number}"
    student_path = session.model_path(state["student_path"])
    session.emit(
        "training_started",
        {"round": round_, "examples": len(chosen), "new": new_examples, "restarted": restart},
    )
    return await _fit(session, state, job, chosen, segments, out_path, number, student_path)


def _finished_job(session: Session, job: TrainingJobRecord) -> dict[str, Any]:
    """What `train` returned when it finished `job` (it runs again after a crash)."""
    if job.status != "completed" or job.output_version_id is None:
        return {"candidate": None}
    version = session.store.get_model_version(job.output_version_id)
    session.emit("training_finished", {"round": job.round, **job.metrics})
    return {"candidate": {"id": version.id, "path": version.path, "job_id": job.id}}


async def _choose_examples(
    session: Session, state: LoopState, episodes: list, problems: dict, items: list, kind: str
) -> tuple[list, int, list[DecisionRecord]] | None:
    """The examples a new job of the round trains on (new + earlier, filtered, mixed), how many
    are new, and the filter's decisions (stored with the job); None: too few new ones."""
    cfg, run_id, round_ = session.config.training, session.run_id, state["round"]
    acting = session.config.agent.enabled
    usable = [i for i in items if kind not in ("sft", "trajectory_sft") or i.polarity == "positive"]
    new_ids = {e.id for e in episodes}  # the round's own episodes
    new = [i for i in usable if i.episode_id in new_ids]
    decisions: list[DecisionRecord] = []
    if sum(i.polarity == "positive" for i in new) < cfg.min_new_examples:
        session.emit("training_skipped", {"round": round_, "new_examples": len(new)})
        return None
    if cfg.filter and not acting and callable(getattr(session.student_backend, "score", None)):
        filtered, decisions = await asyncio.to_thread(
            _learnability_filter, session, round_, new, episodes, problems
        )
        if any(i.polarity == "positive" for i in filtered):
            new = filtered
        else:  # a student that can follow nothing yet (an untrained one): the filter steps aside
            decisions.append(
                DecisionRecord(
                    run_id,
                    round_,
                    "filter",
                    "learnability",
                    f"round-{round_}",
                    False,
                    None,
                    {
                        "decision": "bypassed",
                        "reason": "no explanation passed; trained on them all",
                    },
                )
            )
    earlier = [i for i in usable if i.episode_id not in new_ids]
    chosen = mix_examples(
        new, earlier, cfg.max_examples, random.Random(f"{session.config.seed}:{round_}:mix")
    )
    return chosen, len(new), decisions


async def _fit(
    session: Session,
    state: LoopState,
    job: TrainingJobRecord,
    chosen: list,
    segments: dict,
    out_path: Path,
    number: int,
    student_path: str,
) -> dict[str, Any]:
    """Train the job's model on `chosen` and store the candidate version with the finished job."""
    from pedagogy.training.sft import SFTJobConfig, run_sft

    cfg, store, run_id, round_ = session.config.training, session.store, session.run_id, job.round
    kind, new_examples = job.kind, int(job.metrics.get("new_examples", 0))
    common = dict(
        learning_rate=cfg.learning_rate,
        batch_size=cfg.batch_size,
        max_seconds=cfg.max_seconds,
        max_steps=cfg.max_steps,
        lora=cfg.lora,
        lora_r=cfg.lora_r,
        seed=session.config.seed + round_,
    )
    if kind == "trajectory_sft":
        from pedagogy.training.trajectory import run_trajectory_sft

        # The model's own context length bounds the rows; longer ones are truncated and counted.
        fit, job_cfg = run_trajectory_sft, SFTJobConfig(**common, max_length=1 << 16)
        data = [segments[(i.episode_id, i.turn_id)] for i in chosen]
    elif kind == "sft":
        fit, data, job_cfg = (
            run_sft,
            [(i.prompt, i.completion) for i in chosen],
            SFTJobConfig(**common, max_length=_context_of(student_path), packing=cfg.packing),
        )
    else:
        from pedagogy.training import preference as P

        if cfg.kind == "redi":
            fit, job_cfg = P.run_redi, P.REDIJobConfig(**common, alpha=cfg.alpha)
            data = P.preference_pairs(chosen, unpaired=True)
        else:
            fit, job_cfg = P.run_dpo, P.DPOJobConfig(**common, beta=cfg.beta)
            data = P.preference_pairs(chosen)
            if not data:
                store.finish_training_job(
                    job.id, "skipped", {"reason": "no (correct, wrong) pairs"}, None
                )
                session.emit("training_skipped", {"round": round_, "new_examples": new_examples})
                return {"candidate": None}
    try:
        result = await asyncio.to_thread(fit, student_path, out_path, data, job_cfg)
    except Exception as err:
        store.finish_training_job(job.id, "failed", {"error": str(err)}, None)
        raise
    version = ModelVersionRecord(
        id=uuid.uuid4().hex,
        run_id=run_id,
        role="student",
        number=number,
        path=str(out_path),
        parent_id=state["student_version"],
        training_job_id=job.id,
        status="candidate",
    )
    metrics = {
        "steps": result.steps,
        "train_loss": result.train_loss,
        "seconds": result.seconds,
        "examples": len(chosen),
        "new_examples": new_examples,
        **getattr(result, "metrics", {}),
    }
    store.finish_training_job(job.id, "completed", metrics, version.id, version)
    session.emit("training_finished", {"round": round_, **metrics})
    return {"candidate": {"id": version.id, "path": str(out_path), "job_id": job.id}}


def _context_of(model_path: str) -> int:
    """The student's context in tokens (its config's max_position_embeddings), so no example
    that fits the model is cut by a fixed training length; 256 when the config does not say."""
    import json

    try:
        config = json.loads((Path(model_path) / "config.json").read_text())
    except (OSError, ValueError):
        return 256
    return int(config.get("max_position_embeddings") or 256)


def _learnability_filter(
    session: Session, round_: int, items: list, episodes: list, problems: dict
) -> tuple[list, list[DecisionRecord]]:
    """Score this round's teacher explanations under the student (Reverse Speculative Decoding):
    trim chunks it cannot follow when the rest still verifies, else let the student rewrite them
    (`filter_rewrite`), leave out what cannot be fixed.
    Every outcome is a decision of kind "filter", returned with the kept items."""
    from pedagogy.agents.explanations import filter_explanation

    teacher_turns = {
        t.id for e in episodes if e.round == round_ for t in e.turns if t.agent == "teacher"
    }
    problem_of = {e.id: problems[e.problem_id] for e in episodes if e.problem_id in problems}
    kept, decisions = [], []
    for item in items:
        problem = problem_of.get(item.episode_id)
        if item.turn_id not in teacher_turns or problem is None:
            kept.append(item)
            continue
        outcome = filter_explanation(
            session.student_backend,
            item.prompt,
            item.completion,
            threshold=session.config.training.filter_threshold,
            verify=lambda text, p=problem: session.domain.verify(p, text).correct,
            rewrite=session.config.training.filter_rewrite,
        )
        detail = {
            "decision": outcome.decision,
            "dropped": outcome.dropped,
            "flagged": outcome.flagged,
        }
        if outcome.rewrite is not None:
            detail["rewrite"] = outcome.rewrite
        decisions.append(
            DecisionRecord(
                session.run_id,
                round_,
                "filter",
                "learnability",
                item.turn_id,
                outcome.accepted,
                min(outcome.scores) if outcome.scores else None,
                detail,
                item.episode_id,
            )
        )
        if outcome.accepted:  # a copy: the pool keeps the example as the teacher wrote it
            kept.append(replace(item, completion=outcome.text))
    return kept, decisions  # stored with the job they chose its items for


async def evaluate_and_promote(state: LoopState, session: Session) -> dict[str, Any]:
    """Evaluate the candidate; promote it if not worse than the current student, else roll back;
    then stop the run here if the held-out mean has plateaued (`evaluation.patience`)."""
    update = await _promote_or_roll_back(state, session)
    ev, round_ = session.config.evaluation, state["round"]
    rule = Plateau(ev.patience, ev.min_delta)
    means = round_means(session.store.evaluations(session.run_id))
    stop = rule.decide(session.run_id, round_, means, session.config.rounds)
    if stop is None:
        return update
    _record_once(session, round_, "stop", [stop])
    session.emit("stopped_early", {"round": round_, **stop.detail})
    return {**update, "stopped": True}


async def _promote_or_roll_back(state: LoopState, session: Session) -> dict[str, Any]:
    cand = state.get("candidate")
    if not cand:
        return {}
    backend = session.student_backend
    await asyncio.to_thread(backend.reload, session.model_path(cand["path"]), cand["id"])
    mean = await evaluate_version(session, cand["id"], state["round"])
    tol = session.config.evaluation.tolerance
    if mean >= state["accuracy"] - tol:
        session.store.set_model_status(cand["id"], "promoted")
        session.emit("promoted", {"round": state["round"], "version": cand["id"], "mean": mean})
        return {
            "student_version": cand["id"],
            "student_path": cand["path"],
            "accuracy": mean,
            "candidate": None,
        }
    session.store.set_model_status(cand["id"], "rolled_back")
    await asyncio.to_thread(
        backend.reload, session.model_path(state["student_path"]), state["student_version"]
    )
    session.emit(
        "rolled_back",
        {"round": state["round"], "version": cand["id"], "mean": mean, "kept": state["accuracy"]},
    )
    return {"candidate": None}


def _next_or_end(state: LoopState, session: Session) -> str:
    if state.get("stopped"):
        return END
    return "plan_round" if state["round"] < session.config.rounds else END


def _timed(node: Callable[..., Any], session: Session) -> Callable[..., Any]:
    """`node` bound to `session`, its update carrying the loop's running time (`elapsed_s`, what
    `budget.wall_seconds` limits). The run's lease is checked before it; after its writes, the
    test hook `crash_point` may kill the process before LangGraph checkpoints its update."""

    async def timed(state: LoopState) -> dict[str, Any]:
        session.guard()
        update = await node(state, session=session)
        crash_point(node.__name__)
        return {**(update or {}), "elapsed_s": session.budget.lap(state)}

    return timed


def build_loop_graph(session: Session, checkpointer: Any = None):
    """Compile the loop graph bound to `session` (checkpointed when a checkpointer is given)."""
    g = StateGraph(LoopState)
    g.add_node("evaluate_base", _timed(evaluate_base, session))
    g.add_node("plan_round", _timed(plan_round, session))
    g.add_node("run_episodes", _timed(run_episodes, session))
    g.add_node("update_curriculum", _timed(update_curriculum, session))
    g.add_node("train", _timed(train, session))
    g.add_node("evaluate_and_promote", _timed(evaluate_and_promote, session))
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
