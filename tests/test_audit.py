"""`pedagogy audit verify`: every chained row of a run, tampered with in each way a writer of the
database could, is reported with its row; a clean run exits 0; no secret reaches the database,
the logs, the checkpoints, the exports or the model folders.

The run under test is written through the store by the real episode graphs (scripted student and
teacher, the real calculator) into a real SQLite file, under a secret chain key."""

from __future__ import annotations

import asyncio
import os
import random
import shutil
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from unittest import mock

import pytest
import sqlalchemy as sa
from typer.testing import CliRunner

from pedagogy.agents.roles import Student, Teacher, Verifier
from pedagogy.backends.scripted import ScriptedBackend
from pedagogy.cli import app
from pedagogy.config import load_config
from pedagogy.errors import StoreError
from pedagogy.graphs.agent_episode import build_agent_episode_graph
from pedagogy.graphs.episode import Agents, build_episode_graph
from pedagogy.memory import (
    CurriculumStateRecord,
    DatasetItemRecord,
    DecisionRecord,
    EvaluationRecord,
    ModelVersionRecord,
    RunRecord,
    TrainingJobRecord,
    TurnRecord,
    open_store,
)
from pedagogy.memory.audit import AuditReport, verify_run
from pedagogy.memory.chain import KEY_ENV, link_hash
from pedagogy.memory.records import ChainLinkRecord
from pedagogy.memory.store import MIGRATIONS
from pedagogy.runner import build_domain_from
from tests.test_agent_episode import agents_for, calculating_student

KEY = "audit-key-for-the-tests"
runner = CliRunner()


def _student(request) -> str:
    """Wrong on first sight, right once an explanation is in context."""
    return f"A:{request.problem.answer}" if request.purpose == "reattempt" else "A:0"


def _episode_input(p, rnd: int, i: int, run_id: str) -> dict[str, Any]:
    return {
        "episode_id": uuid.uuid4().hex,
        "run_id": run_id,
        "round": rnd,
        "index": i,
        "seed": i,
        "problem": p,
    }


def write_run(url: str, run_id: str = "run") -> None:
    """A small run as the loop writes it: text episodes (attempt, explanation, re-attempt), agent
    episodes with tool calls, the policies' decisions, an LLM generator's turns outside episodes
    with their decisions, and a training job with its dataset items."""
    config = load_config(None)
    domain = build_domain_from(config)
    rng = random.Random(0)
    with open_store(url) as store:
        store.create_run(RunRecord(run_id, "audit", config.model_dump(), 0))
        store.add_model_version(ModelVersionRecord(f"{run_id}-v0", run_id, "student", 0, "/m"))
        text = domain.generate(rng, 3, "chain_sum", 0)
        acting = [p for p in domain.generate(rng, 30, "chain_sum", 0) if p.prompt[0] != "1"][:2]
        store.add_problems(text + acting)

        agents = Agents(
            Student(ScriptedBackend(_student)),
            Teacher(ScriptedBackend.from_domain(domain)),
            Verifier(domain),
        )
        graph = build_episode_graph(agents)
        act, _ = agents_for(domain, calculating_student)
        act_graph = build_agent_episode_graph(act)

        async def episodes():
            outs = [
                await graph.ainvoke(_episode_input(p, 1, i, run_id)) for i, p in enumerate(text)
            ]
            outs += [
                await act_graph.ainvoke(_episode_input(p, 2, i, run_id))
                for i, p in enumerate(acting)
            ]
            return [o["record"] for o in outs]

        records = asyncio.run(episodes())
        store.record_decisions(
            [
                DecisionRecord(run_id, 1, "intervention", "always", e.id, True, 0.5, {"rank": i})
                for i, e in enumerate(records[:3])
            ]
        )
        store.record_episodes(records[:3])
        store.record_episodes(records[3:])
        pose = [
            TurnRecord(0, "generator", "scripted", "gen", {"purpose": "pose"}, f"{i}+1=\nA:{i + 1}")
            for i in range(2)
        ]
        for turn in pose:
            turn.id = uuid.uuid4().hex
        store.record_turns(
            run_id,
            pose,
            [
                DecisionRecord(run_id, 2, "generator_pose", "llm", t.id, True, None, {})
                for t in pose
            ],
        )
        store.start_training_job(
            TrainingJobRecord("job1", run_id, 1, "sft", {"lr": 1e-3}, f"{run_id}-v0")
        )
        items = []
        for e in records[:3]:
            teacher = next(t for t in e.turns if t.agent == "teacher")
            items.append(
                DatasetItemRecord("job1", e.id, teacher.id, "positive", "q", teacher.response)
            )
            items.append(DatasetItemRecord("job1", e.id, e.turns[0].id, "negative", "q", "A:0"))
        store.add_dataset_items(items)
        v1 = ModelVersionRecord(f"{run_id}-v1", run_id, "student", 1, "/m/v1", f"{run_id}-v0")
        store.finish_training_job("job1", "completed", {"train_loss": 0.5}, v1.id, v1)
        store.record_evaluations(
            [
                EvaluationRecord(run_id, 1, v1.id, "chain_sum", level, 8, 5 + level)
                for level in (0, 1)
            ]
        )
        store.set_model_status(v1.id, "promoted")
        store.save_curriculum_state(CurriculumStateRecord(run_id, 1, {"p": [0.5, 0.5]}))
        store.record_decisions([DecisionRecord(run_id, 2, "promotion", "heldout", "v1", False)])


@pytest.fixture(scope="module")
def written(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The run, written once under KEY into a SQLite file; each test works on a copy."""
    db = tmp_path_factory.mktemp("audit") / "run.db"
    with mock.patch.dict(os.environ, {KEY_ENV: KEY}):
        write_run(str(db))
    return db


@pytest.fixture
def db(written: Path, tmp_path: Path) -> str:
    copy = tmp_path / "run.db"
    shutil.copy(written, copy)
    return str(copy)


@pytest.fixture
def raw(db: str) -> Iterator[sa.Engine]:
    """A plain engine on the copy: the tamperer (SQLite's foreign keys are off for it)."""
    engine = sa.create_engine(f"sqlite:///{db}")
    yield engine
    engine.dispose()


def links(url: str, run_id: str = "run") -> list[ChainLinkRecord]:
    with open_store(url, create=False) as store:
        return list(store.chain_links(run_id))


def audit(url: str, key: str | None = KEY, run_id: str = "run") -> AuditReport:
    with open_store(url, create=False) as store:
        return verify_run(store, run_id, key.encode() if key else None)


def found(report: AuditReport) -> list[tuple[str, str, Any, int | None]]:
    return [(p.kind, p.table, p.row_id, p.chain_index) for p in report.problems]


def sql(engine: sa.Engine, statement: str, **params: Any) -> None:
    with engine.begin() as conn:
        conn.execute(sa.text(statement), params)


# --- a clean run ---------------------------------------------------------------------------------


def test_every_row_of_the_run_is_one_link_of_its_keyed_chain(db: str):
    chain = links(db)
    assert [link.chain_index for link in chain] == list(range(len(chain)))
    # in write order: the run (keyed), its base version, then the decisions made before the
    # episodes were stored
    first = [
        (link.table, link.row.get("subject") if link.table == "snapshots" else None)
        for link in chain[:6]
    ]
    assert first == [("snapshots", "runs"), ("snapshots", "model_versions")] + [
        ("decisions", None)
    ] * 3 + [("turns", None)]
    assert chain[0].row["content"]["keyed"] is True
    assert (chain[-1].table, chain[-1].row["kind"]) == ("decisions", "promotion")
    tables = {link.table for link in chain}
    subjects = {link.row["subject"] for link in chain if link.table == "snapshots"}
    assert subjects == {
        "runs",
        "model_versions",
        "problems",
        "episodes",
        "training_jobs",
        "evaluations",
        "curriculum_states",
    }
    assert tables == {
        "snapshots",
        "turns",
        "tool_calls",
        "verdicts",
        "explanations",
        "decisions",
        "dataset_items",
    }
    report = audit(db)
    assert report.clean and report.keyed and report.hash_name == "HMAC-SHA256"
    assert report.links == len(chain) == report.length and report.unchecked == 0
    with open_store(db, create=False) as store:
        with mock.patch.dict(os.environ, {KEY_ENV: KEY}):
            assert store.verify_chain("run") == []
        head = store.chain_head("run")
    assert head is not None and head.keyed and head.full_from == 0
    # the key itself is nowhere in the file, and it matters: without it nothing verifies
    assert KEY.encode() not in Path(db).read_bytes()
    wrong = audit(db, key="another key")
    assert not wrong.clean and "no link verifies under this key" in wrong.notes[0]


def test_audit_verify_command_exit_codes(db: str, raw: sa.Engine):
    clean = runner.invoke(app, ["audit", "verify", "run", "--db", db], env={KEY_ENV: KEY})
    assert clean.exit_code == 0, clean.output
    assert "HMAC-SHA256" in clean.output and "clean" in clean.output
    without = runner.invoke(app, ["audit", "verify", "run", "--db", db], env={KEY_ENV: None})
    assert without.exit_code == 2 and KEY_ENV in without.output
    assert len(without.output.strip().splitlines()) == 1
    unknown = runner.invoke(app, ["audit", "verify", "nope", "--db", db], env={KEY_ENV: KEY})
    assert unknown.exit_code == 2 and "unknown run id 'nope'" in unknown.output
    verdict = next(link for link in links(db) if link.table == "verdicts")
    sql(
        raw,
        "UPDATE verdicts SET correct = :c WHERE id = :i",
        c=not verdict.row["correct"],
        i=verdict.id,
    )
    tampered = runner.invoke(app, ["audit", "verify", "run", "--db", db], env={KEY_ENV: KEY})
    assert tampered.exit_code == 1
    assert (
        "TAMPERED" in tampered.output
        and f"verdicts {verdict.id} #{verdict.chain_index}" in tampered.output
    )
    as_json = runner.invoke(
        app, ["audit", "verify", "run", "--db", db, "--json"], env={KEY_ENV: KEY}
    )
    assert as_json.exit_code == 1 and '"edited": 1' in as_json.output


def test_an_unkeyed_run_says_so_and_still_catches_edits(tmp_path: Path):
    db = str(tmp_path / "plain.db")
    with mock.patch.dict(os.environ, {KEY_ENV: ""}):
        write_run(db)
    result = runner.invoke(app, ["audit", "verify", "run", "--db", db], env={KEY_ENV: None})
    assert result.exit_code == 0 and "SHA-256, no key" in result.output
    # Given a key, a run that is not keyed fails in one line: nothing in the database tells an
    # honest unkeyed run from a keyed one re-hashed without the key (a downgrade).
    keyed = runner.invoke(app, ["audit", "verify", "run", "--db", db], env={KEY_ENV: KEY})
    assert keyed.exit_code == 1
    said = [line for line in keyed.output.splitlines() if "not-keyed " in line.lstrip()[:10]]
    assert len(said) == 1 and "written without the key" in said[0] and "unset" in said[0]
    item = next(link for link in links(db) if link.table == "dataset_items")
    engine = sa.create_engine(f"sqlite:///{db}")
    sql(engine, "UPDATE dataset_items SET completion = 'A:99' WHERE id = :i", i=item.id)
    engine.dispose()
    assert found(audit(db, key=None)) == [("edited", "dataset_items", item.id, item.chain_index)]


def test_a_run_config_is_stored_without_url_passwords(tmp_path: Path):
    config = {
        "db": "postgresql+psycopg://pedagogy:pw-canary-1@db.example:5432/runs",
        "teacher": {"api_base": "https://user:tok-canary-2@llm.example/v1", "model": "m"},
        "workdir": "runs/a@b",
    }
    path = tmp_path / "r.db"
    with open_store(path) as store:
        store.create_run(RunRecord("r", "r", config, 0))
        stored = store.get_run("r").config
    assert stored["db"] == "postgresql+psycopg://pedagogy:***@db.example:5432/runs"
    assert stored["teacher"] == {"api_base": "https://user:***@llm.example/v1", "model": "m"}
    assert stored["workdir"] == "runs/a@b"
    assert _secrets_in(tmp_path, ["pw-canary-1", "tok-canary-2"]) == []


def test_a_keyed_run_takes_no_write_without_its_key(db: str):
    with mock.patch.dict(os.environ, {KEY_ENV: ""}), open_store(db) as store:
        with pytest.raises(StoreError, match=f"chained with a secret key; set {KEY_ENV}"):
            store.record_decisions([DecisionRecord("run", 3, "curriculum", "bandit", "a")])
    with mock.patch.dict(os.environ, {KEY_ENV: KEY}), open_store(db) as store:
        store.record_decisions([DecisionRecord("run", 3, "curriculum", "bandit", "a")])
    assert audit(db).clean


# --- tampering, one kind at a time ---------------------------------------------------------------


def _first(
    chain: list[ChainLinkRecord],
    table: str,
    pick: Callable[[ChainLinkRecord], bool] = lambda _: True,
) -> ChainLinkRecord:
    return next(link for link in chain if link.table == table and pick(link))


def test_flipped_verdict(db: str, raw: sa.Engine):
    v = _first(links(db), "verdicts", lambda link: link.row["correct"])
    sql(raw, "UPDATE verdicts SET correct = :c WHERE id = :i", c=False, i=v.id)
    assert found(audit(db)) == [("edited", "verdicts", v.id, v.chain_index)]


def test_edited_turn_response(db: str, raw: sa.Engine):
    t = _first(links(db), "turns", lambda link: link.row["agent"] == "teacher")
    sql(raw, "UPDATE turns SET response = 'A: 42' WHERE id = :i", i=t.id)
    assert found(audit(db)) == [("edited", "turns", t.id, t.chain_index)]


def test_edited_tool_observation(db: str, raw: sa.Engine):
    c = _first(links(db), "tool_calls")
    sql(raw, "UPDATE tool_calls SET observation = '999' WHERE id = :i", i=c.id)
    assert found(audit(db)) == [("edited", "tool_calls", c.id, c.chain_index)]


@pytest.mark.parametrize("change", ["style = 'hint'", "budget_spent = 0.25"])
def test_edited_explanation(db: str, raw: sa.Engine, change: str):
    x = _first(links(db), "explanations")
    sql(raw, f"UPDATE explanations SET {change} WHERE id = :i", i=x.id)
    assert found(audit(db)) == [("edited", "explanations", x.id, x.chain_index)]


@pytest.mark.parametrize("change", ["chosen = :f", "detail = '{\"rank\": 7}'"])
def test_edited_decision(db: str, raw: sa.Engine, change: str):
    d = _first(links(db), "decisions", lambda link: link.row["kind"] == "intervention")
    sql(raw, f"UPDATE decisions SET {change} WHERE id = :i", i=d.id, f=False)
    assert found(audit(db)) == [("edited", "decisions", d.id, d.chain_index)]


def test_edited_dataset_item(db: str, raw: sa.Engine):
    item = _first(links(db), "dataset_items", lambda link: link.row["polarity"] == "positive")
    sql(raw, "UPDATE dataset_items SET completion = 'A: 1' WHERE id = :i", i=item.id)
    assert found(audit(db)) == [("edited", "dataset_items", item.id, item.chain_index)]


def test_deleted_turn_outside_episodes(db: str, raw: sa.Engine):
    t = _first(links(db), "turns", lambda link: link.row["agent"] == "generator")
    sql(raw, "DELETE FROM turns WHERE id = :i", i=t.id)
    report = audit(db)
    assert found(report) == [("deleted", "", None, t.chain_index)]
    assert report.unchecked == 1  # the next link's hash covers the deleted one's


def test_deleted_turn_is_named_by_the_rows_that_point_at_it(db: str, raw: sa.Engine):
    t = _first(links(db), "turns", lambda link: link.row["agent"] == "student")
    sql(raw, "DELETE FROM turns WHERE id = :i", i=t.id)  # its verdict stays behind
    assert found(audit(db)) == [("deleted", "turns", t.id, t.chain_index)]


def test_deleted_dataset_item(db: str, raw: sa.Engine):
    chain = links(db)
    item = _first(chain, "dataset_items", lambda link: link.chain_index < len(chain) - 2)
    sql(raw, "DELETE FROM dataset_items WHERE id = :i", i=item.id)
    assert found(audit(db)) == [("deleted", "", None, item.chain_index)]


def test_deleted_last_row_is_caught_by_the_head(db: str, raw: sa.Engine):
    last = links(db)[-1]
    assert last.table == "decisions"
    sql(raw, "DELETE FROM decisions WHERE id = :i", i=last.id)
    assert found(audit(db)) == [("deleted", "", None, last.chain_index)]


def _forge(raw: sa.Engine, index: int, hash_: str) -> int:
    with raw.begin() as conn:
        conn.execute(
            sa.text(
                "INSERT INTO decisions (run_id, round, kind, policy, subject, chosen, detail, "
                "chain_index, hash) VALUES ('run', 1, 'intervention', 'always', 'forged', 1, "
                "'{}', :k, :h)"
            ),
            {"k": index, "h": hash_},
        )
        return conn.execute(sa.text("SELECT max(id) FROM decisions")).scalar_one()


def test_inserted_decision_past_the_head(db: str, raw: sa.Engine):
    chain = links(db)
    forged = _forge(raw, len(chain), "f" * 64)
    assert found(audit(db)) == [("inserted", "decisions", forged, len(chain))]


def test_inserted_decision_on_a_taken_index(db: str, raw: sa.Engine):
    d = _first(links(db), "decisions")
    forged = _forge(raw, d.chain_index, d.hash)
    assert found(audit(db)) == [("inserted", "decisions", forged, d.chain_index)]


def test_inserted_decision_with_the_head_moved_on(db: str, raw: sa.Engine):
    """Appended with a plain SHA-256 link and the head updated: the key is what catches it."""
    chain = links(db)
    index = len(chain)
    row = {
        "id": 0,
        "round": 1,
        "kind": "intervention",
        "policy": "always",
        "subject": "forged",
        "chosen": True,
        "value": None,
        "detail": {},
        "episode_id": None,
    }
    forged = _forge(raw, index, "")
    row["id"] = forged
    fake = link_hash(chain[-1].hash, "decisions", row, "run", index)
    sql(raw, "UPDATE decisions SET hash = :h WHERE id = :i", h=fake, i=forged)
    sql(raw, "UPDATE chain_heads SET length = :n, last_hash = :h", n=index + 1, h=fake)
    assert found(audit(db)) == [("rechained-without-key", "decisions", forged, index)]


def test_swapped_chain_indices_are_reordered_rows(db: str, raw: sa.Engine):
    chain = links(db)
    v = _first(chain, "verdicts")
    d = _first(chain, "decisions", lambda link: link.row["kind"] == "generator_pose")
    sql(raw, "UPDATE verdicts SET chain_index = :k WHERE id = :i", k=d.chain_index, i=v.id)
    sql(raw, "UPDATE decisions SET chain_index = :k WHERE id = :i", k=v.chain_index, i=d.id)
    report = audit(db)
    assert found(report) == [
        ("reordered", "decisions", d.id, v.chain_index),
        ("reordered", "verdicts", v.id, d.chain_index),
    ]
    assert report.unchecked == 2  # the rows after each: intact, but their predecessor moved


def test_swapped_neighbours_are_reordered_rows(db: str, raw: sa.Engine):
    chain = links(db)
    i = next(k for k in range(len(chain) - 1) if chain[k].table == chain[k + 1].table == "turns")
    a, b = chain[i], chain[i + 1]
    sql(raw, "UPDATE turns SET chain_index = -5 WHERE id = :i", i=a.id)  # (run_id, index) unique
    sql(raw, "UPDATE turns SET chain_index = :k WHERE id = :i", k=a.chain_index, i=b.id)
    sql(raw, "UPDATE turns SET chain_index = :k WHERE id = :i", k=b.chain_index, i=a.id)
    assert found(audit(db)) == [
        ("reordered", "turns", b.id, a.chain_index),
        ("reordered", "turns", a.id, b.chain_index),
    ]


def test_a_chain_re_hashed_without_the_key(db: str, raw: sa.Engine):
    """The tamperer edits a verdict, then recomputes every link and the head the way the chain
    is computed, but without the key (which is not in the database)."""
    chain = links(db)
    v = _first(chain, "verdicts")
    sql(raw, "UPDATE verdicts SET correct = :c WHERE id = :i", c=not v.row["correct"], i=v.id)
    previous = ""
    with raw.begin() as conn:
        for link in links(db):
            previous = link_hash(previous, link.table, link.row, "run", link.chain_index)
            conn.execute(
                sa.text(f"UPDATE {link.table} SET hash = :h WHERE id = :i"),
                {"h": previous, "i": link.id},
            )
        conn.execute(sa.text("UPDATE chain_heads SET last_hash = :h"), {"h": previous})
    report = audit(db)
    assert {p.kind for p in report.problems} == {"rechained-without-key"}
    assert [(p.table, p.row_id) for p in report.problems] == [(x.table, x.id) for x in chain]


def test_head_edits_and_a_dropped_key_marker(db: str, raw: sa.Engine):
    chain = links(db)
    sql(raw, "UPDATE chain_heads SET length = length - 1")
    assert found(audit(db)) == [("head-mismatch", "chain_heads", "run", len(chain) - 2)]
    sql(raw, "UPDATE chain_heads SET length = length + 1, last_hash = :h", h="0" * 64)
    assert found(audit(db)) == [("head-mismatch", "chain_heads", "run", len(chain) - 1)]
    sql(raw, "UPDATE chain_heads SET last_hash = :h, keyed = :k", h=chain[-1].hash, k=False)
    assert found(audit(db)) == [("head-mismatch", "chain_heads", "run", None)]


def test_the_store_protocol_verify_chain_sees_the_new_tables(db: str, raw: sa.Engine):
    x = _first(links(db), "explanations")
    sql(raw, "UPDATE explanations SET utility = 9 WHERE id = :i", i=x.id)
    with mock.patch.dict(os.environ, {KEY_ENV: KEY}), open_store(db, create=False) as store:
        assert store.verify_chain("run") == [f"explanations:{x.id}"]


# --- on PostgreSQL, and from an older database ---------------------------------------------------


@pytest.mark.postgres
def test_tampering_is_caught_on_postgres(postgres_database: str, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv(KEY_ENV, KEY)
    write_run(postgres_database)
    assert audit(postgres_database).clean
    chain = links(postgres_database)
    v = _first(chain, "verdicts")
    item = _first(chain, "dataset_items", lambda link: link.chain_index < len(chain) - 2)
    d = _first(chain, "decisions")
    engine = sa.create_engine(postgres_database)
    sql(engine, "UPDATE verdicts SET correct = :c WHERE id = :i", c=not v.row["correct"], i=v.id)
    sql(engine, "DELETE FROM dataset_items WHERE id = :i", i=item.id)
    sql(engine, "UPDATE decisions SET chain_index = -1 WHERE id = :i", i=d.id)
    engine.dispose()
    assert found(audit(postgres_database)) == [
        ("reordered", "decisions", d.id, -1),
        ("edited", "verdicts", v.id, v.chain_index),
        ("deleted", "", None, item.chain_index),
    ]


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'old.db'}"
    return request.getfixturevalue("postgres_database")


def test_upgrading_from_0005_seals_the_rows_already_stored(db_url: str):
    """A database at 0005 (only turns and tool calls chained) upgrades in place: its turns keep
    their hashes, its verdicts, explanations, decisions and dataset items join the end of their
    run's chain, and from then on an edit of any of them is caught."""
    from alembic import command
    from alembic.config import Config

    write_run(db_url)
    engine = sa.create_engine(db_url)
    with engine.begin() as conn:
        config = Config()
        config.set_main_option("script_location", str(MIGRATIONS))
        config.attributes["connection"] = conn
        command.downgrade(config, "0005_tool_calls")
        assert "hash" not in {c["name"] for c in sa.inspect(conn).get_columns("verdicts")}
        old = dict(conn.execute(sa.text("SELECT id, hash FROM turns")).all())
        legacy = conn.execute(sa.text("SELECT count(*) FROM tool_calls")).scalar_one() + len(old)
    with open_store(db_url) as store:
        head = store.chain_head("run")
        assert head is not None and head.full_from == legacy and not head.keyed
        report = verify_run(store, "run")
        assert report.clean and report.links == head.length > legacy
        assert all(report.tables[t] for t in ("verdicts", "decisions", "dataset_items"))
        assert {
            link.id: link.hash for link in store.chain_links("run") if link.table == "turns"
        } == old
        store.record_decisions([DecisionRecord("run", 3, "curriculum", "bandit", "new")])
        assert verify_run(store, "run").clean
    chain = links(db_url)
    v = _first(chain, "verdicts")
    t = _first(chain, "turns")
    sql(engine, "UPDATE verdicts SET score = 0.5 WHERE id = :i", i=v.id)
    sql(engine, "UPDATE turns SET response = 'A: 3' WHERE id = :i", i=t.id)
    engine.dispose()
    assert found(audit(db_url, key=None)) == [
        ("edited", "turns", t.id, t.chain_index),
        ("edited", "verdicts", v.id, v.chain_index),
    ]


# --- no secret is written anywhere ---------------------------------------------------------------


def _secrets_in(path: Path, secrets: list[str]) -> list[str]:
    """Files under `path` holding any of `secrets` (as text or as hex)."""
    needles = [s.encode() for s in secrets] + [s.encode().hex().encode() for s in secrets]
    return [
        str(f)
        for f in sorted(path.rglob("*"))
        if f.is_file() and any(n in f.read_bytes() for n in needles)
    ]


def _teacher_run(quick_config, server, db: str | None = None) -> tuple[str, str, list[str]]:
    """One small run with an API teacher whose key is a canary, chained under a canary key (a
    database URL, with its password, given by --db as a user would); then audit verify and both
    exports. Returns the run id, the database and every CLI output."""
    cfg = quick_config(
        rounds=1,
        episodes={"per_round": 16, "write_batch": 8},
        teacher={
            "kind": "litellm",
            "model": "openai/teacher",
            "api_base": server.base_url,
            "api_key_env": "PEDAGOGY_TEST_CANARY_API_KEY",
        },
    )
    given = ["--db", db] if db else []
    result = runner.invoke(app, ["run", "--config", str(cfg), "--quiet", *given])
    assert result.exit_code == 0, result.output
    db = db or str(Path(cfg).parent / "work" / "pedagogy.db")
    with open_store(db, create=False) as store:
        (run,) = store.list_runs()
    out = Path(cfg).parent / "exports"
    outputs = [result.output]
    for args in (
        ["audit", "verify", run.id, "--db", db],
        ["export", run.id, "--db", db, "--out", str(out / "run.jsonl")],
        ["export", run.id, "--db", db, "--format", "hf", "--out", str(out / "hf")],
    ):
        done = runner.invoke(app, args)
        assert done.exit_code == 0, done.output
        outputs.append(done.output)
    assert "HMAC-SHA256" in outputs[1] and "clean" in outputs[1]
    return run.id, db, outputs


@pytest.mark.slow
def test_no_canary_in_the_database_logs_checkpoints_exports_or_models(
    quick_config, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    from pedagogy.testing import OpenAICompatServer
    from tests.test_api_teacher import teacher

    api_key, audit_key = f"sk-canary-{uuid.uuid4().hex}", f"audit-canary-{uuid.uuid4().hex}"
    monkeypatch.setenv("PEDAGOGY_TEST_CANARY_API_KEY", api_key)
    monkeypatch.setenv(KEY_ENV, audit_key)
    with OpenAICompatServer(teacher) as server:
        run_id, db, outputs = _teacher_run(quick_config, server)
        used = [h for h in server.headers if api_key in h.get("authorization", "")]
    assert used, "the canary API key never reached the server: the test proves nothing"
    work = tmp_path / "work"
    assert {p.name for p in work.rglob("*")} >= {"pedagogy.db", "checkpoints.sqlite", "models"}
    assert _secrets_in(tmp_path, [api_key, audit_key]) == []
    assert not any(secret in text for text in outputs for secret in (api_key, audit_key))
    with open_store(db, create=False) as store:
        head = store.chain_head(run_id)
    assert head is not None and head.keyed  # the marker, not the key


@pytest.mark.slow
@pytest.mark.postgres
def test_no_canary_password_in_postgres_or_the_run_folder(
    quick_config, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, postgres_database: str
):
    from sqlalchemy.engine import make_url

    from pedagogy.testing import OpenAICompatServer
    from tests.test_api_teacher import teacher

    password, api_key = f"pw-canary-{uuid.uuid4().hex}", f"sk-canary-{uuid.uuid4().hex}"
    audit_key = f"audit-canary-{uuid.uuid4().hex}"
    monkeypatch.setenv("PEDAGOGY_TEST_CANARY_API_KEY", api_key)
    monkeypatch.setenv(KEY_ENV, audit_key)
    url = make_url(postgres_database).set(password=password).render_as_string(hide_password=False)
    with OpenAICompatServer(teacher) as server:
        run_id, _, outputs = _teacher_run(quick_config, server, url)
    secrets = [password, api_key, audit_key]
    engine = sa.create_engine(postgres_database)
    with engine.connect() as conn:
        stored = conn.execute(sa.text("SELECT config FROM runs")).scalar_one()
        tables = (
            conn.execute(sa.text("SELECT tablename FROM pg_tables WHERE schemaname = 'public'"))
            .scalars()
            .all()
        )
        assert {"runs", "turns", "checkpoints"} <= set(tables)
        leaks = [
            t
            for t in tables
            for (text,) in conn.execute(sa.text(f'SELECT t::text FROM "{t}" t'))
            if any(s in text or s.encode().hex() in text for s in secrets)
        ]
    engine.dispose()
    assert leaks == []
    assert stored["db"] == make_url(url).render_as_string(hide_password=True)  # "***"
    assert _secrets_in(tmp_path, secrets) == []
    assert not any(s in text for text in outputs for s in secrets)


# --- rows chained as snapshots (migration 0009) --------------------------------------------------


def test_an_edited_evaluation_is_named_by_row_and_field(db: str, raw: sa.Engine):
    sql(raw, "UPDATE evaluations SET correct = 8 WHERE level = 1")
    report = audit(db)
    assert [(p.kind, p.table) for p in report.problems] == [("edited", "evaluations")]
    line = report.problems[0].line()
    assert "(round 1, chain_sum@1, version run-v1) field correct (chained 6, stored 8) changed" in (
        line
    )


def test_a_status_change_is_a_link_of_its_own(db: str, raw: sa.Engine):
    copies = [
        link.row["content"]["status"]
        for link in links(db)
        if link.table == "snapshots" and link.row["subject_id"] == "run-v1"
    ]
    assert copies == ["candidate", "promoted"]
    sql(raw, "UPDATE model_versions SET status = 'rolled_back' WHERE id = 'run-v1'")
    assert [p.line().split(":", 1)[1] for p in audit(db).problems] == [
        " (student v1) field status (chained 'promoted', stored 'rolled_back') changed"
    ]


def test_upgrading_to_0009_chains_the_rows_already_stored(db_url: str):
    """A run written at revision 0008 (no snapshots) gets its outcome rows appended to its chain
    by the upgrade, which says so; from then on an edit of them is caught."""
    from tests.test_idempotent import _alembic

    write_run(db_url)
    _alembic(db_url, "downgrade", "0008_natural_keys")
    assert "snapshots" not in sa.inspect(sa.create_engine(db_url)).get_table_names()
    with pytest.warns(UserWarning, match="migration 0009 chained the outcome rows of 1 run"):
        open_store(db_url).close()
    report = audit(db_url, key=None)
    assert report.clean, [p.line() for p in report.problems]
    # the run, 5 problems, 5 episodes, 2 versions, 1 job, 2 evaluations, 1 curriculum state
    assert report.tables["snapshots"] == 17
    engine = sa.create_engine(db_url)
    sql(engine, "UPDATE runs SET seed = 7")
    engine.dispose()
    assert [(p.kind, p.table, p.detail) for p in audit(db_url, key=None).problems] == [
        ("edited", "runs", "(the run) field seed (chained 0, stored 7) changed")
    ]
