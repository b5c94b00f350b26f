"""The tamper suite: one kind of tampering per test, each checked the way a user checks a run
(`pedagogy audit verify RUN`), each with the verdict the README's table promises.

Verdicts:
- caught: verify exits 1 and one line names what changed (table, row, field or index).
- key: a run written without PEDAGOGY_AUDIT_KEY verifies clean (exit 0): the tamperer used the
  chain's own code, which needs no key; the same tampering of a keyed run exits 1.
- anchor: verifies clean even with the key; exits 1 with `--anchor` (the run folder's anchors).
- key+anchor: caught with the key; on a run without one, only by the anchor.
- note: not tampering (a model folder moved away): exit 0 with a note saying what was not checked.

The database holds three runs, built once per backend: `keyed` and `plain`, real two-round runs of
the loop through the command line (tiny student trained two steps a round, so model versions have
weight files; anchors in their run folders), under a key and without one; and `agents` (keyed),
written through the store by the real episode graphs: text and agent episodes with tool calls,
a training job with dataset items, and a turn whose call needed two attempts. Each test tampers
with its own copy of the database with plain SQL (and, to re-hash, the chain's code, no key).
"""

from __future__ import annotations

import json
import os
import sqlite3
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from unittest import mock

import pytest
import sqlalchemy as sa
import yaml
from typer.testing import CliRunner

from pedagogy.cli import app
from pedagogy.memory import open_store, schema
from pedagogy.memory.anchor import FILENAME
from pedagogy.memory.chain import KEY_ENV, link_hash
from pedagogy.memory.records import CallAttemptRecord, ChainLinkRecord, TurnRecord
from tests.conftest import QUICK
from tests.test_audit import write_run

pytestmark = pytest.mark.slow
KEY = "tamper-suite-key"
runner = CliRunner()


# --- the runs, built once per backend ------------------------------------------------------------


@dataclass
class Built:
    """The database with the three runs, as written."""

    backend: str
    url: str
    runs: dict[str, str]
    """keyed | plain | agents -> run id."""
    keys: dict[str, str | None]
    """Run id -> the key it was written with."""
    anchors: dict[str, Path]
    """Run id -> its run folder's anchors.jsonl (CLI runs only)."""
    chains: dict[str, list[ChainLinkRecord]]
    """Run id -> its links as written."""


def _cli_run(folder: Path, name: str, db: str, key: str | None) -> None:
    data = json.loads(json.dumps(QUICK))
    data.update(name=name, rounds=2, workdir=str(folder / "work"), db=db)
    data["episodes"] = {"per_round": 4, "write_batch": 4}
    data["training"] = {"max_steps": 2, "batch_size": 4}
    data["evaluation"] = {"heldout_per_arm": 2, "patience": None}
    config = folder / f"{name}.yaml"
    config.write_text(yaml.safe_dump(data))
    env = {k: v for k, v in os.environ.items() if k != KEY_ENV}
    if key:
        env[KEY_ENV] = key
    with mock.patch.dict(os.environ, env, clear=True):
        done = runner.invoke(app, ["run", "--config", str(config), "--quiet", "--db", db])
    assert done.exit_code == 0, done.output


def _agents_run(url: str, run_id: str) -> None:
    """test_audit's run (tool calls, dataset items), plus a call that took two attempts."""
    with mock.patch.dict(os.environ, {KEY_ENV: KEY}):
        write_run(url, run_id)
        turn = TurnRecord(0, "generator", "litellm", "gen", {"purpose": "pose"}, "2+2=\nA:4")
        turn.id = uuid.uuid4().hex
        turn.attempts = [
            CallAttemptRecord(0, "openai/gen@http://a", 503, "service unavailable", 0.2),
            CallAttemptRecord(1, "openai/gen@http://b", 200, None, 0.3),
        ]
        with open_store(url) as store:
            store.record_turns(run_id, [turn])


def _build(folder: Path, backend: str, url: str) -> Built:
    _cli_run(folder, "keyed", url, KEY)
    _cli_run(folder, "plain", url, None)
    with open_store(url, create=False) as store:
        by_name = {run.name: run.id for run in store.list_runs()}
    runs = {"keyed": by_name["keyed"], "plain": by_name["plain"], "agents": "agents"}
    _agents_run(url, runs["agents"])
    with open_store(url, create=False) as store:
        chains = {r: list(store.chain_links(r)) for r in runs.values()}
    return Built(
        backend,
        url,
        runs,
        keys={runs["keyed"]: KEY, runs["plain"]: None, runs["agents"]: KEY},
        anchors={
            runs[n]: folder / "work" / "runs" / runs[n] / FILENAME for n in ("keyed", "plain")
        },
        chains=chains,
    )


@pytest.fixture(
    scope="module", params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]
)
def built(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Built]:
    folder = tmp_path_factory.mktemp(f"tamper-{request.param}")
    if request.param == "sqlite":
        yield _build(folder, "sqlite", str(folder / "pedagogy.db"))
        return
    import psycopg
    from sqlalchemy.engine import make_url

    url = make_url(request.getfixturevalue("postgres_url"))
    admin = url.set(drivername="postgresql").render_as_string(hide_password=False)
    name = f"tamper_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(admin, autocommit=True, connect_timeout=10) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    built = _build(folder, "postgres", url.set(database=name).render_as_string(hide_password=False))
    # a template must have no session: close what the runs' engines left open in this process
    with psycopg.connect(admin, autocommit=True, connect_timeout=10) as conn:
        conn.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s",
            (name,),
        )
    yield built
    with psycopg.connect(admin, autocommit=True, connect_timeout=10) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def copy(built: Built, tmp_path: Path) -> Iterator[str]:
    """A copy of the database for one test to tamper with: a SQLite backup, or a PostgreSQL
    database made from the built one as its template."""
    if built.backend == "sqlite":
        path = tmp_path / "copy.db"
        with sqlite3.connect(built.url) as source, sqlite3.connect(path) as target:
            source.backup(target)
        yield str(path)
        return
    import psycopg
    from sqlalchemy.engine import make_url

    url = make_url(built.url)
    admin = url.set(drivername="postgresql", database="postgres").render_as_string(
        hide_password=False
    )
    name = f"t_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(admin, autocommit=True, connect_timeout=10) as conn:
        conn.execute(f'CREATE DATABASE "{name}" TEMPLATE "{url.database}"')
    try:
        yield url.set(database=name).render_as_string(hide_password=False)
    finally:
        with psycopg.connect(admin, autocommit=True, connect_timeout=10) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


# --- the tamperer ----------------------------------------------------------------------------------


@dataclass
class Tamper:
    """A writer of one copy of the database, holding one run's links as written."""

    engine: sa.Engine
    url: str
    name: str
    """keyed | plain | agents"""
    run: str
    chain: list[ChainLinkRecord]
    undo: list[Callable[[], None]] = field(default_factory=list)
    """Restores files outside the database (shared by every copy) after the test."""

    def sql(self, statement: str, **params: Any) -> Any:
        with self.engine.begin() as conn:
            result = conn.execute(sa.text(statement), params)
            return result.all() if result.returns_rows else None

    def first(
        self, table: str, pick: Callable[[ChainLinkRecord], bool] = lambda _: True
    ) -> ChainLinkRecord:
        return next(link for link in self.chain if link.table == table and pick(link))

    def snapshot(self, subject: str, pick: Callable[[dict[str, Any]], bool] = lambda _: True):
        """The last chained copy of a row of `subject` that `pick` accepts (its content)."""
        copies = [
            link.row["content"]
            for link in self.chain
            if link.table == "snapshots" and link.row["subject"] == subject
        ]
        return [c for c in copies if pick(c)][-1]

    def stored(self) -> list[ChainLinkRecord]:
        """The run's links as they are now in the copy."""
        with open_store(self.url, create=False) as store:
            return list(store.chain_links(self.run))

    def forge(self, table: str, like: Any, **changes: Any) -> Any:
        """Insert a copy of row `like` of `table` with `changes`; returns the new row's id."""
        t = schema.metadata.tables[table]
        with self.engine.begin() as conn:
            row = dict(conn.execute(sa.select(t).where(t.c.id == like)).one()._mapping)
            if isinstance(row["id"], int):
                del row["id"]
            else:
                row["id"] = "forged-" + uuid.uuid4().hex[:8]
            row.update(changes)
            result = conn.execute(sa.insert(t).values(**row))
            return row.get("id", result.inserted_primary_key[0])

    def rehash(self) -> str:
        """Recompute every link and the head with the chain's own code, without a key."""
        previous = ""
        with self.engine.begin() as conn:
            for link in self.stored():
                previous = link_hash(previous, link.table, link.row, self.run, link.chain_index)
                conn.execute(
                    sa.text(f"UPDATE {link.table} SET hash = :h WHERE id = :i"),
                    {"h": previous, "i": link.id},
                )
            conn.execute(
                sa.text("UPDATE chain_heads SET last_hash = :h WHERE run_id = :r"),
                {"h": previous, "r": self.run},
            )
        return previous


def _engine(built: Built, url: str) -> sa.Engine:
    if built.backend == "sqlite":
        return sa.create_engine(f"sqlite:///{url}")  # foreign keys off: the tamperer's choice
    engine = sa.create_engine(url)

    @sa.event.listens_for(engine, "connect")
    def _no_foreign_keys(conn: Any, _: Any) -> None:  # a superuser can turn them off too
        with conn.cursor() as cursor:
            cursor.execute("SET session_replication_role = replica")

    return engine


@dataclass
class Verify:
    exit_code: int
    output: str

    def lines(self, *says: str) -> list[str]:
        """Lines naming every one of `says`."""
        return [line for line in self.output.splitlines() if all(s in line for s in says)]


def verify(built: Built, url: str, run: str, *extra: str, key: str | None = "") -> Verify:
    """`pedagogy audit verify RUN --db URL`, with the run's key in the environment (or `key`)."""
    key = built.keys[run] if key == "" else key
    done = runner.invoke(app, ["audit", "verify", run, "--db", url, *extra], env={KEY_ENV: key})
    return Verify(done.exit_code, done.output)


# --- the kinds -------------------------------------------------------------------------------------


@dataclass
class Kind:
    name: str
    runs: tuple[str, ...]
    """Which runs it is done to: keyed, plain, agents."""
    tamper: Callable[[Tamper], Any]
    verdict: str
    """caught | key | anchor | key+anchor | note"""
    says: Callable[[Tamper, Any], list[str]]
    """What the line that catches it (or the note) holds, given the tamper's result."""


def _edit(table: str, column: str, value: Any, pick=lambda _: True):
    def tamper(t: Tamper) -> ChainLinkRecord:
        link = t.first(table, pick)
        t.sql(f"UPDATE {table} SET {column} = :v WHERE id = :i", v=value, i=link.id)
        return link

    return tamper


def _edited(table: str):
    return lambda t, link: ["edited", f"{table} {link.id} #{link.chain_index}"]


def _delete(table: str, pick=lambda _: True):
    def tamper(t: Tamper) -> ChainLinkRecord:
        link = t.first(table, pick)
        t.sql(f"DELETE FROM {table} WHERE id = :i", i=link.id)
        return link

    return tamper


def _deleted(t: Tamper, link: ChainLinkRecord) -> list[str]:
    return ["deleted", f"#{link.chain_index}: no row holds chain index {link.chain_index}"]


def _insert_past_head(table: str, **changes: Any):
    def tamper(t: Tamper) -> Any:
        index = len(t.chain) + 3
        return t.forge(table, t.first(table).id, chain_index=index, hash="0" * 64, **changes)

    return tamper


def _insert_on_taken_index(table: str):
    def tamper(t: Tamper) -> Any:
        taken = next(link for link in t.chain if link.table != table)
        return t.forge(table, t.first(table).id, chain_index=taken.chain_index, hash=taken.hash)

    return tamper


def _inserted(table: str):
    return lambda t, forged: ["inserted", f"{table} {forged} #"]


def _move(table: str, pick=lambda _: True):
    def tamper(t: Tamper) -> ChainLinkRecord:
        link = t.first(table, pick)
        t.sql(f"UPDATE {table} SET chain_index = -1 WHERE id = :i", i=link.id)
        return link

    return tamper


def _moved(table: str):
    return lambda t, link: [
        "reordered",
        f"{table} {link.id} #-1: its hash fits chain index {link.chain_index}, not -1",
    ]


def _repoint(table: str, column: str, to: str, pick=lambda _: True, **also: Any):
    """Point a row of `table` elsewhere: `column` set to what query `to` gives (:r is the run, :v
    the column's value as written), and the columns in `also` (a natural key kept unique)."""

    def tamper(t: Tamper) -> ChainLinkRecord:
        link = t.first(table, pick)
        changes = dict(also, **{column: t.sql(to, r=t.run, v=link.row[column])[0][0]})
        sets = ", ".join(f"{c} = :{c}" for c in changes)
        t.sql(f"UPDATE {table} SET {sets} WHERE id = :i", i=link.id, **changes)
        return link

    return tamper


_ANOTHER_TURN = "SELECT id FROM turns WHERE run_id = :r AND id != :v ORDER BY chain_index"
_ANOTHER_JOB = "SELECT id FROM training_jobs WHERE run_id = :r AND id != :v ORDER BY id"
_ANOTHER_RUNS_JOB = "SELECT id FROM training_jobs WHERE run_id != :r ORDER BY id"
_ANOTHER_RUNS_EPISODE = "SELECT id FROM episodes WHERE run_id != :r ORDER BY id"
_ANOTHER_RUN = "SELECT id FROM runs WHERE id != :r ORDER BY id"


def _moved_out(table: str, column: str):
    """The row is no longer listed with the run's links: its index is a gap, named by the row
    still stored there, whose hash the next link was chained to (or the head ends on)."""
    return lambda t, link: [
        "edited",
        f"{table} {link.id} #{link.chain_index}: it was moved out of the run: its {column} ",
    ]


def _swap_turns(t: Tamper) -> tuple[ChainLinkRecord, ChainLinkRecord]:
    chain = t.chain
    i = next(k for k in range(len(chain) - 1) if chain[k].table == chain[k + 1].table == "turns")
    a, b = chain[i], chain[i + 1]
    t.sql("UPDATE turns SET chain_index = -5 WHERE id = :i", i=a.id)  # (run, index) is unique
    t.sql("UPDATE turns SET chain_index = :k WHERE id = :i", k=a.chain_index, i=b.id)
    t.sql("UPDATE turns SET chain_index = :k WHERE id = :i", k=b.chain_index, i=a.id)
    return a, b


def _field(table: str, column: str, sql_value: str, where: str = "1 = 1"):
    """Edit a snapshotted row's column in SQL (`sql_value` is an SQL expression)."""

    def tamper(t: Tamper) -> Any:
        run_col = "id" if table == "runs" else "run_id"
        rows = t.sql(f"SELECT id FROM {table} WHERE {run_col} = :r AND {where}", r=t.run)
        row_id = sorted(r[0] for r in rows)[0]
        t.sql(f"UPDATE {table} SET {column} = {sql_value} WHERE id = :i", i=row_id)
        return row_id

    return tamper


def _field_changed(table: str, column: str):
    return lambda t, row_id: ["edited", f"{table} {row_id}", f"field {column} (chained "]


def _problem_answer(t: Tamper) -> str:
    problem = t.snapshot("problems")
    t.sql("UPDATE problems SET answer = :a WHERE id = :i", a="-1", i=problem["id"])
    return problem["id"]


def _delete_evaluation(t: Tamper) -> Any:
    evaluation = t.snapshot("evaluations")
    t.sql("DELETE FROM evaluations WHERE id = :i", i=evaluation["id"])
    return evaluation["id"]


def _forge_episode(t: Tamper) -> Any:
    episode = t.snapshot("episodes")
    return t.forge("episodes", episode["id"], index=99, outcome="solved_first")


def _version(t: Tamper, number: int = 1) -> dict[str, Any]:
    return t.snapshot("model_versions", lambda c: c["number"] == number and c["role"] == "student")


def _replace_weight_file(t: Tamper) -> tuple[Any, str]:
    version = _version(t)
    name = sorted(version["files"])[0]
    path = Path(version["path"]) / name
    before = path.read_bytes()
    t.undo.append(lambda: path.write_bytes(before))
    path.write_bytes(before + b" ")
    return version["id"], name


def _add_weight_file(t: Tamper) -> tuple[Any, str]:
    version = _version(t)
    path = Path(version["path"]) / "extra.safetensors"
    t.undo.append(lambda: path.unlink())
    path.write_bytes(b"not the trained weights")
    return version["id"], path.name


def _move_model_folder(t: Tamper) -> Any:
    version = _version(t, 2)
    folder = Path(version["path"])
    away = folder.with_name(folder.name + ".moved")
    folder.rename(away)
    t.undo.append(lambda: away.rename(folder))
    return version["id"]


def _append(t: Tamper) -> Any:
    """A decision appended with a well-formed link (no key), the head moved on to it."""
    chain = t.stored()
    index = len(chain)
    forged = t.forge("decisions", t.first("decisions").id, subject="forged", chain_index=index)
    row = next(link.row for link in t.stored() if link.table == "decisions" and link.id == forged)
    fake = link_hash(chain[-1].hash, "decisions", row, t.run, index)
    t.sql("UPDATE decisions SET hash = :h WHERE id = :i", h=fake, i=forged)
    t.sql(
        "UPDATE chain_heads SET length = :n, last_hash = :h WHERE run_id = :r",
        n=index + 1,
        h=fake,
        r=t.run,
    )
    return forged


def _cut(t: Tamper, n: int = 3) -> int:
    """The last `n` links removed, the head moved back to the link before them, and the rows
    they were copies of put back as the chain had them before (a version's promotion undone, an
    evaluation deleted): a well-formed shorter chain."""
    keep, cut = t.chain[:-n], t.chain[-n:]
    for link in cut:
        if link.table != "snapshots":
            t.sql(f"DELETE FROM {link.table} WHERE id = :i", i=link.id)
            continue
        t.sql("DELETE FROM snapshots WHERE id = :i", i=link.id)
        subject, row_id, now = (link.row[k] for k in ("subject", "subject_id", "content"))
        earlier = [
            x.row["content"]
            for x in keep
            if x.table == "snapshots"
            and (x.row["subject"], x.row["subject_id"]) == (subject, row_id)
        ]
        table = schema.metadata.tables[subject]
        with t.engine.begin() as conn:
            where = table.c.id == now["id"]
            if not earlier:
                conn.execute(sa.delete(table).where(where))
                continue
            back = {c: v for c, v in earlier[-1].items() if now.get(c) != v}
            conn.execute(sa.update(table).where(where).values(**back))
    t.sql(
        "UPDATE chain_heads SET length = :n, last_hash = :h WHERE run_id = :r",
        n=len(keep),
        h=keep[-1].hash,
        r=t.run,
    )
    return len(t.chain) - 1


def _rehash_after_edit(t: Tamper) -> ChainLinkRecord:
    v = t.first("verdicts")
    t.sql("UPDATE verdicts SET correct = :c WHERE id = :i", c=not v.row["correct"], i=v.id)
    t.rehash()
    return v


def _downgrade(first_link_too: bool):
    def tamper(t: Tamper) -> None:
        t.sql("UPDATE chain_heads SET keyed = :k WHERE run_id = :r", k=False, r=t.run)
        if first_link_too:
            first = t.chain[0]
            content = dict(first.row["content"], keyed=False)
            table = schema.metadata.tables["snapshots"]
            with t.engine.begin() as conn:
                conn.execute(sa.update(table).where(table.c.id == first.id).values(content=content))
        t.rehash()

    return tamper


def _head_short(t: Tamper) -> None:
    t.sql("UPDATE chain_heads SET length = length - 1 WHERE run_id = :r", r=t.run)


def _is_teacher(link: ChainLinkRecord) -> bool:
    return link.row["agent"] == "teacher"


KINDS = [
    # the rows that are links themselves: edited, deleted, inserted, reordered
    Kind("turn-edited", ("keyed", "plain"), _edit("turns", "response", "A:42", _is_teacher),
         "caught", _edited("turns")),
    Kind("turn-deleted", ("keyed",), _delete("turns", _is_teacher), "caught",
         lambda t, link: [
            "deleted",
            f"turns {link.id} #{link.chain_index}",
            f"rows still refer to turn {link.id}",
        ]),
    Kind("turns-swapped", ("keyed",), _swap_turns, "caught",
         lambda t, ab: ["reordered", f"turns {ab[1].id} #{ab[0].chain_index}"]),
    Kind("turn-inserted", ("keyed",), _insert_past_head("turns"), "caught", _inserted("turns")),
    Kind("tool-call-edited", ("agents",), _edit("tool_calls", "observation", "999"), "caught",
         _edited("tool_calls")),
    Kind("tool-call-deleted", ("agents",), _delete("tool_calls"), "caught", _deleted),
    Kind("tool-call-moved", ("agents",), _move("tool_calls"), "caught", _moved("tool_calls")),
    Kind("tool-call-inserted", ("agents",), _insert_on_taken_index("tool_calls"), "caught",
         _inserted("tool_calls")),
    Kind("verdict-flipped", ("keyed", "plain"), _edit("verdicts", "correct", True,
         lambda link: not link.row["correct"]), "caught", _edited("verdicts")),
    Kind("verdict-deleted", ("keyed",), _delete("verdicts"), "caught", _deleted),
    Kind("verdict-inserted", ("keyed",), _insert_on_taken_index("verdicts"), "caught",
         _inserted("verdicts")),
    Kind("verdict-to-another-run", ("keyed",), _repoint("verdicts", "episode_id",
         _ANOTHER_RUNS_EPISODE), "caught", _moved_out("verdicts", "episode_id")),
    Kind("explanation-edited", ("keyed",), _edit("explanations", "style", "hint"), "caught",
         _edited("explanations")),
    Kind("explanation-deleted", ("keyed",), _delete("explanations"), "caught", _deleted),
    Kind("decision-edited", ("keyed", "plain"), _edit("decisions", "value", 123.0), "caught",
         _edited("decisions")),
    Kind("decision-inserted", ("keyed",), _insert_on_taken_index("decisions"), "caught",
         _inserted("decisions")),
    Kind("decision-moved", ("keyed",), _move("decisions"), "caught", _moved("decisions")),
    Kind("dataset-item-edited", ("keyed",), _edit("dataset_items", "completion", "A:7"),
         "caught", _edited("dataset_items")),
    Kind("dataset-item-deleted", ("keyed",), _delete("dataset_items"), "caught", _deleted),
    Kind("dataset-item-inserted", ("keyed",), _insert_past_head("dataset_items", part=99), "caught",
         _inserted("dataset_items")),
    Kind("dataset-item-moved", ("keyed",), _move("dataset_items"), "caught",
         _moved("dataset_items")),
    Kind("dataset-item-to-another-job", ("keyed",), _repoint("dataset_items", "job_id",
         _ANOTHER_JOB, part=7), "caught", _edited("dataset_items")),
    Kind("dataset-item-to-another-run", ("keyed",), _repoint("dataset_items", "job_id",
         _ANOTHER_RUNS_JOB), "caught", _moved_out("dataset_items", "job_id")),
    Kind("call-attempt-edited", ("agents",), _edit("call_attempts", "status", 200), "caught",
         _edited("call_attempts")),
    Kind("call-attempt-deleted", ("agents",), _delete("call_attempts"), "caught", _deleted),
    Kind("call-attempt-inserted", ("agents",), _insert_past_head("call_attempts", n=2), "caught",
         _inserted("call_attempts")),
    Kind("call-attempt-moved", ("agents",), _move("call_attempts"), "caught",
         _moved("call_attempts")),
    Kind("call-attempt-to-another-turn", ("agents",), _repoint("call_attempts", "turn_id",
         _ANOTHER_TURN), "caught", _edited("call_attempts")),
    Kind("call-attempt-to-another-run", ("agents",), _repoint("call_attempts", "run_id",
         _ANOTHER_RUN, lambda link: link.row["n"] == 1), "caught",  # the last link: the head
         _moved_out("call_attempts", "run_id")),
    Kind("snapshot-edited", ("keyed",), _edit("snapshots", "subject_id", "another"), "caught",
         _edited("snapshots")),
    Kind("snapshot-deleted", ("keyed",), _delete("snapshots", lambda link: link.chain_index > 0),
         "caught", _deleted),
    # the rows chained as snapshots: the field that changed is named
    Kind("evaluation-numbers", ("keyed", "plain"), _field("evaluations", "correct", "n + 1"),
         "caught", _field_changed("evaluations", "correct")),
    Kind("evaluation-deleted", ("keyed",), _delete_evaluation, "caught",
         lambda t, row_id: ["deleted", f"evaluations {row_id} #", "its row is gone"]),
    Kind("model-version-status", ("keyed",), _field("model_versions", "status", "'rolled_back'",
         "number = 2"), "caught", _field_changed("model_versions", "status")),
    Kind("episode-outcome", ("keyed",), _field("episodes", "outcome", "'forged'"),
         "caught", _field_changed("episodes", "outcome")),
    Kind("episode-arm", ("keyed",), _field("episodes", "arm", "'forged@9'"), "caught",
         _field_changed("episodes", "arm")),
    Kind("episode-student-version", ("keyed",), _field("episodes", "student_version",
         "'forged-version'"), "caught", _field_changed("episodes", "student_version")),
    Kind("episode-inserted", ("keyed",), _forge_episode, "caught",
         lambda t, row_id: ["inserted", f"episodes {row_id}", "is not on the chain"]),
    Kind("curriculum-state", ("keyed",), _field("curriculum_states", "state", "'{}'"), "caught",
         _field_changed("curriculum_states", "state")),
    Kind("training-job-metrics", ("keyed",), _field("training_jobs", "metrics",
         "'{\"train_loss\": 0.01}'"), "caught", _field_changed("training_jobs", "metrics")),
    Kind("training-job-status", ("keyed",), _field("training_jobs", "status", "'failed'"),
         "caught", _field_changed("training_jobs", "status")),
    Kind("problem-answer", ("keyed",), _problem_answer, "caught",
         lambda t, row_id: ["edited", f"problems {row_id}", "field answer (chained "]),
    Kind("run-config", ("keyed", "plain"), _field("runs", "config", "'{\"rounds\": 9}'"),
         "caught", _field_changed("runs", "config")),
    Kind("run-seed", ("keyed",), _field("runs", "seed", "seed + 1"), "caught",
         _field_changed("runs", "seed")),
    Kind("weight-file-replaced", ("keyed",), _replace_weight_file, "caught",
         lambda t, r: ["edited", f"model_versions {r[0]}", f"weight file {r[1]} was replaced"]),
    Kind("weight-file-added", ("keyed",), _add_weight_file, "caught",
         lambda t, r: ["edited", f"model_versions {r[0]}", f"weight file {r[1]} was added"]),
    Kind("model-folder-moved", ("keyed",), _move_model_folder, "note",
         lambda t, version: ["note:", f"model version {version}", "is missing"]),
    # the chain as a whole
    Kind("head-short", ("keyed", "plain"), _head_short, "caught",
         lambda t, _: ["head-mismatch", "chain_heads", "more verify after them"]),
    Kind("append-head-moved-on", ("keyed", "plain"), _append, "key+anchor",
         lambda t, forged: ["rechained-without-key", f"decisions {forged}"]
         if t.name == "keyed" else ["links after the anchor", "the run had finished"]),
    Kind("rehash-whole-chain", ("keyed", "plain"), _rehash_after_edit, "key+anchor",
         lambda t, v: ["rechained-without-key", f"verdicts {v.id}"]
         if t.name == "keyed" else ["no longer has the hash", "rewritten"]),
    Kind("cut-head-moved-back", ("keyed", "plain"), _cut, "anchor",
         lambda t, end: [f"ends at link #{end}, but no row holds that index"]),
    Kind("downgrade-head-only", ("keyed",), _downgrade(False), "caught",
         lambda t, _: ["head-mismatch", "created keyed", "a downgrade"]),
]  # fmt: skip


@pytest.mark.parametrize("kind", KINDS, ids=[k.name for k in KINDS])
def test_tampering(kind: Kind, built: Built, copy: str):
    engine = _engine(built, copy)
    undo: list[Callable[[], None]] = []
    try:
        for name in kind.runs:
            run = built.runs[name]
            t = Tamper(engine, copy, name, run, built.chains[run], undo)
            says = kind.says(t, kind.tamper(t))
            _holds(kind.verdict, built, copy, t, says)
    finally:
        engine.dispose()
        for restore in reversed(undo):
            restore()


def _holds(verdict: str, built: Built, url: str, t: Tamper, says: list[str]) -> None:
    """Assert `verdict` for run `t.run` of the tampered copy."""
    alone = verify(built, url, t.run)
    keyed = built.keys[t.run] is not None
    if verdict == "caught" or (verdict == "key+anchor" and keyed):
        assert alone.exit_code == 1, alone.output
        assert alone.lines(*says), f"no line says {says}:\n{alone.output}"
        return
    if verdict == "note":
        assert alone.exit_code == 0, alone.output
        assert alone.lines(*says), f"no line says {says}:\n{alone.output}"
        return
    # what the chain alone cannot tell: clean, even under the key; the anchors tell
    assert verdict in ("anchor", "key+anchor")
    assert alone.exit_code == 0, alone.output
    assert "clean" in alone.output
    held = verify(built, url, t.run, "--anchor", str(built.anchors[t.run]))
    assert held.exit_code == 1, held.output
    assert held.lines("TAMPERED", *says), f"no line says {says}:\n{held.output}"


def test_an_untouched_copy_verifies_clean(built: Built, copy: str):
    """Every run of the copy as built: clean, and held by its anchors (so a test's exit 1 is the
    tampering's)."""
    for run in built.runs.values():
        done = verify(built, copy, run)
        assert done.exit_code == 0, done.output
        if run in built.anchors:
            held = verify(built, copy, run, "--anchor", str(built.anchors[run]))
            assert held.exit_code == 0, held.output
    chains = built.chains
    tables = {link.table for run in built.runs.values() for link in chains[run]}
    assert tables == {
        "turns", "tool_calls", "verdicts", "explanations", "decisions", "dataset_items",
        "call_attempts", "snapshots",
    }  # fmt: skip
    versions = [
        link.row["content"]
        for link in chains[built.runs["keyed"]]
        if link.table == "snapshots" and link.row["subject"] == "model_versions"
    ]
    trained = [v for v in versions if v["number"] > 0]
    assert trained and all(v["files"] for v in trained)  # their weight files are chained


def test_a_keyed_run_downgraded_whole(built: Built, copy: str):
    """Re-hashed without the key, marked unkeyed in its head and in its first link: only the key
    (the run is not keyed) or the anchor (it was) tells."""
    run = built.runs["keyed"]
    engine = _engine(built, copy)
    try:
        _downgrade(True)(Tamper(engine, copy, "keyed", run, built.chains[run]))
    finally:
        engine.dispose()
    with_key = verify(built, copy, run)
    assert with_key.exit_code == 1, with_key.output
    assert with_key.lines("not-keyed", "chain_heads", "a downgrade")
    without = verify(built, copy, run, key=None)
    assert without.exit_code == 0 and "SHA-256, no key" in without.output, without.output
    held = verify(built, copy, run, "--anchor", str(built.anchors[run]), key=None)
    assert held.exit_code == 1, held.output
    assert held.lines("TAMPERED", "says the run was keyed; the database now says unkeyed")
