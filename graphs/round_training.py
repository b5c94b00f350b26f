"""Training the student after a round: choose the examples (the round's new ones, with
`training.filter` only those the student can learn from, mixed with earlier ones), fit the
configured trainer on them, and register the result as a candidate version. The job and its items
are stored first, so a rerun of the node returns the finished job's candidate or restarts an
interrupted job on the same items.
"""

from __future__ import annotations

import asyncio
import random
import uuid
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pedagogy.backends.base import Scores
from pedagogy.graphs.session import Session
from pedagogy.memory.records import (
    DecisionRecord,
    ModelVersionRecord,
    TrainingJobRecord,
    TurnRecord,
)
from pedagogy.training.data import mix_examples

if TYPE_CHECKING:
    from pedagogy.graphs.loop import LoopState

__all__ = ["retry_decision", "train"]


def retry_decision(job: TrainingJobRecord) -> DecisionRecord:
    """The record that `job` failed and is trained again in place."""
    return DecisionRecord(
        run_id=job.run_id,
        round=job.round,
        kind="retry",
        policy="resume",
        subject=job.id,
        chosen=True,
        detail={"role": job.role, "error": job.metrics.get("error")},
    )


async def train(state: LoopState, session: Session) -> dict[str, Any]:
    """Fine-tune the promoted student on verified data (new + earlier), registering a candidate."""
    cfg, store, run_id, round_ = (
        session.config.training,
        session.store,
        session.run_id,
        state["round"],
    )
    # The node may run again after a crash: a finished job of the round is its result; one that
    # was interrupted (its process died) or failed (an error: the run stopped as failed) is
    # restarted in place, on the items it stored, so a resumed run trains on what an
    # uninterrupted one would have and keeps no second set of items beside them. A failure
    # restarted is recorded as a `retry` decision with its error.
    earlier_job = store.training_job(run_id, round_)
    if earlier_job is not None and earlier_job.status in ("completed", "skipped"):
        return _finished_job(session, earlier_job)
    restart = earlier_job is not None and earlier_job.status in ("running", "interrupted", "failed")
    acting = session.config.agent.enabled
    kind = "trajectory_sft" if acting else cfg.kind
    # Each round reads only its own episodes; earlier rounds' examples are kept (a flat cost).
    current, items, segments = session.training_pool().through(round_)
    episodes, problems = current.episodes, current.problems
    if restart:
        job, chosen = earlier_job, store.dataset_items(earlier_job.id)
        new = [i for i in chosen if i.episode_id in {e.id for e in episodes}]
        new_examples = int(job.metrics.get("new_examples", len(new)))
        # A failed job's `retry` decision goes in with the restart (one transaction).
        retry = [retry_decision(job)] if job.status == "failed" else []
        store.restart_training_job(job.id, retry)
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
                attempt=0,  # a failed or interrupted job is restarted in place, not retried anew
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
    # Trainers of (prompt, completion) examples or trajectories learn from positives only; an
    # on-policy trainer from every practised prompt (the student samples its own completions).
    shape = _shape_of(kind)
    negatives = shape in ("preferences", "unpaired", "prompts")
    usable = [i for i in items if negatives or i.polarity == "positive"]
    new_ids = {e.id for e in episodes}  # the round's own episodes
    new = [i for i in usable if i.episode_id in new_ids]
    decisions: list[DecisionRecord] = []
    counted = len(new) if shape == "prompts" else sum(i.polarity == "positive" for i in new)
    if counted < cfg.min_new_examples:
        session.emit("training_skipped", {"round": round_, "new_examples": len(new)})
        return None
    if cfg.filter and not acting and isinstance(session.student_backend, Scores):
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
    """Train the job's model on `chosen` with the trainer its kind names (`build_trainer`), on
    the data shape that trainer takes, and store the candidate version with the finished job."""
    from pedagogy.training.trainers import build_trainer, data_shape

    store, round_ = session.store, job.round
    new_examples = int(job.metrics.get("new_examples", 0))
    trainer = build_trainer(job.kind)
    shape = data_shape(trainer)
    data = _data(shape, chosen, segments)
    if not data:
        store.finish_training_job(job.id, "skipped", {"reason": _NO_DATA[shape]}, None)
        session.emit("training_skipped", {"round": round_, "new_examples": new_examples})
        return {"candidate": None}
    job_cfg = _job_config(session, trainer, shape, round_, student_path)
    try:
        result = await asyncio.to_thread(trainer.train, student_path, data, out_path, job_cfg)
    except Exception as err:
        store.finish_training_job(job.id, "failed", {"error": str(err)}, None)
        raise
    version = ModelVersionRecord(
        id=uuid.uuid4().hex,
        run_id=session.run_id,
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
    if result.samples:  # an on-policy job's samples and the teacher's scores, on the chain
        store.record_turns(session.run_id, _sample_turns(session, job, student_path, result))
    store.finish_training_job(job.id, "completed", metrics, version.id, version)
    session.emit("training_finished", {"round": round_, **metrics})
    return {"candidate": {"id": version.id, "path": str(out_path), "job_id": job.id}}


def _sample_turns(
    session: Session, job: TrainingJobRecord, student_path: str, result: Any
) -> list[TurnRecord]:
    """An on-policy job's kept samples as student turns outside any episode: the prompt as the
    request (purpose `onpolicy`, the job, its attempt and the step), the sampled completion as
    the response, and in `detail` its token ids and the teacher's log-probability of each."""
    turns = []
    for i, s in enumerate(result.samples):
        turns.append(
            TurnRecord(
                seq=i,
                agent="student",
                backend="transformers",
                model=student_path,
                model_version=job.base_version_id,
                request={
                    "messages": [{"role": "user", "content": s["prompt"]}],
                    "purpose": "onpolicy",
                    "job_id": job.id,
                    "attempt": job.attempt,
                    "step": s["step"],
                    "on_policy": s["on_policy"],
                },
                response=s["completion"],
                completion_tokens=len(s["token_ids"]),
                seed=s["seed"],
                episode_id=None,
                detail={
                    "token_ids": s["token_ids"],
                    "teacher_logprobs": s["teacher_logprobs"],
                    "teacher": session.teacher_path,
                },
            )
        )
    return turns


_NO_DATA = {
    "examples": "no (prompt, completion) examples",
    "preferences": "no (correct, wrong) pairs",
    "unpaired": "no examples",
    "trajectories": "no trajectories",
    "prompts": "no prompts",
}


def _shape_of(kind: str) -> str:
    """The data shape (`pedagogy.training.trainers.DATA_SHAPES`) of the trainer `kind` names."""
    from pedagogy.training.trainers import build_trainer, data_shape

    return data_shape(build_trainer(kind))


def _data(shape: str, chosen: list, segments: dict) -> list:
    """The job's items as its trainer takes them (`Trainer`)."""
    if shape == "trajectories":
        return [segments[(i.episode_id, i.turn_id)] for i in chosen]
    if shape == "examples":
        return [(i.prompt, i.completion) for i in chosen if i.polarity == "positive"]
    if shape == "prompts":  # each prompt once, with a verified completion where there is one
        completions: dict[str, str | None] = {}
        for i in chosen:
            if i.polarity == "positive":
                completions[i.prompt] = i.completion
            else:
                completions.setdefault(i.prompt, None)
        return list(completions.items())
    from pedagogy.training.preference import preference_pairs

    return preference_pairs(chosen, unpaired=shape == "unpaired")


def _job_config(session: Session, trainer: Any, shape: str, round_: int, student_path: str) -> Any:
    """The job config of `trainer` from the `training` section: the built-ins' as always; a
    custom trainer's `config_class` when it is an `SFTJobConfig`, else None (its defaults)."""
    from pedagogy.training.preference import DPOJobConfig, REDIJobConfig
    from pedagogy.training.sft import SFTJobConfig

    cfg = session.config.training
    common: dict[str, Any] = dict(
        learning_rate=cfg.learning_rate,
        batch_size=cfg.batch_size,
        max_seconds=cfg.max_seconds,
        max_steps=cfg.max_steps,
        lora=cfg.lora,
        lora_r=cfg.lora_r,
        seed=session.config.seed + round_,
    )
    if shape == "trajectories":
        # The model's own context length bounds the rows; longer ones are truncated and counted.
        common.update(max_length=1 << 16, packing=cfg.packing)
    elif shape == "examples":
        common.update(max_length=_context_of(student_path), packing=cfg.packing)
    cls = getattr(trainer, "config_class", None)
    if isinstance(cls, type) and issubclass(cls, REDIJobConfig):
        common["alpha"] = cfg.alpha
    if isinstance(cls, type) and issubclass(cls, DPOJobConfig):
        common["beta"] = cfg.beta
    if not (isinstance(cls, type) and issubclass(cls, SFTJobConfig)):
        return None
    from pedagogy.training.onpolicy_trainer import OnPolicyJobConfig

    if issubclass(cls, OnPolicyJobConfig):
        common.update(cfg.onpolicy.model_dump(), teacher_path=session.teacher_path)
    return cls(**common)


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
