"""Lineage graph, model audit and export, on a small run built by hand in a real SQLite file."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import networkx as nx
import pytest

from pedagogy.domains.base import Problem
from pedagogy.errors import ConfigError, StoreError
from pedagogy.memory import (
    DatasetItemRecord,
    EpisodeRecord,
    EvaluationRecord,
    ExplanationRecord,
    ModelVersionRecord,
    RunRecord,
    SQLStore,
    TrainingJobRecord,
    TurnRecord,
    VerdictRecord,
    audit_model,
    export_run,
    lineage_graph,
    open_store,
)


def turn(tid: str, seq: int, agent: str, prompt: str, response: str) -> TurnRecord:
    return TurnRecord(
        seq=seq,
        agent=agent,
        backend="scripted",
        model="tiny",
        request={"messages": [{"role": "user", "content": prompt}], "purpose": agent},
        response=response,
        id=tid,
    )


def explained_episode(eid: str, run: str, rnd: int, index: int, p: Problem) -> EpisodeRecord:
    """Wrong attempt, teacher explanation, correct re-attempt."""
    return EpisodeRecord(
        id=eid,
        run_id=run,
        round=rnd,
        index=index,
        problem_id=p.id,
        arm=p.arm,
        student_version=None,
        outcome="correct_after_explanation",
        correct_final=True,
        explained=True,
        turns=[
            turn(f"{eid}-a", 0, "student", p.prompt, "A: 0"),
            turn(f"{eid}-x", 1, "teacher", p.prompt, f"S: work A: {p.answer}"),
            turn(f"{eid}-b", 2, "student", p.prompt, f"A: {p.answer}"),
        ],
        verdicts=[
            VerdictRecord(f"{eid}-a", False, 0.0, "0"),
            VerdictRecord(f"{eid}-b", True, 1.0, p.answer),
        ],
        explanations=[ExplanationRecord(f"{eid}-x")],
    )


def correct_episode(eid: str, run: str, rnd: int, index: int, p: Problem) -> EpisodeRecord:
    return EpisodeRecord(
        id=eid,
        run_id=run,
        round=rnd,
        index=index,
        problem_id=p.id,
        arm=p.arm,
        student_version=None,
        outcome="correct_first",
        correct_first=True,
        correct_final=True,
        turns=[turn(f"{eid}-a", 0, "student", p.prompt, f"A: {p.answer}")],
        verdicts=[VerdictRecord(f"{eid}-a", True, 1.0, p.answer)],
    )


def item(job: str, eid: str, tid: str, polarity: str = "positive") -> DatasetItemRecord:
    return DatasetItemRecord(job, eid, tid, polarity, f"prompt of {tid}", f"completion of {tid}")


PROBLEMS = [Problem("arith", "add", i % 2, f"{i}+1=?", str(i + 1)) for i in range(4)]


@pytest.fixture
def store(tmp_path: Path):
    """Run "r": round 0 → job1 makes v1 from v0; round 1 → job2 makes v2 from v1; evaluations.

    Run "r2" continues from v2: job3 makes v3, trained on one episode of r2."""
    s = open_store(tmp_path / "lineage.db")
    s.create_run(RunRecord("r", "lineage", {}, 0))
    s.add_problems(PROBLEMS)
    p = PROBLEMS
    s.record_episodes(
        [explained_episode("e0", "r", 0, 0, p[0]), correct_episode("e1", "r", 0, 1, p[1])]
    )
    s.add_model_version(ModelVersionRecord("v0", "r", "student", 0, "/m/v0", status="base"))
    s.start_training_job(TrainingJobRecord("job1", "r", 0, "sft", {}, "v0"))
    s.add_dataset_items(
        [
            item("job1", "e0", "e0-x"),
            item("job1", "e1", "e1-a"),
            item("job1", "e0", "e0-a", "negative"),
        ]
    )
    s.add_model_version(ModelVersionRecord("v1", "r", "student", 1, "/m/v1", "v0", "job1"))
    s.finish_training_job("job1", "completed", {"loss": 1.0}, "v1")
    s.record_episodes(
        [explained_episode("e2", "r", 1, 0, p[2]), correct_episode("e3", "r", 1, 1, p[3])]
    )
    s.start_training_job(TrainingJobRecord("job2", "r", 1, "sft", {}, "v1"))
    s.add_dataset_items([item("job2", "e2", "e2-x"), item("job2", "e0", "e0-x")])
    s.add_model_version(ModelVersionRecord("v2", "r", "student", 2, "/m/v2", "v1", "job2"))
    s.finish_training_job("job2", "completed", {}, "v2")
    s.record_evaluations(
        [
            EvaluationRecord("r", 0, "v0", "add", 0, 10, 1),
            EvaluationRecord("r", 1, "v1", "add", 0, 10, 5),
            EvaluationRecord("r", 2, "v2", "add", 0, 10, 9),
            EvaluationRecord("r", 2, "v2", "add", 1, 10, 7),
        ]
    )
    s.create_run(RunRecord("r2", "continued", {}, 1))
    s.record_episodes([correct_episode("f0", "r2", 0, 0, p[0])])
    s.start_training_job(TrainingJobRecord("job3", "r2", 0, "lora", {}, "v2"))
    s.add_dataset_items([item("job3", "f0", "f0-a")])
    s.add_model_version(ModelVersionRecord("v3", "r2", "student", 3, "/m/v3", "v2", "job3"))
    s.finish_training_job("job3", "completed", {}, "v3")
    yield s
    s.close()


def test_lineage_graph_links_problems_to_evaluations(store: SQLStore):
    g = lineage_graph(store, "r")
    assert nx.is_directed_acyclic_graph(g)
    types = Counter(d["type"] for _, d in g.nodes(data=True))
    assert types == {
        "problem": 4,
        "episode": 4,
        "turn": 8,
        "dataset_item": 5,
        "training_job": 2,
        "model_version": 3,
        "evaluation": 4,
    }
    path = nx.shortest_path(g, "turn:e0-x", "evaluation:v1:1:add:0")
    path = [f"problem:{PROBLEMS[0].id}", *nx.shortest_path(g, "episode:e0", "turn:e0-x"), *path[1:]]
    assert nx.is_path(g, path)
    assert [g.nodes[n]["type"] for n in path] == [
        "problem",
        "episode",
        "turn",
        "dataset_item",
        "training_job",
        "model_version",
        "evaluation",
    ]
    assert g.edges["model_version:v0", "model_version:v1"]["relation"] == "parent"
    assert g.edges["model_version:v1", "model_version:v2"]["relation"] == "parent"
    assert g.edges["model_version:v0", "training_job:job1"]["relation"] == "base"
    assert g.edges["training_job:job2", "model_version:v2"]["relation"] == "produced"
    assert g.nodes["turn:e0-a"]["correct"] is False and g.nodes["turn:e0-x"]["agent"] == "teacher"
    assert g.nodes["evaluation:v2:2:add:1"]["accuracy"] == 0.7
    # v2 was trained (through v1) on e0, e1 and e2 but never on e3.
    ancestors = nx.ancestors(g, "model_version:v2")
    assert {"episode:e0", "episode:e1", "episode:e2"} <= ancestors
    assert "episode:e3" not in ancestors
    with pytest.raises(StoreError, match="unknown run id 'nope'"):
        lineage_graph(store, "nope")


def test_audit_walks_parents_across_runs(store: SQLStore):
    audit = audit_model(store, "v3")
    assert [v.id for v in audit.chain] == ["v3", "v2", "v1", "v0"]
    assert [j.id for j in audit.training_jobs] == ["job3", "job2", "job1"]
    assert audit.episode_ids == ["e0", "e1", "e2", "f0"] and audit.n_episodes == 4
    assert audit.turn_ids == ["e0-a", "e0-x", "e1-a", "e2-x", "f0-a"] and audit.n_turns == 5
    assert audit.items_by_polarity == {"negative": 1, "positive": 5}
    assert audit.evaluations == []

    v2 = audit_model(store, "v2")
    assert [j.id for j in v2.training_jobs] == ["job2", "job1"]
    assert [e.level for e in v2.evaluations] == [0, 1]
    assert v2.episode_ids == ["e0", "e1", "e2"]

    base = audit_model(store, "v0")
    assert (base.chain, base.training_jobs, base.n_turns) == ([base.version], [], 0)
    assert base.items_by_polarity == {}

    d = json.loads(json.dumps(v2.to_dict()))
    assert d["chain"] == ["v2", "v1", "v0"] and d["n_turns"] == 4
    assert d["evaluations"][0]["accuracy"] == 0.9
    assert d["version"]["created_at"].endswith("+00:00")
    with pytest.raises(StoreError, match="unknown model version 'v9'"):
        audit_model(store, "v9")


def test_export_jsonl_from_dataset_items(store: SQLStore, tmp_path: Path):
    out = tmp_path / "out" / "r.jsonl"
    assert export_run(store, "r", "jsonl", out) == 5
    records = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(records) == 5
    first = records[0]
    assert first["messages"] == [
        {"role": "user", "content": "prompt of e0-x"},
        {"role": "assistant", "content": "completion of e0-x"},
    ]
    assert first["lineage"] == {
        "run_id": "r",
        "episode_id": "e0",
        "turn_id": "e0-x",
        "problem_id": PROBLEMS[0].id,
        "job_id": "job1",
        "polarity": "positive",
    }
    assert [r["lineage"]["job_id"] for r in records] == ["job1"] * 3 + ["job2"] * 2
    assert Counter(r["lineage"]["polarity"] for r in records) == {"positive": 4, "negative": 1}


def test_export_untrained_run_uses_verified_turns(tmp_path: Path):
    with open_store(tmp_path / "fresh.db") as s:
        s.create_run(RunRecord("fresh", "no training yet", {}, 0))
        s.add_problems(PROBLEMS)
        s.record_episodes(
            [
                explained_episode("e0", "fresh", 0, 0, PROBLEMS[0]),
                correct_episode("e1", "fresh", 0, 1, PROBLEMS[1]),
            ]
        )
        out = tmp_path / "fresh.jsonl"
        assert export_run(s, "fresh", "jsonl", out) == 3
        records = [json.loads(line) for line in out.read_text().splitlines()]
    # The wrong first attempt of e0 is left out.
    assert [r["lineage"]["turn_id"] for r in records] == ["e0-x", "e0-b", "e1-a"]
    assert records[1]["messages"] == [
        {"role": "user", "content": PROBLEMS[0].prompt},
        {"role": "assistant", "content": f"A: {PROBLEMS[0].answer}"},
    ]
    assert {r["lineage"]["job_id"] for r in records} == {None}
    assert {r["lineage"]["polarity"] for r in records} == {"positive"}


def test_export_hf_dataset(store: SQLStore, tmp_path: Path):
    datasets = pytest.importorskip("datasets")
    out = tmp_path / "hf"
    assert export_run(store, "r", "hf", out) == 5
    ds = datasets.load_from_disk(str(out))
    assert len(ds) == 5 and set(ds.column_names) == {"messages", "lineage"}
    assert ds[3]["lineage"]["job_id"] == "job2"
    assert ds[0]["messages"][1] == {"role": "assistant", "content": "completion of e0-x"}
    with open_store(None) as empty:
        empty.create_run(RunRecord("x", "empty", {}, 0))
        assert export_run(empty, "x", "hf", tmp_path / "empty") == 0
    assert len(datasets.load_from_disk(str(tmp_path / "empty"))) == 0


def test_export_errors(store: SQLStore, tmp_path: Path):
    with pytest.raises(ConfigError, match="unknown export format 'csv'.*jsonl, hf"):
        export_run(store, "r", "csv", tmp_path / "x")
    with pytest.raises(StoreError, match="unknown run id 'nope'"):
        export_run(store, "nope", "jsonl", tmp_path / "x.jsonl")
