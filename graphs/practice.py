"""Running a round's episodes: every planned episode not yet recorded, concurrently, behind one
intervention broker that decides which of them the teacher explains; episodes are written in
batches keyed by (run, round, index), so a rerun completes the plan without doing one twice.
With `ray.address` set the episodes run on Ray actors instead (`graphs.rollouts_ray`); the broker
and the writes stay here.
"""

from __future__ import annotations

import asyncio
from contextlib import aclosing
from typing import TYPE_CHECKING, Any

from pedagogy.domains.base import Problem
from pedagogy.graphs.broker import InterventionBroker, episode_id
from pedagogy.graphs.replay_drive import invoke
from pedagogy.graphs.session import Session
from pedagogy.memory.records import EpisodeRecord

if TYPE_CHECKING:
    from pedagogy.graphs.loop import LoopState

__all__ = ["run_episodes"]


class _PlanBatches:
    """A round's episode records grouped into the store's write batches by plan order, whatever
    order the episodes finish in, so that which row takes which chain index does not depend on
    timing: two runs of one config and seed write the same chain.

    Batch k holds the k-th `size` episodes of the plan and is released once all of them have
    finished and the batch before it was released. Nothing is released before the round's
    intervention decisions are stored (`decided`), or before the round ends when none comes, so
    that the decision links precede the round's episode links wherever the decision fell among
    the episodes' ends. A batch waits for its slowest episode: finished records of later
    batches are held meanwhile (at most the round's).
    """

    def __init__(self, indices: list[int], size: int, decided: bool = True) -> None:
        self._order = sorted(indices)
        self._size = size
        self._at = 0
        self._held: dict[int, EpisodeRecord] = {}
        self.decided = decided
        """Whether the round's decisions are stored (or none is coming): batches may be released
        before the round ends."""

    def add(self, record: EpisodeRecord) -> None:
        """A finished episode of the plan."""
        self._held[record.index] = record

    def take(self, final: bool = False) -> list[list[EpisodeRecord]]:
        """The batches ready to be written, in plan order; `final`: the round's episodes have
        all finished, and the last batch may be short."""
        ready: list[list[EpisodeRecord]] = []
        if not (self.decided or final):
            return ready
        while self._at < len(self._order):
            chunk = self._order[self._at : self._at + self._size]
            if not all(i in self._held for i in chunk):
                break
            ready.append([self._held.pop(i) for i in chunk])
            self._at += len(chunk)
        return ready


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
    # Every episode of the round already decided (a resumed round): no decision is coming.
    batches = _PlanBatches(
        list(ids), session.config.episodes.write_batch, set(ids.values()) <= recorded.keys()
    )

    def record_decisions(decisions: list[Any]) -> None:
        # The decisions and the policy state they leave: one transaction, so a resume finds both
        # or neither.
        session.merge_round_state(
            round_,
            {"intervention_policy": policy.state()},
            [d.to_record(run_id, round_) for d in decisions],
        )
        session.emit(
            "interventions_decided",
            {
                "round": round_,
                "policy": policy.name,
                "candidates": len(decisions),
                "explained": sum(d.intervene for d in decisions),
            },
        )
        batches.decided = True

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
    total = len(state["plan"])
    finished = len(done)
    session.emit("episodes_progress", {"round": round_, "done": finished, "total": total})

    inputs = [
        {
            "episode_id": ids[item["index"]],
            "run_id": run_id,
            "round": round_,
            "index": item["index"],
            "seed": item["seed"],
            "problem": problems[item["problem_id"]],
        }
        for item in todo
    ]
    rollouts = session.rollouts
    if rollouts is not None:  # on Ray actors, the broker still here (graphs.rollouts_ray)
        records = rollouts.run_round(session, round_, inputs, spent, session.agents.broker)
    else:
        records = _in_process(session, inputs)
    try:
        async with aclosing(records):
            async for record in records:
                batches.add(record)
                for batch in batches.take():
                    store.record_episodes(batch)
                    finished += len(batch)
                    session.emit(
                        "episodes_progress", {"round": round_, "done": finished, "total": total}
                    )
            for batch in batches.take(final=True):
                store.record_episodes(batch)
                finished += len(batch)
    finally:
        session.agents.broker = None
    session.emit("episodes_progress", {"round": round_, "done": finished, "total": total})
    return {"policy_state": policy.state()}


async def _in_process(session: Session, inputs: list[dict[str, Any]]):
    """Run the episodes concurrently in this process; yield each record as it finishes."""
    broker = session.agents.broker

    async def one(item: dict[str, Any]) -> EpisodeRecord:
        try:
            out = await invoke(session.episode_graph, session.graph_factory, session.agents, item)
        finally:
            await broker.finished(item["episode_id"])
        return out["record"]

    tasks = [asyncio.ensure_future(one(item)) for item in inputs]
    try:
        for fut in asyncio.as_completed(tasks):
            yield await fut
    except BaseException:
        # One episode failed (or the run was interrupted): stop the others and collect their
        # outcomes, so the error is reported once instead of as one "Task exception was never
        # retrieved" traceback per pending episode.
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        raise


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
