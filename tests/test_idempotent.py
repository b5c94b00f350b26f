"""Idempotent writes, the run lease, resume from anywhere, interrupted jobs (issue 9).

Fast part: the store's natural keys, the lease and migration 0008 on a real SQLite file (and a
real PostgreSQL server). Slow part: whole runs on the tiny student, crashed right after each
loop node's writes (the `PEDAGOGY_CRASH_AFTER` hook) and SIGKILLed at random points, then
resumed: every table's rows and the held-out numbers must equal an uninterrupted run's.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import multiprocessing
import os
import random
import signal
import socket
import sqlite3
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import closing
from dataclasses import replace
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
import yaml

from pedagogy.errors import ConfigError, RunInUse, StoreError
from pedagogy.graphs.round_training import retry_decision
from pedagogy.memory import (
    CurriculumStateRecord,
    DatasetItemRecord,
    DecisionRecord,
    EvaluationRecord,
    ModelVersionRecord,
    SQLStore,
    TrainingJobRecord,
    open_store,
)
from pedagogy.memory import crash as crash_hook
from pedagogy.memory.export import training_records
from pedagogy.memory.lease import is_live, run_status
from pedagogy.memory.store import MIGRATIONS
from tests.test_store import batch, make_run


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'pedagogy.db'}"
    return request.getfixturevalue("postgres_database")


@pytest.fixture
def store(db_url: str) -> Iterator[SQLStore]:
    s = open_store(db_url)
    yield s
    s.close()


def _sql(url: str, statement: str, **params: Any) -> list[Any]:
    engine = sa.create_engine(url)
    try:
        with engine.begin() as conn:
            result = conn.execute(sa.text(statement), params)
            return result.all() if result.returns_rows else []
    finally:
        engine.dispose()


def _alembic(url: str, command: str, revision: str) -> None:
    from alembic import command as commands
    from alembic.config import Config

    engine = sa.create_engine(url)
    try:
        with engine.begin() as conn:
            config = Config()
            config.set_main_option("script_location", str(MIGRATIONS))
            config.attributes["connection"] = conn
            getattr(commands, command)(config, revision)
    finally:
        engine.dispose()


def _job_with_items(store: SQLStore, run_id: str = "run1", round_: int = 1):
    """A student job of `round_` started with two items of one turn (in-context) and a decision."""
    eps = batch(store, run_id, round_, 2)
    store.record_episodes(eps)
    explain = eps[0].turns[1]
    items = [
        DatasetItemRecord("", eps[0].id, explain.id, "positive", "p", explain.response),
        DatasetItemRecord("", eps[0].id, explain.id, "positive", "ctx p", explain.response),
        DatasetItemRecord("", eps[1].id, eps[1].turns[0].id, "negative", "q", "A: 9"),
    ]
    decision = DecisionRecord(run_id, round_, "filter", "learnability", explain.id, True, 0.5)
    job = TrainingJobRecord(f"job{round_}", run_id, round_, "sft", {}, f"{run_id}-v0")
    return job, items, decision


# --- natural keys --------------------------------------------------------------------------------


def test_writes_are_idempotent_on_their_natural_keys(store: SQLStore):
    make_run(store)
    base = ModelVersionRecord("run1-v0", "run1", "student", 0, "/m/v0", status="base")
    store.add_model_version(base)
    job, items, decision = _job_with_items(store)
    stored = store.start_training_job(job, items, [decision])
    assert stored.id == "job1" and stored.role == "student" and stored.attempt == 0
    # A rerun of the node: a new job id, the same natural key -> the stored job, nothing added.
    again = store.start_training_job(replace(job, id="job1-again"), items, [decision])
    assert again.id == "job1"
    assert [j.id for j in store.training_jobs("run1")] == ["job1"]
    got = store.dataset_items("job1")
    assert [(i.turn_id, i.prompt, i.part) for i in got] == [
        (items[0].turn_id, "p", 0),
        (items[0].turn_id, "ctx p", 1),  # the same turn's second item: the next part
        (items[2].turn_id, "q", 0),
    ]
    assert len(store.decisions("run1", kind="filter")) == 1
    store.add_dataset_items(items)  # equal items are not stored twice
    assert len(store.dataset_items("job1")) == 3
    assert store.training_job("run1", 1) == store.training_jobs("run1")[0]
    assert store.training_job("run1", 1, "generator") is None

    # The version is stored with its finished job, once, whatever the reruns.
    v1 = ModelVersionRecord("v1", "run1", "student", 1, "/m/v1", "run1-v0", "job1")
    for _ in range(2):
        store.finish_training_job("job1", "completed", {"steps": 4}, "v1", v1)
    assert [(v.id, v.number) for v in store.model_versions("run1")] == [("run1-v0", 0), ("v1", 1)]
    with pytest.raises(StoreError, match="cannot add model version 'v1b'"):  # no renumbering
        store.add_model_version(replace(v1, id="v1b"))

    evals = [EvaluationRecord("run1", 1, "v1", "add", lv, 8, lv + 1) for lv in (0, 1)]
    store.record_evaluations(evals)
    store.record_evaluations([replace(e, correct=0) for e in evals])  # a rerun: first kept
    assert [(e.level, e.correct) for e in store.evaluations("run1")] == [(0, 1), (1, 2)]
    assert store.verify_chain("run1") == []


def test_writing_what_is_stored_adds_no_link(store: SQLStore):
    """A node run again after a crash promotes its candidate and saves its curriculum state
    again: no change, so no new snapshot link (its chain stays as an uninterrupted run's)."""
    make_run(store)
    v0 = ModelVersionRecord("run1-v0", "run1", "student", 0, "/m", status="candidate")
    store.add_model_version(v0)
    state = CurriculumStateRecord("run1", 1, {"results": {"a@0": (1, 2)}, "p": [0.5, 0.25]})
    store.set_model_status(v0.id, "promoted")
    store.save_curriculum_state(state)
    length = store.chain_head("run1").length
    store.set_model_status(v0.id, "promoted")
    store.save_curriculum_state(replace(state, state=json.loads(json.dumps(state.state))))
    assert store.chain_head("run1").length == length
    store.set_model_status(v0.id, "rolled_back")  # a change: its snapshot is chained
    store.save_curriculum_state(replace(state, state={**state.state, "p": [0.5, 0.5]}))
    snapshots = [(link.row["subject"], link.row["content"]) for link in store.chain_links("run1")]
    assert [(s, c.get("status")) for s, c in snapshots if s == "model_versions"] == [
        ("model_versions", "candidate"),
        ("model_versions", "promoted"),
        ("model_versions", "rolled_back"),
    ]
    curriculum = [c["state"]["p"] for s, c in snapshots if s == "curriculum_states"]
    assert curriculum == [[0.5, 0.25], [0.5, 0.5]]
    assert store.verify_chain("run1") == []


def test_interrupted_jobs_are_marked_restarted_in_place_and_left_out_of_export(store: SQLStore):
    make_run(store)
    store.add_model_version(
        ModelVersionRecord("run1-v0", "run1", "student", 0, "/m", status="base")
    )
    job, items, decision = _job_with_items(store)
    store.start_training_job(job, items, [decision])
    v1 = ModelVersionRecord("v1", "run1", "student", 1, "/m/v1", "run1-v0", "job1")
    store.finish_training_job("job1", "completed", {}, "v1", v1)
    job2, items2, _ = _job_with_items(store, round_=2)
    store.start_training_job(job2, items2[:1])
    assert store.interrupt_training_jobs("run1") == ["job2"]  # its process died
    assert [j.status for j in store.training_jobs("run1")] == ["completed", "interrupted"]
    # Export is what finished training: not what an interrupted (or running) job had stored.
    exported = training_records(store, "run1")
    assert {r["lineage"]["job_id"] for r in exported} == {"job1"} and len(exported) == 3
    store.restart_training_job("job2")  # a resume trains it again, on the items it stored
    assert store.training_job("run1", 2).status == "running"
    assert store.interrupt_training_jobs("run1") == ["job2"]
    # Only a failed job is tried again as a new attempt of its round.
    store.finish_training_job("job2", "failed", {"error": "x"}, None)
    retry = store.start_training_job(replace(job2, id="job2b", attempt=1), items2[:1])
    assert (retry.id, store.training_job("run1", 2).id) == ("job2b", "job2b")


def test_a_failed_jobs_retry_decision_goes_in_with_its_restart(store: SQLStore):
    """The `retry` decision and the restart are one transaction: a crash between them cannot
    leave a decision whose restart is missing, which the next resume would record again."""
    make_run(store)
    store.add_model_version(
        ModelVersionRecord("run1-v0", "run1", "student", 0, "/m", status="base")
    )
    job, items, _ = _job_with_items(store)
    store.start_training_job(job, items)
    store.finish_training_job("job1", "failed", {"error": "boom"}, None)
    failed = store.training_job("run1", 1)
    store.restart_training_job("job1", [retry_decision(failed)])
    links = list(store.chain_links("run1"))[-2:]
    assert [(link.table, link.row.get("kind") or link.row.get("subject")) for link in links] == [
        ("decisions", "retry"),
        ("snapshots", "training_jobs"),
    ]
    assert links[1].row["content"]["status"] == "running"
    assert [d.detail["error"] for d in store.decisions("run1", kind="retry")] == ["boom"]
    assert store.verify_chain("run1") == []


def test_decisions_saved_with_a_curriculum_state_go_in_with_it_or_not_at_all(store: SQLStore):
    """The intervention decisions and the policy state they leave are one transaction: a
    resume finds both or neither (a kill between two writes had left the state behind)."""
    make_run(store)
    decision = DecisionRecord("run1", 1, "intervention", "utility", "e1", True, 0.5)
    bad = CurriculumStateRecord("run1", 1, {"policy": object()})  # cannot be stored
    with pytest.raises(Exception, match="not JSON serializable"):
        store.save_curriculum_state(bad, [decision])
    assert store.decisions("run1") == [] and store.curriculum_states("run1") == []
    store.save_curriculum_state(CurriculumStateRecord("run1", 1, {"policy": 1}), [decision])
    links = [(link.table, link.row.get("subject")) for link in store.chain_links("run1")]
    assert links[-2:] == [("decisions", "e1"), ("snapshots", "curriculum_states")]
    assert store.verify_chain("run1") == []


# --- the run lease -------------------------------------------------------------------------------


def test_the_lease_refuses_a_second_process_until_the_first_is_gone(store: SQLStore, db_url: str):
    host = socket.gethostname()
    make_run(store)
    me = f"{host}:{os.getpid()}:aaaa"
    before = store.acquire_run("run1", me)
    assert before.status == "running" and before.lease_holder is None
    assert run_status(store.get_run("run1")) == "running"
    # A second process of this host, while this one lives: refused, exit 2, one line.
    with pytest.raises(RunInUse, match=r"run run1 is being run by another process") as refused:
        store.acquire_run("run1", f"{host}:{os.getpid() + 1}:bbbb")
    assert refused.value.exit_code == 2 and "\n" not in str(refused.value)
    assert store.heartbeat("run1", me) and not store.heartbeat("run1", "other:1:x")
    store.release_run("run1", me)
    assert run_status(store.get_run("run1")) == "interrupted"  # says running, nobody runs it

    # A holder on this host whose process is gone (killed): resumable at once.
    dead = multiprocessing.get_context("fork").Process(target=os._exit, args=(0,))
    dead.start()
    dead.join()
    store.acquire_run("run1", f"{host}:{dead.pid}:cccc")
    assert run_status(store.get_run("run1")) == "interrupted"
    store.acquire_run("run1", me)
    # A holder on another host: live while it beats, abandoned once its heartbeat is stale.
    other = "elsewhere:42:dddd"
    store.release_run("run1", me)
    store.acquire_run("run1", other)
    with pytest.raises(RunInUse, match="host elsewhere, pid 42"):
        store.acquire_run("run1", me)
    old = datetime.now(timezone.utc) - timedelta(seconds=3600)
    _sql(db_url, "UPDATE runs SET lease_heartbeat = :t", t=old.replace(tzinfo=None))
    assert not is_live(other, old)
    store.acquire_run("run1", me)
    assert store.get_run("run1").lease_holder == me
    store.set_run_status("run1", "completed")
    store.release_run("run1", me)
    assert run_status(store.get_run("run1")) == "completed"


# --- migration 0008 -------------------------------------------------------------------------------


def test_upgrading_to_0008_drops_duplicates_and_keeps_every_chained_row(db_url: str):
    """A database written before the natural keys, with what the old code left after a node ran
    twice and after two concurrent resumes: duplicate evaluations (dropped), a repeated version
    number (renumbered), two jobs of one round (numbered attempts), items of one turn (parts)."""
    with open_store(db_url) as s:
        make_run(s)
        base = ModelVersionRecord("run1-v0", "run1", "student", 0, "/m", status="base")
        s.add_model_version(base)
        job, items, decision = _job_with_items(s)
        s.start_training_job(job, items, [decision])
        s.record_evaluations([EvaluationRecord("run1", 0, "run1-v0", "add", 0, 8, 3)])
    _alembic(db_url, "downgrade", "0007_call_attempts")
    now = datetime.now(timezone.utc).replace(tzinfo=None)
    _sql(
        db_url,
        "INSERT INTO evaluations (run_id, round, model_version_id, skill, level, n, correct) "
        "VALUES ('run1', 0, 'run1-v0', 'add', 0, 8, 5), ('run1', 0, 'run1-v0', 'add', 1, 8, 1)",
    )
    for vid, at in (("v1", now), ("v1dup", now + timedelta(seconds=1))):
        _sql(
            db_url,
            "INSERT INTO model_versions (id, run_id, role, number, path, status, created_at) "
            "VALUES (:id, 'run1', 'student', 1, '/m/v1', 'promoted', :at)",
            id=vid,
            at=at,
        )
    _sql(
        db_url,
        "INSERT INTO training_jobs (id, run_id, round, kind, config, status, metrics, started_at) "
        "VALUES ('job1b', 'run1', 1, 'sft', '{}', 'completed', '{}', :at), "
        "('gjob', 'run1', 1, 'sft', '{\"role\": \"generator\"}', 'completed', '{}', :at)",
        at=now + timedelta(seconds=5),
    )
    with pytest.warns(UserWarning) as said:
        store = open_store(db_url)
    text = " ".join(str(w.message) for w in said)
    assert "dropped 1 duplicate evaluation rows" in text and "run1 (1)" in text
    assert "renumbered 1 model versions" in text and "v1dup (student v1 -> v2)" in text
    with store:
        assert [(e.level, e.correct) for e in store.evaluations("run1")] == [(0, 3), (1, 1)]
        assert [(v.id, v.number) for v in store.model_versions("run1")] == [
            ("run1-v0", 0),
            ("v1", 1),
            ("v1dup", 2),
        ]
        jobs = {j.id: (j.role, j.attempt) for j in store.training_jobs("run1")}
        assert jobs == {"job1": ("student", 0), "job1b": ("student", 1), "gjob": ("generator", 0)}
        assert [i.part for i in store.dataset_items("job1")] == [0, 1, 0]
        assert store.verify_chain("run1") == []  # no chained row was touched
        assert store.get_run("run1").lease_holder is None
        with pytest.raises(StoreError):  # the keys hold from now on
            store.add_model_version(ModelVersionRecord("v9", "run1", "student", 2, "/m"))


# --- whole runs: crashed after each node's writes, killed at random, resumed ------------------------

SMALL = {
    "name": "small",
    "rounds": 2,
    "domain": {
        "name": "reasoning_gym",
        "options": {
            "skills": ["chain_sum"],
            "compact": True,
            "levels": {
                "chain_sum": [{"num_terms": 0, "num_digits": 0}, {"num_terms": 0, "num_digits": 1}]
            },
        },
    },
    "student": {"options": {"tiny": {}}},
    "episodes": {"per_round": 16, "write_batch": 4},
    # Step-bounded training: the same data gives the same weights, run after run.
    "training": {"max_steps": 4, "max_seconds": 600, "batch_size": 8},
    "evaluation": {"heldout_per_arm": 8},
}
NODES = ("plan_round", "run_episodes", "update_curriculum", "train", "evaluate_and_promote")


def _config_file(folder: Path, name: str, workdir: str | None = None, db: str | None = None):
    data = json.loads(json.dumps(SMALL))
    data.update(name=name, workdir=workdir or str(folder / "work"))
    data["db"] = db or str(folder / "work" / "pedagogy.db")
    path = folder / f"{name}.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def _weights(path: str) -> str:
    digest = hashlib.sha256()
    for f in sorted(Path(path).glob("*.safetensors")):
        digest.update(f.read_bytes())
    return digest.hexdigest()


def _snapshot(store: SQLStore, run_id: str) -> dict[str, Any]:
    """Every table's rows of a run, without its ids (uuids and the run id differ between runs),
    and the weights of its final student."""
    versions = store.model_versions(run_id)
    number = {v.id: (v.role, v.number) for v in versions}
    jobs = store.training_jobs(run_id)
    final = max((v for v in versions if v.status in ("base", "promoted")), key=lambda v: v.number)

    episodes = store.episodes(run_id)
    index = {e.id: f"episode {e.round}/{e.index}" for e in episodes}

    def plain(value: Any) -> Any:
        return index.get(value, value.replace(run_id, "RUN")) if isinstance(value, str) else value

    return {
        "episodes": sorted(
            (e.round, e.index, e.problem_id, e.outcome, e.correct_first, e.explained)
            for e in episodes
        ),
        "calls": {
            a: (t["calls"], t["completion_tokens"]) for a, t in store.token_totals(run_id).items()
        },
        "decisions": sorted(
            (d.round, d.kind, d.policy, plain(d.subject), d.chosen, d.value)
            for d in store.decisions(run_id)
        ),
        "jobs": sorted(
            (j.round, j.role, j.attempt, j.status, j.metrics.get("steps")) for j in jobs
        ),
        "versions": sorted((v.role, v.number, v.status) for v in versions),
        "evaluations": sorted(
            (e.round, number[e.model_version_id], e.skill, e.level, e.n, e.correct)
            for e in store.evaluations(run_id)
        ),
        "dataset_items": sorted(
            (j.round, j.role, i.polarity, i.prompt, i.completion, i.part)
            for j in jobs
            for i in store.dataset_items(j.id)
        ),
        "curriculum": [c.round for c in store.curriculum_states(run_id)],
        "final_weights": _weights(final.path),
        "chain_breaks": store.verify_chain(run_id),
        "chain": _chain(store, run_id, index, number),
    }


_STATUS = ("training_jobs", "model_versions")
"""Snapshotted tables whose copies say which status the row was in: a job's or a version's
history of status changes is part of the chain order compared."""


def _chain(
    store: SQLStore, run_id: str, episode: dict[str, str], number: dict[str, tuple[str, int]]
) -> list[tuple[Any, ...]]:
    """The run's chain in order: for each chain index, its table and what the row is, without
    uuids, row numbers or timings (an episode by round/index, a turn by its episode, seq and
    agent, a job by round/role/attempt, a version by role/number, a snapshot by its subject and
    that row's natural key), so that which row took which index can be compared between runs."""
    links = list(store.chain_links(run_id))
    jobs = {j.id: ("job", j.round, j.role, j.attempt) for j in store.training_jobs(run_id)}
    versions = {vid: ("version", *key) for vid, key in number.items()}
    turns: dict[str, Any] = {}
    outside: Counter[tuple[int, str]] = Counter()
    for link in links:
        if link.table == "turns":
            row = link.row
            where = episode.get(row["episode_id"])
            key = (int(row["seq"]), row["agent"])
            if where is None:  # a turn outside episodes: by its order among its kind
                where = f"outside #{outside[key]}"
                outside[key] += 1
            turns[str(link.id)] = ("turn", where, *key)
    names = {**episode, **turns, **jobs, **versions}

    def name(value: Any) -> Any:
        if not isinstance(value, str):
            return value
        return names.get(value, value.replace(run_id, "RUN"))

    def describe(table: str, row: dict[str, Any], link_id: Any) -> tuple[Any, ...]:
        if table == "turns":
            return turns[str(link_id)][1:]
        if table == "tool_calls":
            return (name(row["turn_id"]), row["step"], row["tool"])
        if table in ("verdicts", "explanations"):
            return (name(row["turn_id"]), row.get("verifier") or row.get("style"))
        if table == "decisions":
            subject = (row["round"], row["kind"], row["policy"], name(row["subject"]))
            return (*subject, name(row["episode_id"]))
        if table == "dataset_items":
            return (name(row["job_id"]), name(row["turn_id"]), row["polarity"], row["part"])
        if table == "call_attempts":
            return (name(row["turn_id"]), row["n"], row["endpoint"])
        subject, c = row["subject"], row["content"]
        if subject == "runs":
            return (subject,)
        if subject == "problems":
            return (subject, row["subject_id"])
        if subject == "episodes":
            return (subject, c["round"], c["index"])
        if subject == "model_versions":
            return (subject, c["role"], c["number"], c["status"])
        if subject == "training_jobs":
            return (subject, c["round"], c["role"], c["attempt"], c["status"])
        if subject == "evaluations":
            version = number.get(c["model_version_id"], name(c["model_version_id"]))
            return (subject, c["round"], version, c["skill"], c["level"])
        return (subject, c["round"])  # curriculum_states

    return [(link.table, *describe(link.table, link.row, link.id)) for link in links]


def _without_restarts(
    chain: list[tuple[Any, ...]], crashed: tuple[str, ...] = ("interrupted",)
) -> list[tuple[Any, ...]]:
    """`chain` (of `_snapshot`) without the links that record a job restarted in place: its
    snapshot in a `crashed` status and the `running` one of its restart after it. A job that was
    training when its process died is marked interrupted on resume and running again when `train`
    restarts it: two links an uninterrupted run does not have, kept on the chain on purpose (they
    show an auditor that the run crashed while the job trained, and how often). Every other link
    must take the place it takes in an uninterrupted run, those two left out."""
    out, status = [], {}
    for link in chain:
        if link[:2] == ("snapshots", "training_jobs"):
            job, now = link[2:5], link[5]
            before, status[job] = status.get(job), now
            if now in crashed or (now == "running" and before in crashed):
                continue
        out.append(link)
    return out


def _before_upgrade(url: str, run_id: str) -> tuple[int, int]:
    """Where a downgrade below migration 0009 left the run's chain and how many links the upgrade
    back to it appends there: the downgrade drops every snapshot link and re-chains the rest (its
    length: the links kept), and the upgrade copies the rows as it finds them (the run, the
    problems its episodes pose, its episodes, versions, jobs, evaluations and curriculum states;
    a process killed inside the upgrade changed none of them)."""
    ((length,),) = _sql(url, "SELECT length FROM chain_heads WHERE run_id = :r", r=run_id)
    copies = 1
    for table in ("episodes", "model_versions", "training_jobs", "evaluations"):
        copies += _sql(url, f"SELECT count(*) FROM {table} WHERE run_id = :r", r=run_id)[0][0]
    copies += _sql(url, "SELECT count(*) FROM curriculum_states WHERE run_id = :r", r=run_id)[0][0]
    query = "SELECT count(DISTINCT problem_id) FROM episodes WHERE run_id = :r"
    return length, copies + _sql(url, query, r=run_id)[0][0]


def _across_upgrade(
    chain: list[tuple[Any, ...]], reference: list[tuple[Any, ...]], at: int, copies: int
) -> tuple[list[tuple[Any, ...]], list[tuple[Any, ...]]]:
    """The chain of a run whose database was set back below migration 0009 and upgraded again
    (`_before_upgrade`), and the reference's chain, each without what that round trip changed:
    the snapshot links written before it (the downgrade dropped them; their history is not
    stored anywhere else, so the upgrade cannot write them again) and the upgrade's copies of the
    rows it found, appended at `at`. Everything else keeps its order: the links kept before the
    downgrade, then every link written after the upgrade (restarts left out, `_without_restarts`)
    as at the end of the reference's chain."""
    upgrade = chain[at : at + copies]
    assert upgrade[:1] == [("snapshots", "runs")], upgrade[:3]
    assert all(link[0] == "snapshots" for link in upgrade), upgrade
    after = _without_restarts(chain[at + copies :])
    cut = len(reference) - len(after)
    kept = [link for link in reference[:cut] if link[0] != "snapshots"]
    return chain[:at] + after, kept + reference[cut:]


class _Killed(BaseException):
    """The in-process stand-in for a SIGKILL at a crash point: nothing catches it, so the run
    row stays `running` and the node's update is never checkpointed."""


def _run(config_path: Path, resume: str | None = None, crash: str | None = None):
    from pedagogy.config import load_config
    from pedagogy.runner import run_loop

    crash_hook.passed.clear()
    if crash is None:
        os.environ.pop(crash_hook.ENV, None)
    else:
        os.environ[crash_hook.ENV] = crash
    try:
        return asyncio.run(run_loop(load_config(config_path), resume=resume))
    finally:
        os.environ.pop(crash_hook.ENV, None)


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Any]]:
    """An uninterrupted run: its folder and snapshot."""
    folder = tmp_path_factory.mktemp("reference")
    result = _run(_config_file(folder, "reference"))
    with open_store(result.db_url) as store:
        assert result.status == "completed"
        return folder, _snapshot(store, result.run_id)


def _killed(monkeypatch: pytest.MonkeyPatch) -> None:
    def kill() -> None:
        raise _Killed()

    monkeypatch.setattr(crash_hook, "action", kill)


@pytest.mark.slow
def test_each_node_run_again_after_its_writes_leaves_what_an_uninterrupted_run_leaves(
    reference, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    """Killed right after the writes of every node in turn (before LangGraph checkpoints it) and
    each time resumed, from another directory than the one the run started in: the node runs
    again and writes nothing twice. Halfway, the run is made to look like one stored before
    paths were stored absolute (relative workdir, database and model paths): it still resumes,
    its folder found from where its database is."""
    _killed(monkeypatch)
    start, elsewhere = tmp_path / "start", tmp_path / "elsewhere"
    start.mkdir()
    elsewhere.mkdir()
    db = start / "work" / "pedagogy.db"
    monkeypatch.chdir(start)
    with pytest.raises(_Killed):
        _run(
            _config_file(start, "crashed", workdir="work", db="work/pedagogy.db"),
            crash="evaluate_base:1",
        )
    with open_store(db) as store:
        (run,) = store.list_runs()
        assert Path(run.config["workdir"]).is_absolute()
        assert all(Path(v.path).is_absolute() for v in store.model_versions(run.id))
    monkeypatch.chdir(elsewhere)
    config = _config_file(elsewhere, "resume", db=str(db))  # only its db is used on --resume
    points = [node for _ in range(SMALL["rounds"]) for node in NODES]
    for n, point in enumerate(points):
        with pytest.raises(_Killed):
            _run(config, resume=run.id, crash=f"{point}:1")
        with open_store(db) as store:
            after = store.get_run(run.id)
            assert (after.status, run_status(after)) == ("running", "interrupted"), point
        if n == len(NODES) - 1:  # as a run written by an earlier version: relative paths
            stored = {**run.config, "workdir": "work", "db": "work/pedagogy.db"}
            _sql(f"sqlite:///{db}", "UPDATE runs SET config = :c", c=json.dumps(stored))
            _sql(
                f"sqlite:///{db}",
                "UPDATE model_versions SET path = "
                "'work/runs/' || run_id || '/models/' || role || '-v' || number",
            )
    assert _run(config, resume=run.id).status == "completed"
    assert not (elsewhere / "work").exists()
    with open_store(db) as store:
        assert _snapshot(store, run.id) == reference[1]
        assert run_status(store.get_run(run.id)) == "completed"


def test_a_resume_that_cannot_find_its_run_folder_fails_cleanly(tmp_path: Path, monkeypatch):
    """A run stored with a relative workdir, resumed where its folder is not: one error naming
    the folders looked at, and the run is left failed with the reason, not running."""
    from pedagogy.config import load_config
    from pedagogy.memory import RunRecord
    from pedagogy.runner import run_loop

    config = _config_file(tmp_path, "lost", workdir="work", db=str(tmp_path / "p.db"))
    stored = {**load_config(config).model_dump(), "db": "p.db"}
    with open_store(tmp_path / "p.db") as store:
        store.create_run(RunRecord("lost-run", "lost", stored, 0))
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ConfigError, match="cannot find the folder of run lost-run") as err:
        asyncio.run(run_loop(load_config(config), resume="lost-run"))
    assert str(tmp_path / "work" / "runs" / "lost-run") in str(err.value)
    with open_store(tmp_path / "p.db") as store:
        run = store.get_run("lost-run")
        assert (run.status, run.lease_holder) == ("failed", None)
        assert "cannot find the folder" in (run.error or "")


# --- real processes: SIGKILL at random points, concurrent resumes ---------------------------------

_FORKSERVER = multiprocessing.get_context("forkserver")
# What every `pedagogy run` imports (~5 s of CPU each), imported once by the fork server.
_FORKSERVER.set_forkserver_preload(
    [
        "torch",
        "transformers",
        "transformers.models.llama.modeling_llama",
        "datasets",
        "peft",
        "trl",
        "pedagogy.cli",
        "pedagogy.runner",
        "pedagogy.training.sft",
    ]
)


def _cli_main(argv: list[str], cwd: str, out: str, env: dict[str, str]) -> None:
    """`pedagogy ARGV` in this (forked) process, its output into `out`."""
    import sys

    os.chdir(cwd)
    os.environ.update(env)
    fd = os.open(out, os.O_WRONLY | os.O_CREAT | os.O_APPEND)
    os.dup2(fd, 1)
    os.dup2(fd, 2)
    sys.argv = ["pedagogy", *argv]
    from pedagogy.cli import main

    main()


def _pedagogy(folder: Path, n: int, *argv: str, env: dict[str, str] | None = None):
    """Start `pedagogy ARGV` as a process of its own (forked from a server that has imported
    torch and pedagogy, so that it starts in about a second); its output goes to out-N.txt."""
    out = folder / f"out-{n}.txt"
    proc = _FORKSERVER.Process(
        target=_cli_main, args=(list(argv), str(folder), str(out), env or {})
    )
    proc.start()
    return proc, out


def _runs(db: Path, name: str) -> list[Any]:
    if not db.exists():
        return []
    try:
        with open_store(db, create=False) as store:
            return [r for r in store.list_runs() if r.name == name]
    except StoreError:  # killed while creating the file's schema
        return []


def _stage(db: Path) -> set[str]:
    """What the database's run is doing now: "training" (a job running), "promotion" (a
    candidate being evaluated). Plain SQL: polled every few milliseconds."""
    if not db.exists():
        return set()
    try:
        with closing(sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=1)) as conn:
            stage = set()
            if conn.execute("SELECT 1 FROM training_jobs WHERE status = 'running'").fetchone():
                stage.add("training")
            if conn.execute("SELECT 1 FROM model_versions WHERE status = 'candidate'").fetchone():
                stage.add("promotion")
            return stage
    except sqlite3.Error:  # no schema yet, or locked for a moment
        return set()


def _kill_when(proc: Any, trigger: str, delay: float, db: Path) -> str:
    """SIGKILL `proc` `delay` s after `trigger` ("start", "training", "promotion"); returns what
    happened: "killed" or "finished" (it ended first)."""
    started = time.monotonic()
    while proc.is_alive() and time.monotonic() - started < 240:
        if trigger == "start" or trigger in _stage(db):
            time.sleep(delay)
            if not proc.is_alive():
                break
            try:
                os.kill(proc.pid, signal.SIGKILL)
            except ProcessLookupError:  # it ended (and was reaped) after the check above
                break
            proc.join(30)
            return "killed"
        time.sleep(0.02)
    proc.join(240)
    return "finished"


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_sigkill_at_random_points_then_resume_ends_as_an_uninterrupted_run(reference, tmp_path):
    """At least 20 SIGKILLs at points chosen by a seeded RNG (some at random times, some while
    a job trains or a candidate is being evaluated for promotion) and one inside a migration,
    each followed by `pedagogy run --resume`: every run ends with the reference's rows, held-out
    numbers and weights."""
    rng = random.Random(20261129)
    db = tmp_path / "work" / "pedagogy.db"
    kills: Counter[str] = Counter()
    n, chain, migrated = 0, 0, False
    upgraded: tuple[int, int] | None = None  # the chain that lived through the downgrade
    while sum(kills.values()) < 20:
        chain += 1
        name = f"chain{chain}"
        config = _config_file(tmp_path, name)
        while True:
            n += 1
            runs = _runs(db, name)
            env: dict[str, str] = {}
            if runs and not migrated:
                # Killed inside a migration, at the first resume (of whichever chain: on a fast
                # machine a chain's first process may finish before its kill lands): the
                # database is set back to revision 0007 and the resume that upgrades it dies
                # before the upgrade commits.
                _alembic(f"sqlite:///{db}", "downgrade", "0007_call_attempts")
                upgraded = _before_upgrade(f"sqlite:///{db}", runs[0].id)
                env[crash_hook.ENV] = "migration:1"
                migrated = True
            argv = ["run", "--db", str(db), "--resume", runs[0].id] if runs else ["run", "-c"]
            if not runs:
                argv.append(str(config))
            proc, out = _pedagogy(tmp_path, n, *argv, "--quiet", env=env)
            if env:
                proc.join(240)
                assert proc.exitcode == 137, out.read_text()[-2000:]
                kills["migration"] += 1
                continue
            if sum(kills.values()) >= 20:
                proc.join(300)
                assert proc.exitcode == 0, out.read_text()[-3000:]
                break
            trigger = rng.choice(["start", "start", "start", "training", "promotion"])
            # Every phase gets its kills whatever the machine's speed: on a loaded machine a
            # kill aimed at a phase can miss it (the run ends first), and the seeded choices
            # alone once left training without one.
            missing = [t for t in ("training", "promotion") if not kills[t]]
            if missing and sum(kills.values()) >= 10:
                trigger = missing[0]
            limit = {"start": 10.0, "training": 0.8, "promotion": 0.4}[trigger]
            what = _kill_when(proc, trigger, rng.uniform(0.0, limit), db)
            if what == "finished":
                assert proc.exitcode == 0, out.read_text()[-3000:]
                break
            kills[trigger] += 1
        (run,) = _runs(db, name)
        with open_store(db) as store:
            got, want = _snapshot(store, run.id), dict(reference[1])
            if upgraded is not None:
                got["chain"], want["chain"] = _across_upgrade(
                    got["chain"], want["chain"], *upgraded
                )
                upgraded = None
            else:
                got["chain"] = _without_restarts(got["chain"])
            assert got == want, f"chain {chain}: {dict(kills)}"
            after = store.get_run(run.id)
            assert (run_status(after), after.lease_holder) == ("completed", None)
    assert kills["training"] and kills["promotion"] and kills["migration"] == 1, dict(kills)
    print(f"kills: {dict(kills)} over {chain} runs, {n} processes")


@pytest.mark.slow
def test_two_concurrent_resumes_one_is_refused(reference, tmp_path: Path):
    config = _config_file(tmp_path, "twice")
    db = tmp_path / "work" / "pedagogy.db"
    first, out = _pedagogy(
        tmp_path, 0, "run", "-c", str(config), "--quiet", env={crash_hook.ENV: "plan_round:1"}
    )
    first.join(240)
    assert first.exitcode == 137, out.read_text()[-2000:]
    (run,) = _runs(db, "twice")
    assert run_status(run) == "interrupted"  # killed: resumable at once
    a, out_a = _pedagogy(tmp_path, 1, "run", "--db", str(db), "--resume", run.id, "--quiet")
    deadline = time.monotonic() + 120
    while f":{a.pid}:" not in (_runs(db, "twice")[0].lease_holder or ""):  # the killed one's
        assert time.monotonic() < deadline and a.is_alive(), out_a.read_text()[-2000:]
        time.sleep(0.05)
    b, out_b = _pedagogy(tmp_path, 2, "run", "--db", str(db), "--resume", run.id, "--quiet")
    b.join(120)
    assert a.is_alive(), "the first resume ended before the second was refused"
    said = out_b.read_text().strip().splitlines()
    assert b.exitcode == 2 and len(said) == 1, said
    assert said[0].startswith("error: run ") and "is being run by another process" in said[0]
    assert f"pid {a.pid}" in said[0]
    a.join(300)
    assert a.exitcode == 0, out_a.read_text()[-3000:]
    with open_store(db) as store:
        assert _snapshot(store, run.id) == reference[1]


@pytest.mark.slow
def test_a_failed_job_is_trained_again_in_place_on_resume(reference, tmp_path, monkeypatch):
    """A job whose training raised (the run stops as failed) is restarted in place when the run
    is resumed: same job, same items, no second set beside them; the run then ends as the
    uninterrupted one did, plus one `retry` decision carrying the error."""
    from pedagogy.training import packed

    real, calls = packed.train_packed, []

    def fails_once(*args, **kwargs):
        calls.append(1)
        if len(calls) == 1:
            raise RuntimeError("cannot import name 'SFTTrainer'")
        return real(*args, **kwargs)

    monkeypatch.setattr(packed, "train_packed", fails_once)
    config = _config_file(tmp_path, "fails")
    with pytest.raises(Exception, match="SFTTrainer"):
        _run(config)
    db = tmp_path / "work" / "pedagogy.db"
    with open_store(db) as store:
        (run,) = store.list_runs()
        (failed,) = store.training_jobs(run.id)
        assert (run.status, failed.status) == ("failed", "failed")
        items = [i.id for i in store.dataset_items(failed.id)]
    assert _run(config, resume=run.id).status == "completed"
    with open_store(db) as store:
        snapshot = _snapshot(store, run.id)
        jobs = store.training_jobs(run.id)
        assert jobs[0].id == failed.id and [i.id for i in store.dataset_items(failed.id)] == items
        (retry,) = [d for d in store.decisions(run.id) if d.kind == "retry"]
        assert retry.subject == failed.id and "SFTTrainer" in retry.detail["error"]
    snapshot["decisions"] = [d for d in snapshot["decisions"] if d[1] != "retry"]
    # On the chain too: the retry decision, and the job's failed status and its restart.
    chain = [link for link in snapshot["chain"] if link[:3] != ("decisions", 1, "retry")]
    snapshot["chain"] = _without_restarts(chain, crashed=("failed",))
    assert snapshot == reference[1]
