"""Measuring the student on the held-out set: the base model before round 1, each candidate after
training (promoted when not worse, else rolled back), and the plateau stop that ends a run whose
held-out mean has stopped improving. Every measurement is recorded, so a rerun reads it back.
"""

from __future__ import annotations

import asyncio
import time
from typing import TYPE_CHECKING, Any

from pedagogy.graphs.session import Session
from pedagogy.graphs.stopping import Plateau, round_means
from pedagogy.memory.records import EvaluationRecord

if TYPE_CHECKING:
    from pedagogy.graphs.loop import LoopState

__all__ = ["evaluate_and_promote", "evaluate_base", "evaluate_version"]


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
        from pedagogy.training.evaluate import evaluate_agent, flatten, tally_agent

        if session.rollouts is not None:  # shared out to the Ray actors, seeds kept
            per_problem = await session.rollouts.evaluate(session, session.heldout, 0, True)
            keys = [k for k, _ in flatten(session.heldout)]
            acted = tally_agent(session.heldout, keys, per_problem)
        else:
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
        if session.rollouts is not None:  # shared out to the Ray actors
            from pedagogy.training.evaluate import flatten, tally

            ok = await session.rollouts.evaluate(session, session.heldout, budget, False)
            keys = [k for k, _ in flatten(session.heldout)]
            results = tally(session.heldout, keys, ok)
        else:
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


async def evaluate_base(state: LoopState, session: Session) -> dict[str, Any]:
    """Held-out accuracy of the starting student, before any teaching (round 0)."""
    if "accuracy" in state:
        return {}
    mean = await evaluate_version(session, state["student_version"], 0)
    return {"accuracy": mean, "round": 0}


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
    session.record_once(round_, "stop", [stop])
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
