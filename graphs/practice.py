"""Running a round's episodes: every planned episode not yet recorded, concurrently, behind one
intervention broker that decides which of them the teacher explains; episodes are written in
batches keyed by (run, round, index), so a rerun completes the plan without doing one twice.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

from pedagogy.domains.base import Problem
from pedagogy.graphs.broker import InterventionBroker, episode_id
from pedagogy.graphs.replay_drive import invoke
from pedagogy.graphs.session import Session
from pedagogy.memory.records import EpisodeRecord

if TYPE_CHECKING:
    from pedagogy.graphs.loop import LoopState

__all__ = ["run_episodes"]


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
        saved = session.round_state(round_)
        if saved.get("intervention_policy"):
            policy.load_state(saved["intervention_policy"])
    ids = {item["index"]: episode_id(run_id, round_, item["index"]) for item in todo}

    def record_decisions(decisions: list[Any]) -> None:
        store.record_decisions([d.to_record(run_id, round_) for d in decisions])
        session.merge_round_state(round_, {"intervention_policy": policy.state()})
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
            out = await invoke(
                session.episode_graph,
                session.graph_factory,
                session.agents,
                {
                    "episode_id": eid,
                    "run_id": run_id,
                    "round": round_,
                    "index": item["index"],
                    "seed": item["seed"],
                    "problem": problems[item["problem_id"]],
                },
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
