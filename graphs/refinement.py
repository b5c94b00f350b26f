"""Refinements written by the teacher and a co-evolving generator, for the loop graph.

`write_refinements` asks the teacher (and, with ``curriculum.refine_by: generator``, the LLM
generator) to turn problems the student failed into new ones; every candidate is checked by the
domain (`pedagogy.agents.refinement`), and accepted ones new to the run are posed. Every call is
a turn outside the episodes, every candidate a `refine_candidate` decision.

`train_generator` is the loop node that makes the generator co-evolve: after each round it
fine-tunes the generator's model with the student's SFT path on the teacher's accepted
refinements so far, registers a model version (role "generator") and a training job
(role "generator"), and reloads the generator. A rerun of the node (a resumed run)
finds the round's job done and trains nothing twice; a job a killed process left running (marked
interrupted on resume) is restarted in place on the items it stored.
"""

from __future__ import annotations

import asyncio
import math
import random
import uuid
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from pedagogy.agents.refinement import Candidate, read_candidates, training_pair
from pedagogy.domains.base import Problem
from pedagogy.memory.records import (
    DatasetItemRecord,
    DecisionRecord,
    EpisodeRecord,
    ModelVersionRecord,
    TrainingJobRecord,
    TurnRecord,
)

if TYPE_CHECKING:
    from pedagogy.graphs.loop import LoopState, Session

__all__ = [
    "Refined",
    "first_attempts",
    "generator_examples",
    "train_generator",
    "write_refinements",
]


@dataclass
class Refined:
    """What refinement gave a round: the problems to pose, the calls, the decisions."""

    problems: list[Problem] = field(default_factory=list)
    turns: list[TurnRecord] = field(default_factory=list)
    decisions: list[DecisionRecord] = field(default_factory=list)
    """One `refine_candidate` decision per written candidate (and per reply with none)."""
    stored: bool = False
    """Read back from the store (a rerun of the planning step): nothing new to record."""


def first_attempts(session: Session, episodes: list[EpisodeRecord]) -> dict[str, str]:
    """Per failed problem id, the student's first answer to it (parsed where possible)."""
    out: dict[str, str] = {}
    for e in episodes:
        first = next((t for t in e.turns if t.agent == "student"), None)
        if first is None or e.problem_id in out:
            continue
        parsed = session.domain.parse_answer(first.response)
        lines = [ln.strip() for ln in first.response.splitlines() if ln.strip()]
        out[e.problem_id] = parsed if parsed is not None else (lines[0] if lines else "")
    return out


async def write_refinements(
    session: Session,
    round_: int,
    parents: list[Problem],
    attempts: dict[str, str],
    want: int,
    rng: random.Random,
) -> Refined:
    """Up to `want` checked refinements of `parents` (in order), off the held-out set and new to
    the run. Parents are asked in chunks just large enough for what is still wanted, at most
    twice as many parents as `want` needs in all, so rejections cost a bounded number of calls."""
    cfg = session.config.curriculum
    n = cfg.refine_variants
    authors: list[tuple[str, Any]] = [("teacher", session.agents.teacher)]
    if cfg.refine_by == "generator":
        authors.append(("generator", session.generator))
    limit = min(len(parents), 2 * math.ceil(want / n))
    held = session.heldout_prompts
    out: list[Problem] = []
    seen: set[str] = set()
    turns: list[TurnRecord] = []
    written: list[tuple[TurnRecord, Problem, str, list[Candidate]]] = []
    done = 0
    while len(out) < want and done < limit:
        chunk = parents[done : min(limit, done + math.ceil((want - len(out)) / n))]
        done += len(chunk)
        calls = [(p, name, agent, rng.randrange(2**31)) for p in chunk for name, agent in authors]
        made = await asyncio.gather(
            *(agent.refine(p, attempts.get(p.id, ""), n, seed) for p, _, agent, seed in calls)
        )
        per_parent: dict[str, list[list[Candidate]]] = {}
        for (parent, name, _, _), turn in zip(calls, made):
            turns.append(turn)
            reply = "" if turn.error else turn.response
            got = read_candidates(session.domain, parent, reply, name, n, turn.id)
            written.append((turn, parent, name, got))
            per_parent.setdefault(parent.id, []).append([c for c in got if c.accepted])
        ids = [c.id for lists in per_parent.values() for got in lists for c in got]
        known = session.store.get_problems(ids)  # posed before: not new
        for parent in chunk:
            for c in _interleave(per_parent.get(parent.id, [])):
                v = c.problem
                if (
                    len(out) < want
                    and v.prompt not in held
                    and v.id not in known
                    and v.id not in seen
                ):
                    seen.add(v.id)
                    out.append(v)
    posed = {p.id for p in out}
    decisions = [
        d
        for turn, parent, name, got in written
        for d in _decisions(session.run_id, round_, turn, parent, name, got, attempts, posed)
    ]
    return Refined(out, turns, decisions)


def _interleave(lists: list[list[Candidate]]) -> list[Candidate]:
    """The teacher's first, the generator's first, the teacher's second, ..."""
    out: list[Candidate] = []
    for i in range(max((len(x) for x in lists), default=0)):
        out.extend(x[i] for x in lists if i < len(x))
    return out


def _decisions(
    run_id: str,
    round_: int,
    turn: TurnRecord,
    parent: Problem,
    author: str,
    got: list[Candidate],
    attempts: dict[str, str],
    posed: set[str],
) -> list[DecisionRecord]:
    base = {"parent": parent.id, "turn_id": turn.id, "attempt": attempts.get(parent.id, "")}
    if not got:
        reason = turn.error or "no problem line followed by an 'A: <answer>' line in the reply"
        return [
            DecisionRecord(
                run_id,
                round_,
                "refine_candidate",
                author,
                turn.id,
                False,
                None,
                {**base, "reason": reason, "posed": False},
            )
        ]
    return [
        DecisionRecord(
            run_id,
            round_,
            "refine_candidate",
            author,
            c.id,
            c.accepted,
            None,
            {
                **base,
                "text": c.text,
                "stated": c.stated,
                "solved": c.solved,
                "reason": c.reason,
                "prompt": c.problem.prompt if c.problem else None,
                "posed": c.id in posed,
            },
        )
        for c in got
    ]


def generator_examples(session: Session, round_: int) -> tuple[list[DatasetItemRecord], int]:
    """(REFINE prompt, accepted teacher reply) examples of rounds up to `round_`, one per teacher
    reply with an accepted candidate (held-out prompts left out), and how many are this round's.

    Each is a dataset item (job_id left empty) of the teacher's refine turn, outside episodes."""
    rows = [
        d
        for d in session.store.decisions(session.run_id, kind="refine_candidate")
        if d.policy == "teacher"
        and d.chosen
        and d.round <= round_
        and d.detail.get("prompt") not in session.heldout_prompts
    ]
    replies: dict[str, list[DecisionRecord]] = {}
    for d in rows:
        replies.setdefault(d.detail["turn_id"], []).append(d)
    parents = session.store.get_problems(sorted({d.detail["parent"] for d in rows}))
    items: list[DatasetItemRecord] = []
    new = 0
    for turn_id, got in replies.items():
        parent = parents.get(got[0].detail["parent"])
        if parent is None:
            continue
        accepted = [
            Problem(
                parent.domain,
                parent.skill,
                parent.level,
                d.detail["prompt"],
                str(d.detail["solved"]),
            )
            for d in got
        ]
        prompt, completion = training_pair(parent, got[0].detail["attempt"], accepted)
        items.append(DatasetItemRecord("", None, turn_id, "positive", prompt, completion))
        new += got[0].round == round_
    return items, new


async def train_generator(state: LoopState, session: Session) -> dict[str, Any]:
    """Fine-tune the LLM generator on the teacher's accepted refinements (this round's and
    earlier), register the new version and reload the generator with it."""
    from pedagogy.graphs.round_training import retry_decision
    from pedagogy.training.sft import SFTJobConfig, run_sft

    store, run_id, round_ = session.store, session.run_id, state["round"]
    gen, tc = session.config.generator, session.config.training
    earlier = store.training_job(run_id, round_, "generator")
    if earlier is not None and earlier.status == "completed":
        return {}  # a rerun: this round's generator is trained and was loaded at resume
    restart = earlier is not None and earlier.status in ("running", "interrupted", "failed")
    if restart:  # its process died or it failed: trained again, in place, on its items
        items, new = store.dataset_items(earlier.id), int(earlier.metrics.get("new_examples", 0))
        base = store.get_model_version(earlier.base_version_id or "")
    else:
        items, new = generator_examples(session, round_)
        if new < 1:
            session.emit("generator_training_skipped", {"round": round_, "examples": len(items)})
            return {}
        items = items[-tc.max_examples :] if tc.max_examples else items
        base = max(store.model_versions(run_id, "generator"), key=lambda v: v.number)
    pairs = [(i.prompt, i.completion) for i in items]
    job_cfg = SFTJobConfig(
        learning_rate=tc.learning_rate,
        batch_size=tc.batch_size,
        max_steps=gen.train_steps,
        max_seconds=gen.train_seconds,
        lora=tc.lora,
        lora_r=tc.lora_r,
        seed=session.config.seed + round_,
    )
    if restart:
        job = earlier
        retry = [retry_decision(job)] if job.status == "failed" else []
        store.restart_training_job(job.id, retry)  # the decision with the restart, at once
    else:
        job = store.start_training_job(
            TrainingJobRecord(
                id=uuid.uuid4().hex,
                run_id=run_id,
                round=round_,
                kind="sft",
                config={"role": "generator", **job_cfg.to_dict()},
                base_version_id=base.id,
                metrics={"new_examples": new},
                role="generator",
                attempt=0 if earlier is None else earlier.attempt + 1,  # after a failure
            ),
            items,
        )
    out_path = session.models_dir / f"generator-v{base.number + 1}"
    session.emit(
        "generator_training_started", {"round": round_, "examples": len(pairs), "new": new}
    )
    try:
        result = await asyncio.to_thread(
            run_sft, session.model_path(base.path), out_path, pairs, job_cfg
        )
    except Exception as err:
        store.finish_training_job(job.id, "failed", {"error": str(err)}, None)
        raise
    version = ModelVersionRecord(
        id=uuid.uuid4().hex,
        run_id=run_id,
        role="generator",
        number=base.number + 1,
        path=str(out_path),
        parent_id=base.id,
        training_job_id=job.id,
        status="promoted",
    )
    losses = [row["loss"] for row in result.log_history if "loss" in row]
    metrics = {
        "steps": result.steps,
        "train_loss": result.train_loss,
        "seconds": result.seconds,
        "first_loss": losses[0] if losses else None,
        "final_loss": result.final_loss,
        "examples": len(pairs),
        "new_examples": new,
    }
    store.finish_training_job(job.id, "completed", metrics, version.id, version)
    await asyncio.to_thread(session.generator.backend.reload, str(out_path), version.id)
    session.emit("generator_trained", {"round": round_, "version": version.id, **metrics})
    return {}
