"""Conformance suite for the Store protocol, run on a real SQLite file and a real PostgreSQL server."""

from __future__ import annotations

import multiprocessing
import uuid
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from dataclasses import replace
from pathlib import Path

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory

from pedagogy.backends.base import ChatRequest
from pedagogy.domains.base import Problem
from pedagogy.errors import StoreError
from pedagogy.memory import (
    CurriculumStateRecord,
    DatasetItemRecord,
    DecisionRecord,
    EpisodeRecord,
    EvaluationRecord,
    ExplanationRecord,
    ModelVersionRecord,
    RunRecord,
    SQLStore,
    Store,
    TrainingJobRecord,
    TurnRecord,
    VerdictRecord,
    open_store,
)
from pedagogy.memory.schema import metadata
from pedagogy.memory.store import MIGRATIONS


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """An unmasked URL of an empty database: a SQLite file, or a fresh PostgreSQL database."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'pedagogy.db'}"
    return request.getfixturevalue("postgres_database")


@pytest.fixture
def store(db_url: str) -> Iterator[SQLStore]:
    s = open_store(db_url)
    yield s
    s.close()


@pytest.fixture
def raw(db_url: str) -> Iterator[sa.Engine]:
    """A plain engine on the same database, for checks and tampering behind the store's back."""
    engine = sa.create_engine(db_url)
    yield engine
    engine.dispose()


def problem(i: int, level: int = 0) -> Problem:
    return Problem(
        domain="arith",
        skill="add",
        level=level,
        prompt=f"{i}+{i}=?",
        answer=str(2 * i),
        metadata={"a": i, "b": i},
    )


def make_run(store: Store, run_id: str = "run1") -> RunRecord:
    run = RunRecord(id=run_id, name="test run", config={"rounds": 2}, seed=7)
    store.create_run(run)
    return run


def episode(
    run_id: str, rnd: int, index: int, p: Problem, *, wrong_first: bool = True
) -> EpisodeRecord:
    """Attempt, (wrong: teacher explains, student re-attempts), with verdicts."""
    eid = uuid.uuid4().hex

    def turn(seq: int, agent: str, response: str, purpose: str) -> TurnRecord:
        request = ChatRequest(
            messages=[{"role": "user", "content": p.prompt}], seed=seq, problem=p, purpose=purpose
        ).to_record()
        return TurnRecord(
            seq=seq,
            agent=agent,
            backend="scripted",
            model="tiny",
            request=request,
            response=response,
            model_version="v0" if agent == "student" else None,
            prompt_tokens=10 + seq,
            completion_tokens=3,
            latency_s=0.01 * seq if seq else 0,
            cost=0.5 if agent == "teacher" else None,
            seed=seq,
            id=uuid.uuid4().hex,
        )

    if not wrong_first:
        first = turn(0, "student", f"A: {p.answer}", "attempt")
        return EpisodeRecord(
            id=eid,
            run_id=run_id,
            round=rnd,
            index=index,
            problem_id=p.id,
            arm=p.arm,
            student_version="v0",
            outcome="correct_first",
            correct_first=True,
            correct_final=True,
            seed=index,
            turns=[first],
            verdicts=[VerdictRecord(first.id, True, 1.0, p.answer)],
            decisions={"intervene": False},
        )
    first = turn(0, "student", "A: 0", "attempt")
    explain = turn(1, "teacher", f"S: {p.prompt} A: {p.answer}", "explain")
    second = turn(2, "student", f"A: {p.answer}", "attempt")
    return EpisodeRecord(
        id=eid,
        run_id=run_id,
        round=rnd,
        index=index,
        problem_id=p.id,
        arm=p.arm,
        student_version="v0",
        outcome="correct_after_explanation",
        correct_first=False,
        correct_final=True,
        explained=True,
        seed=index,
        turns=[first, explain, second],
        verdicts=[
            VerdictRecord(first.id, False, 0.0, "0", detail="wrong"),
            VerdictRecord(second.id, True, 1.0, p.answer),
        ],
        explanations=[ExplanationRecord(explain.id, "worked", 1.0, 0.25)],
        decisions={"intervene": True, "parsed": ["0", p.answer]},
    )


def batch(store: Store, run_id: str, rnd: int, n: int) -> list[EpisodeRecord]:
    problems = [problem(i) for i in range(n)]
    store.add_problems(problems)
    return [episode(run_id, rnd, i, p, wrong_first=i % 2 == 0) for i, p in enumerate(problems)]


def count(engine: sa.Engine, table: str) -> int:
    with engine.connect() as conn:
        return conn.execute(sa.text(f"SELECT COUNT(*) FROM {table}")).scalar_one()


# --- opening -----------------------------------------------------------------------------------


def test_store_satisfies_protocol_and_schema_matches_migration(store: SQLStore, raw: sa.Engine):
    assert isinstance(store, Store)
    with raw.connect() as conn:
        context = MigrationContext.configure(conn, opts={"compare_type": True})
        assert compare_metadata(context, metadata) == []
        assert context.get_current_revision() == ScriptDirectory(str(MIGRATIONS)).get_current_head()


def test_reopening_at_head_keeps_data_and_create_false_needs_schema(db_url: str, tmp_path: Path):
    with open_store(db_url) as s:
        make_run(s)
    with open_store(db_url, create=False) as s:
        assert [r.id for r in s.list_runs()] == ["run1"]
    with pytest.raises(StoreError, match="no database at"):
        open_store(tmp_path / "absent.db", create=False)
    sa.create_engine(f"sqlite:///{tmp_path / 'empty.db'}").connect().close()
    with pytest.raises(StoreError, match="no pedagogy schema"):
        open_store(str(tmp_path / "empty.db"), create=False)


def test_upgrading_a_database_with_data_keeps_it_and_its_chain(db_url: str):
    """A database at revision 0002 (turns must belong to an episode) upgrades to head in place:
    on SQLite the turns table is rebuilt under the references of verdicts and dataset items."""
    from alembic import command
    from alembic.config import Config

    with open_store(db_url) as s:
        make_run(s)
        s.record_episodes(batch(s, "run1", 0, 3))
        before = [t.id for e in s.episodes("run1", with_turns=True) for t in e.turns]
    engine = sa.create_engine(db_url)
    with engine.begin() as conn:
        config = Config()
        config.set_main_option("script_location", str(MIGRATIONS))
        config.attributes["connection"] = conn
        command.downgrade(config, "0002_decisions")
    engine.dispose()
    with open_store(db_url) as s:
        assert [t.id for e in s.episodes("run1", with_turns=True) for t in e.turns] == before
        assert s.verify_chain("run1") == []
        s.record_turns("run1", [TurnRecord(0, "generator", "x", "m", {}, "1+1=\nA:2", id="g")])
        assert [t.id for t in s.turns_outside_episodes("run1")] == ["g"]
        s.start_training_job(
            TrainingJobRecord("gjob", "run1", 1, "sft", {"role": "generator"}, None)
        )
        s.add_dataset_items([DatasetItemRecord("gjob", None, "g", "positive", "x", "1+1=\nA:2")])
        assert [i.episode_id for i in s.dataset_items("gjob")] == [None]
        if s._engine.dialect.name == "sqlite":  # the pooled connection enforces references again
            with s._engine.connect() as conn:
                assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1


def test_concurrent_opens_of_a_new_database_all_succeed(db_url: str):
    def open_close(_: int) -> str:
        with open_store(db_url) as s:
            return s.url

    with ThreadPoolExecutor(4) as pool:
        assert len(set(pool.map(open_close, range(4)))) == 1


def test_threads_racing_to_create_sqlite_files_all_succeed(tmp_path: Path):
    # Switching a new file to WAL raced with the other openers and failed with "database is
    # locked" about once in 40 files; 25 files make that failure show almost every time.
    for i in range(25):
        url = f"sqlite:///{tmp_path / f'race{i}.db'}"
        with ThreadPoolExecutor(4) as pool:
            assert list(pool.map(_open_close, [url] * 4)) == [url] * 4


def _open_close(url: str) -> str:
    with open_store(url) as s:
        return s.url


def test_processes_racing_to_create_a_sqlite_file_all_succeed(tmp_path: Path):
    url = f"sqlite:///{tmp_path / 'race.db'}"
    with ProcessPoolExecutor(4, mp_context=multiprocessing.get_context("fork")) as pool:
        assert list(pool.map(_open_close, [url] * 4)) == [url] * 4


def test_plain_path_and_memory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.chdir(tmp_path)
    with open_store("runs.db") as s:
        assert s.url == f"sqlite:///{tmp_path / 'runs.db'}"
        make_run(s)
    with sa.create_engine(f"sqlite:///{tmp_path / 'runs.db'}").connect() as conn:
        assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
    with open_store(None) as s:
        assert s.url == "sqlite://"
        make_run(s)
        assert s.get_run("run1").seed == 7
    assert sorted(p.name for p in tmp_path.iterdir() if p.suffix == ".db") == ["runs.db"]


def test_unreachable_urls_raise_store_error_with_masked_password(tmp_path: Path):
    with pytest.raises(StoreError) as err:
        open_store("postgresql://u:secret@127.0.0.1:1/x")
    msg = str(err.value)
    assert "postgresql+psycopg://u:***@127.0.0.1:1/x" in msg and "secret" not in msg
    assert "check the --db URL" in msg and "\n" not in msg
    with pytest.raises(StoreError, match="does not exist"):
        open_store(f"sqlite:///{tmp_path / 'missing' / 'p.db'}")
    with pytest.raises(StoreError, match="unsupported database URL"):
        open_store("nosuchdb://host/x")
    with pytest.raises(StoreError, match="cannot connect to sqlite"):
        (tmp_path / "junk.db").write_bytes(b"this is not a database file" * 100)
        open_store(tmp_path / "junk.db")


@pytest.mark.postgres
def test_url_attribute_masks_password(postgres_url: str):
    url = sa.make_url(postgres_url).set(password="hunter2").render_as_string(hide_password=False)
    with open_store(url) as s:  # trust auth: the password is ignored by the server
        assert "hunter2" not in s.url and ":***@" in s.url
        assert "hunter2" not in repr(s)


# --- runs and problems ---------------------------------------------------------------------------


def test_runs_crud_and_status(store: SQLStore):
    make_run(store, "a")
    make_run(store, "b")
    assert [r.id for r in store.list_runs()] == ["a", "b"]
    got = store.get_run("a")
    assert (got.name, got.config, got.seed, got.status) == ("test run", {"rounds": 2}, 7, "running")
    assert got.created_at is not None and got.created_at.tzinfo is not None
    assert got.finished_at is None
    store.set_run_status("a", "failed", error="boom")
    got = store.get_run("a")
    assert (got.status, got.error) == ("failed", "boom") and got.finished_at >= got.created_at
    store.set_run_status("a", "running")
    assert store.get_run("a").finished_at is None
    with pytest.raises(StoreError, match="'a' already exists"):
        make_run(store, "a")
    with pytest.raises(StoreError, match=r"unknown run id 'nope'.*pedagogy runs"):
        store.get_run("nope")
    with pytest.raises(StoreError, match="unknown run id 'nope'"):
        store.set_run_status("nope", "completed")


def test_problems_are_deduplicated(store: SQLStore, raw: sa.Engine):
    derived = replace(problem(9), source="teacher-refined", parent_id=problem(1).id)
    store.add_problems([problem(1), problem(2), problem(1)])
    store.add_problems([problem(2), problem(3), derived])
    assert count(raw, "problems") == 4
    got = store.get_problems([problem(1).id, derived.id, "missing"])
    assert set(got) == {problem(1).id, derived.id}
    assert got[problem(1).id] == problem(1) and got[problem(1).id].metadata == {"a": 1, "b": 1}
    assert (got[derived.id].source, got[derived.id].parent_id) == ("teacher-refined", problem(1).id)


# --- episodes ------------------------------------------------------------------------------------


def test_record_episodes_round_trip(store: SQLStore):
    make_run(store)
    eps = batch(store, "run1", 0, 4) + batch(store, "run1", 1, 2)
    store.record_episodes(eps)
    assert all(t.hash and t.episode_id == e.id for e in eps for t in e.turns)

    got = store.episodes("run1", with_turns=True)
    assert [(e.round, e.index) for e in got] == [(0, 0), (0, 1), (0, 2), (0, 3), (1, 0), (1, 1)]
    for want, have in zip(eps, got, strict=True):
        assert have.created_at is not None
        assert replace(have, created_at=None) == want
    assert got[0].decisions == {"intervene": True, "parsed": ["0", problem(0).answer]}
    assert got[0].turns[1].request["problem_id"] == problem(0).id
    assert got[0].turns[1].cost == 0.5 and got[0].turns[0].cost is None

    light = store.episodes("run1", round=1)
    assert [e.index for e in light] == [0, 1] and all(not e.turns for e in light)
    assert light[0].decisions == eps[4].decisions
    assert store.episodes("run1", round=1, with_turns=True) == got[4:]
    assert store.get_episode(eps[2].id) == got[2]
    with pytest.raises(StoreError, match="unknown episode id 'nope'"):
        store.get_episode("nope")


def test_record_episodes_is_idempotent(store: SQLStore, raw: sa.Engine):
    make_run(store)
    eps = batch(store, "run1", 0, 4)
    store.record_episodes(eps[:3])
    store.record_episodes(eps[:3])
    store.record_episodes(eps + [replace(eps[3], id="other-id")])  # same key twice in one batch
    assert count(raw, "episodes") == 4
    assert count(raw, "turns") == sum(len(e.turns) for e in eps)
    assert count(raw, "verdicts") == sum(len(e.verdicts) for e in eps)
    assert count(raw, "explanations") == 2
    assert store.done_episode_indices("run1", 0) == {0, 1, 2, 3}
    assert store.done_episode_indices("run1", 1) == set()
    assert store.verify_chain("run1") == []


def test_record_episodes_errors_write_nothing(store: SQLStore, raw: sa.Engine):
    make_run(store)
    eps = batch(store, "run1", 0, 2)
    with pytest.raises(StoreError, match="unknown run id 'ghost'"):
        store.record_episodes([eps[0], replace(eps[1], run_id="ghost")])
    orphan = replace(eps[1], problem_id="not-stored")
    with pytest.raises(StoreError, match=r"'not-stored'.*add_problems"):
        store.record_episodes([eps[0], orphan])
    dup = replace(eps[1], id=eps[0].id)
    with pytest.raises(StoreError, match="cannot record episodes"):
        store.record_episodes([eps[0], dup])
    assert count(raw, "episodes") == 0 and count(raw, "turns") == 0


def test_runs_do_not_share_episodes_or_chains(store: SQLStore):
    make_run(store, "a")
    make_run(store, "b")
    store.record_episodes(batch(store, "a", 0, 2) + batch(store, "b", 0, 3))
    assert len(store.episodes("a")) == 2 and len(store.episodes("b")) == 3
    assert store.verify_chain("a") == [] and store.verify_chain("b") == []


def test_concurrent_writers_keep_one_chain(store: SQLStore, raw: sa.Engine):
    make_run(store)
    batches = [batch(store, "run1", rnd, 5) for rnd in range(8)]
    with ThreadPoolExecutor(4) as pool:
        list(pool.map(store.record_episodes, batches + batches))
    assert count(raw, "episodes") == 40
    assert store.verify_chain("run1") == []
    # One chain, its indices shared by the tables (snapshots: the run's, problems', episodes').
    chained = ("turns", "verdicts", "explanations", "snapshots")
    with raw.connect() as conn:
        union = " UNION ALL ".join(f"SELECT chain_index FROM {t}" for t in chained)
        indices = conn.execute(sa.text(f"{union} ORDER BY chain_index"))
        assert [i for (i,) in indices] == list(range(sum(count(raw, t) for t in chained)))


def test_hash_chain_detects_tampering(store: SQLStore, raw: sa.Engine):
    make_run(store)
    store.record_episodes(batch(store, "run1", 0, 3))
    store.record_episodes(batch(store, "run1", 1, 2))
    assert store.verify_chain("run1") == []
    turns = [t for e in store.episodes("run1", with_turns=True) for t in e.turns]
    victim = turns[4]
    with raw.begin() as conn:
        conn.execute(sa.text("UPDATE turns SET response = 'A: 42' WHERE id = :i"), {"i": victim.id})
    assert store.verify_chain("run1") == [victim.id]
    # Re-hashing the edited turn moves the break to its successor.
    with raw.begin() as conn:
        conn.execute(sa.text("UPDATE turns SET hash = 'x' WHERE id = :i"), {"i": victim.id})
    assert store.verify_chain("run1") == [victim.id, turns[5].id]
    with raw.begin() as conn:
        conn.execute(sa.text("DELETE FROM verdicts WHERE turn_id = :i"), {"i": turns[-1].id})
        conn.execute(sa.text("DELETE FROM turns WHERE id = :i"), {"i": turns[-1].id})
    assert turns[-2].id in store.verify_chain("run1")
    with pytest.raises(StoreError, match="unknown run id"):
        store.verify_chain("nope")


def test_turns_outside_episodes_join_the_chain_once(store: SQLStore, raw: sa.Engine):
    make_run(store)
    store.record_episodes(batch(store, "run1", 0, 2))

    def pose(i: int) -> TurnRecord:
        request = {"messages": [{"role": "user", "content": f"pose {i}"}], "purpose": "pose"}
        return TurnRecord(
            0,
            "generator",
            "litellm",
            "gen",
            request,
            f"{i}+1=\nA:{i + 1}",
            prompt_tokens=5,
            completion_tokens=4,
            id=f"pose-{i}",
        )

    store.record_turns("run1", [pose(0), pose(1)])
    store.record_turns("run1", [pose(1), pose(2)])  # pose-1 again: skipped
    store.record_episodes(batch(store, "run1", 1, 1))
    outside = store.turns_outside_episodes("run1")
    assert [t.id for t in outside] == ["pose-0", "pose-1", "pose-2"]
    assert all(t.episode_id is None and t.agent == "generator" for t in outside)
    assert store.verify_chain("run1") == []
    assert store.token_totals("run1")["generator"]["calls"] == 3
    # episodes still read back only their own turns
    assert all(
        t.episode_id == e.id for e in store.episodes("run1", with_turns=True) for t in e.turns
    )
    with raw.begin() as conn:
        conn.execute(sa.text("UPDATE turns SET response = 'A: 9' WHERE id = 'pose-1'"))
    assert store.verify_chain("run1") == ["pose-1"]
    with pytest.raises(StoreError, match="unknown run id"):
        store.record_turns("nope", [pose(3)])


def test_turns_and_their_decisions_are_stored_together_or_not_at_all(store: SQLStore):
    make_run(store)
    call = TurnRecord(
        0, "teacher", "scripted", "t", {"purpose": "refine"}, "3+4=\nA: 7", id="ref-1"
    )

    def decision(run_id: str) -> DecisionRecord:
        return DecisionRecord(
            run_id, 2, "refine_candidate", "teacher", "p1", True, None, {"turn_id": "ref-1"}
        )

    with pytest.raises(StoreError, match="unknown run id"):
        store.record_turns("run1", [call], [decision("nope")])
    # The decisions go in first; turns that cannot be stored take them back out.
    with pytest.raises(StoreError, match="unknown run id"):
        store.record_turns("nope", [call], [decision("run1")])
    assert store.turns_outside_episodes("run1") == [] and store.decisions("run1") == []
    store.record_turns("run1", [call], [decision("run1")])
    assert [t.id for t in store.turns_outside_episodes("run1")] == ["ref-1"]
    assert [(d.kind, d.detail) for d in store.decisions("run1", 2)] == [
        ("refine_candidate", {"turn_id": "ref-1"})
    ]
    store.record_turns("run1", [], [decision("run1")])  # decisions alone are fine too
    assert len(store.decisions("run1", 2, "refine_candidate")) == 2
    assert store.verify_chain("run1") == []


def test_token_totals_per_agent(store: SQLStore):
    make_run(store)
    store.record_episodes(batch(store, "run1", 0, 3))  # episodes 0 and 2 explained
    totals = store.token_totals("run1")
    assert totals == {
        "student": {
            "prompt_tokens": 10 + 12 + 10 + 10 + 12,
            "completion_tokens": 15,
            "cost": None,  # no student turn has a known cost: unknown, not 0
            "calls": 5,
            "cost_unknown": 5,
        },
        "teacher": {
            "prompt_tokens": 22,
            "completion_tokens": 6,
            "cost": 1.0,
            "calls": 2,
            "cost_unknown": 0,
        },
    }
    make_run(store, "empty")
    assert store.token_totals("empty") == {}
    with pytest.raises(StoreError, match="unknown run id"):
        store.token_totals("nope")


# --- curriculum, training, evaluation ----------------------------------------------------------


def test_curriculum_state_upsert(store: SQLStore, raw: sa.Engine):
    make_run(store)
    store.save_curriculum_state(CurriculumStateRecord("run1", 1, {"values": [0.1], "rng": [1, 2]}))
    store.save_curriculum_state(CurriculumStateRecord("run1", 0, {"values": [0.0]}))
    store.save_curriculum_state(CurriculumStateRecord("run1", 1, {"values": [0.9]}))
    assert store.curriculum_states("run1") == [
        CurriculumStateRecord("run1", 0, {"values": [0.0]}),
        CurriculumStateRecord("run1", 1, {"values": [0.9]}),
    ]
    assert count(raw, "curriculum_states") == 2
    with pytest.raises(StoreError):
        store.save_curriculum_state(CurriculumStateRecord("nope", 0, {}))


def test_models_jobs_and_dataset_items(store: SQLStore):
    make_run(store)
    eps = batch(store, "run1", 0, 2)
    store.record_episodes(eps)
    base = ModelVersionRecord("v0", "run1", "student", 0, "/models/v0", status="base")
    store.add_model_version(base)
    job = TrainingJobRecord("job1", "run1", 0, "sft", {"lr": 2e-3}, base_version_id="v0")
    store.start_training_job(job)
    explain = eps[0].turns[1]
    refine = TurnRecord(0, "teacher", "refine", "m", {}, "Q: 1+2=\nA: 3", id="refine-turn")
    store.record_turns("run1", [refine])
    items = [
        DatasetItemRecord("job1", eps[0].id, explain.id, "positive", "p", explain.response),
        DatasetItemRecord("job1", eps[0].id, eps[0].turns[0].id, "negative", "p", "A: 0"),
        # an LLM generator's example: the teacher's refine turn, outside any episode
        DatasetItemRecord("job1", None, refine.id, "positive", "refine p", refine.response),
    ]
    store.add_dataset_items(items)
    store.add_model_version(
        ModelVersionRecord(
            "v1", "run1", "student", 1, "/models/v1", parent_id="v0", training_job_id="job1"
        )
    )
    store.finish_training_job("job1", "completed", {"loss": 0.5}, "v1")
    store.set_model_status("v1", "promoted")

    assert [v.id for v in store.model_versions("run1")] == ["v0", "v1"]
    assert store.model_versions("run1", role="generator") == []
    v1 = store.get_model_version("v1")
    assert (v1.parent_id, v1.training_job_id, v1.status) == ("v0", "job1", "promoted")
    [got] = store.training_jobs("run1")
    assert (got.status, got.metrics, got.output_version_id, got.config) == (
        "completed",
        {"loss": 0.5},
        "v1",
        {"lr": 2e-3},
    )
    assert got.finished_at is not None and got.started_at is not None
    stored = store.dataset_items("job1")
    assert [replace(i, id=None) for i in stored] == items
    assert all(isinstance(i.id, int) for i in stored) and stored[0].id < stored[1].id < stored[2].id

    with pytest.raises(StoreError, match="unknown model version 'v9'"):
        store.get_model_version("v9")
    with pytest.raises(StoreError, match="unknown model version 'v9'"):
        store.set_model_status("v9", "promoted")
    with pytest.raises(StoreError, match="unknown training job 'job9'"):
        store.finish_training_job("job9", "failed", {}, None)
    store.add_model_version(base)  # idempotent on its id (a node that ran again)
    assert [v.id for v in store.model_versions("run1")] == ["v0", "v1"]
    with pytest.raises(StoreError, match="cannot add model version 'v0b'"):  # same number
        store.add_model_version(replace(base, id="v0b"))
    with pytest.raises(StoreError, match="cannot add dataset items"):
        store.add_dataset_items([replace(items[0], turn_id="no-such-turn")])


def test_decisions_round_trip_filter_and_are_queryable_in_sql(store: SQLStore, raw: sa.Engine):
    make_run(store)
    made = [
        DecisionRecord(
            "run1", 2, "intervention", "utility", "ep-b", True, 0.7, {"rank": 0}, "ep-b"
        ),
        DecisionRecord("run1", 1, "curriculum", "bandit", "add@0", None, 0.25),
        DecisionRecord("run1", 2, "intervention", "utility", "ep-a", False, -0.1, {"rank": 1}),
    ]
    store.record_decisions(made)
    assert store.decisions("run1") == [made[1], made[0], made[2]]
    assert store.decisions("run1", round=2, kind="intervention") == [made[0], made[2]]
    assert store.decisions("run1", kind="style") == []
    with raw.connect() as conn:  # plain SQL, as an auditor would ask
        rows = conn.execute(
            sa.text("SELECT subject, value FROM decisions WHERE kind = 'intervention' AND chosen")
        ).all()
    assert [tuple(r) for r in rows] == [("ep-b", 0.7)]
    with pytest.raises(StoreError, match="nope"):
        store.record_decisions([DecisionRecord("nope", 0, "curriculum", "bandit", "x")])


def test_evaluations(store: SQLStore):
    make_run(store)
    store.add_model_version(ModelVersionRecord("v0", "run1", "student", 0, "/m", status="base"))
    evals = [
        EvaluationRecord("run1", 1, "v0", "add", 1, 50, 10),
        EvaluationRecord("run1", 0, "v0", "add", 0, 50, 40),
        EvaluationRecord("run1", 0, "v0", "add", 1, 0, 0),
    ]
    store.record_evaluations(evals)
    got = store.evaluations("run1")
    assert got == [evals[1], evals[2], evals[0]]
    assert (got[0].accuracy, got[1].accuracy) == (0.8, 0.0)
    with pytest.raises(StoreError):
        store.record_evaluations([EvaluationRecord("run1", 0, "v9", "add", 0, 1, 1)])
