"""Planning a round: the sampler chooses the arms, the generator poses their problems (never
held-out ones while others exist; with `generator.adapt`, the settings the student is ready for),
and failure-driven refinements add variants of problems the student got wrong. The plan is stored
last, so a rerun of the node returns it instead of posing anew.
"""

from __future__ import annotations

import random
from typing import TYPE_CHECKING, Any

from pedagogy.agents.adaptive import AdaptiveGenerator, CellStats
from pedagogy.domains.base import Problem, parse_arm, problem_variants
from pedagogy.graphs.refinement import Refined, first_attempts, write_refinements
from pedagogy.graphs.session import Session
from pedagogy.memory.records import CurriculumStateRecord, DecisionRecord

if TYPE_CHECKING:
    from pedagogy.graphs.loop import LoopState

__all__ = ["plan_round"]


async def plan_round(state: LoopState, session: Session) -> dict[str, Any]:
    """Choose the round's arms and pose its problems; the plan is checkpointed with the state."""
    round_ = state.get("round", 0) + 1
    # Budgets stop a run here, before the round poses or calls anything (pedagogy.graphs.budget).
    session.budget.check(
        session.config.budget, session.store, session.run_id, state, round_, session.emit
    )
    stored = session.round_state(round_)
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
    session.record_once(round_, "generator_params", adapted)
    session.record_once(
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
    session.merge_round_state(round_, {"plan": plan})
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
