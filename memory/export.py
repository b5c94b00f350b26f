"""Export a run's training data as chat-format records (OpenAI JSONL or a Hugging Face dataset).

Each record is `{"messages": [{"role": "user", ...}, {"role": "assistant", ...}], "lineage": {...}}`
where lineage names the run, episode, turn, problem, training job (None when the record does not
come from a job) and polarity, so that every exported example can be traced back. The run's
latest chain anchor (`pedagogy.memory.anchor`) goes with them: NAME.anchor.json beside a .jsonl,
anchor.json inside an hf folder.

The records are the run's dataset items, i.e. exactly what its completed training jobs trained on
(a job that was interrupted, failed or skipped is left out). A run that has not completed a job
yet exports its verified positive turns instead: the student attempts a verifier judged
correct and the teacher's explanations, each with the request messages it answered.

An agent episode's trajectories export whole, in the OpenAI tools shape that TRL's SFT accepts:
user(problem) -> assistant(content = thought, tool_calls = [{id, type: "function", function:
{name, arguments: JSON text}}]) -> tool(tool_call_id, content = observation) -> ... ->
assistant("A:<answer>"); their lineage adds `turn_ids`, every turn of the trajectory (`turn_id`
is its last). Untrained runs export the student's correct trajectories and the teacher's correct
demonstrations; trained runs the trajectory each dataset item was made from.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pedagogy.errors import ConfigError

if TYPE_CHECKING:
    from pedagogy.memory.anchor import Anchor
    from pedagogy.memory.base import Store
    from pedagogy.memory.records import EpisodeRecord, Trajectory

FORMATS = ("jsonl", "hf")


def anchor_beside(out: Path | str, fmt: str) -> Path:
    """Where an export to `out` keeps its anchor: NAME.anchor.json beside a .jsonl file,
    anchor.json inside an "hf" dataset folder."""
    out = Path(out)
    return out / "anchor.json" if fmt == "hf" else out.with_suffix(".anchor.json")


def export_run(
    store: Store, run_id: str, fmt: str, out: Path | str, anchor: Anchor | None = None
) -> int:
    """Write the run's training records to `out` (a .jsonl file, or a directory for "hf"), and
    `anchor` (the run's latest chain anchor) at `anchor_beside(out, fmt)`, so that a recipient
    can hold the run's chain to it: `pedagogy audit verify RUN --anchor FILE`.

    Returns the number of records written.
    """
    if fmt not in FORMATS:
        raise ConfigError(f"unknown export format {fmt!r}; choose one of: {', '.join(FORMATS)}")
    records = training_records(store, run_id)
    out = Path(out)
    if fmt == "jsonl":
        out.parent.mkdir(parents=True, exist_ok=True)
        with out.open("w", encoding="utf-8") as f:
            for r in records:
                f.write(json.dumps(r, ensure_ascii=False) + "\n")
    else:
        import datasets

        features = _features(datasets, records)
        if records:
            dataset = datasets.Dataset.from_list(records, features=features)
        else:
            # from_list([]) loses the columns, and a zero-shard save cannot be loaded back.
            empty = features.arrow_schema.empty_table()
            dataset = datasets.Dataset(empty, info=datasets.DatasetInfo(features=features))
        bars = datasets.is_progress_bar_enabled()
        datasets.disable_progress_bars()  # the caller reports the count; keep the terminal quiet
        try:
            dataset.save_to_disk(str(out), num_shards=1 if not records else None)
        finally:
            if bars:
                datasets.enable_progress_bars()
    if anchor is not None:
        text = json.dumps(anchor.to_dict(), indent=2, sort_keys=True) + "\n"
        anchor_beside(out, fmt).write_text(text, encoding="utf-8")
    return len(records)


_LINEAGE = ("run_id", "episode_id", "turn_id", "problem_id", "job_id", "polarity")


def _features(datasets: Any, records: list[dict[str, Any]]) -> Any:
    """The dataset's features; with trajectories among the records, messages also carry
    `tool_calls` / `tool_call_id` and lineage `turn_ids` (every record is filled in to match)."""
    text = datasets.Value("string")
    lineage: dict[str, Any] = {k: text for k in _LINEAGE}
    message: dict[str, Any] = {"role": text, "content": text}
    if any("turn_ids" in r["lineage"] for r in records):
        call = {"id": text, "type": text, "function": {"name": text, "arguments": text}}
        message.update(tool_calls=[call], tool_call_id=text)
        lineage["turn_ids"] = [text]
        for r in records:
            r["lineage"].setdefault("turn_ids", [r["lineage"]["turn_id"]])
            for m in r["messages"]:
                m.setdefault("tool_calls", None)
                m.setdefault("tool_call_id", None)
    return datasets.Features({"messages": [message], "lineage": lineage})


def training_records(store: Store, run_id: str) -> list[dict[str, Any]]:
    """The chat-format records `export_run` writes, in run order."""
    store.get_run(run_id)  # a clear error for an unknown run
    # The student's training data: an LLM generator's jobs (role "generator") train another
    # model on the teacher's refinements. Only what a job finished training on: the items of an
    # interrupted, running, failed or skipped job are left out.
    jobs = [
        j for j in store.training_jobs(run_id) if j.role == "student" and j.status == "completed"
    ]
    if not jobs:
        return _from_turns(store, run_id)
    stored = store.episodes(run_id)
    problem_of = {e.id: e.problem_id for e in stored}
    acting = {e.id for e in stored if "agent" in e.decisions}
    full: dict[str, EpisodeRecord] = {}
    records = []
    for job in jobs:
        for item in store.dataset_items(job.id):
            if item.episode_id not in problem_of:  # an item reused from an earlier run
                episode = store.get_episode(item.episode_id)
                problem_of[item.episode_id] = episode.problem_id
                if "agent" in episode.decisions:
                    acting.add(episode.id)
                    full[episode.id] = episode
            if item.episode_id in acting:
                if item.episode_id not in full:
                    full[item.episode_id] = store.get_episode(item.episode_id)
                episode = full[item.episode_id]
                traj = next((t for t in episode.trajectories() if item.turn_id in t.turn_ids), None)
                if traj is not None:
                    records.append(
                        trajectory_record(
                            traj,
                            run_id=run_id,
                            episode=episode,
                            job_id=job.id,
                            polarity=item.polarity,
                        )
                    )
                    continue
            records.append(
                _record(
                    [{"role": "user", "content": item.prompt}],
                    item.completion,
                    run_id=run_id,
                    episode_id=item.episode_id,
                    turn_id=item.turn_id,
                    problem_id=problem_of[item.episode_id],
                    job_id=job.id,
                    polarity=item.polarity,
                )
            )
    return records


def _from_turns(store: Store, run_id: str) -> list[dict[str, Any]]:
    episodes = store.episodes(run_id, with_turns=True)
    problems = store.get_problems([e.problem_id for e in episodes])
    records = []
    for e in episodes:
        correct = {v.turn_id for v in e.verdicts if v.correct}
        explained = {x.turn_id for x in e.explanations}
        trajectories = e.trajectories()
        ordered: list[tuple[int, dict[str, Any]]] = []  # by the turn each record starts at
        for traj in trajectories:
            last = traj.turn_ids[-1] if traj.steps else None
            good = (
                e.decisions.get("demonstration_correct", False)
                if traj.kind == "demonstration"
                else last in correct
            )
            if good:
                record = trajectory_record(
                    traj, run_id=run_id, episode=e, job_id=None, polarity="positive"
                )
                ordered.append((traj.steps[0].turn.seq, record))
        acting = {i for traj in trajectories for i in traj.turn_ids}
        for t in e.turns:
            if t.id in acting:
                continue
            if t.error or not t.response or (t.id not in correct and t.id not in explained):
                continue
            messages = t.request.get("messages") if isinstance(t.request, dict) else None
            if not messages:
                problem = problems.get(e.problem_id)
                messages = [{"role": "user", "content": problem.prompt if problem else ""}]
            record = _record(
                messages,
                t.response,
                run_id=run_id,
                episode_id=e.id,
                turn_id=t.id,
                problem_id=e.problem_id,
                job_id=None,
                polarity="positive",
            )
            ordered.append((t.seq, record))
        records += [r for _, r in sorted(ordered, key=lambda sr: sr[0])]
    return records


def _record(
    messages: list[dict[str, Any]], completion: str, **lineage: str | None
) -> dict[str, Any]:
    chat = [
        {"role": str(m.get("role", "user")), "content": str(m.get("content", ""))} for m in messages
    ]
    chat.append({"role": "assistant", "content": completion})
    return {"messages": chat, "lineage": lineage}


def trajectory_record(
    traj: Trajectory, *, run_id: str, episode: EpisodeRecord, job_id: str | None, polarity: str
) -> dict[str, Any]:
    """One trajectory as a chat record with its lineage (all its turn ids)."""
    return {
        "messages": traj.messages(),
        "lineage": {
            "run_id": run_id,
            "episode_id": episode.id,
            "turn_id": traj.turn_ids[-1],
            "problem_id": episode.problem_id,
            "job_id": job_id,
            "polarity": polarity,
            "turn_ids": traj.turn_ids,
        },
    }
