"""Anchors: the chain's head kept in the run folder catches what a writer of the database can do
to a chain without leaving a trace in it: cut its last links and move the head back, append
links and move the head on after the run finished, re-hash the whole chain with the project's
own code (no key). Each of those verifies clean without the anchors, and fails with them.

The run under test is a real two-round loop (tiny student, no training), run once through the
command line into a SQLite file; each test tampers with its own copy of the database."""

from __future__ import annotations

import json
import os
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from unittest import mock

import pytest
import sqlalchemy as sa
import yaml
from typer.testing import CliRunner

from pedagogy.cli import app
from pedagogy.memory import open_store
from pedagogy.memory.anchor import FILENAME, Anchor, read_anchors
from pedagogy.memory.chain import KEY_ENV, link_hash
from pedagogy.memory.records import ChainLinkRecord
from tests.conftest import QUICK

pytestmark = pytest.mark.slow
runner = CliRunner()


class Run:
    def __init__(self, folder: Path, run_id: str, db: Path):
        self.folder, self.id, self.db = folder, run_id, db
        self.anchors = folder / FILENAME


@pytest.fixture(scope="module")
def finished(tmp_path_factory: pytest.TempPathFactory) -> Run:
    """A two-round run, step-bounded and untrained, without a chain key."""
    tmp = tmp_path_factory.mktemp("anchor")
    data = json.loads(json.dumps(QUICK))
    data.update(rounds=2, workdir=str(tmp / "work"), db=str(tmp / "work" / "pedagogy.db"))
    data["episodes"] = {"per_round": 4, "write_batch": 4}
    data["training"] = {"every_rounds": 3, "max_steps": 2, "batch_size": 4}  # 2 rounds: none
    data["evaluation"] = {"heldout_per_arm": 2, "patience": None}
    config = tmp / "config.yaml"
    config.write_text(yaml.safe_dump(data))
    env = {k: v for k, v in os.environ.items() if k != KEY_ENV}
    with mock.patch.dict(os.environ, env, clear=True):
        result = runner.invoke(app, ["run", "--config", str(config), "--quiet"])
    assert result.exit_code == 0, result.output
    db = tmp / "work" / "pedagogy.db"
    with open_store(str(db), create=False) as store:
        (run,) = store.list_runs()
    return Run(tmp / "work" / "runs" / run.id, run.id, db)


@pytest.fixture
def db(finished: Run, tmp_path: Path) -> str:
    """A copy of the run's database for one test to tamper with."""
    copy = tmp_path / "copy.db"
    # SQLite's backup: the rows still in the run's write-ahead log come along
    with sqlite3.connect(finished.db) as source, sqlite3.connect(copy) as target:
        source.backup(target)
    return str(copy)


@pytest.fixture
def raw(db: str) -> Iterator[sa.Engine]:
    engine = sa.create_engine(f"sqlite:///{db}")
    yield engine
    engine.dispose()


def links(db: str, run_id: str) -> list[ChainLinkRecord]:
    with open_store(db, create=False) as store:
        return list(store.chain_links(run_id))


def verify(run: Run, db: str, *extra: str) -> Any:
    return runner.invoke(app, ["audit", "verify", run.id, "--db", db, *extra])


def tampered_lines(output: str) -> list[str]:
    return [line for line in output.splitlines() if line.startswith("TAMPERED")]


def test_an_anchor_per_round_and_one_at_the_end(finished: Run):
    anchors = read_anchors(finished.anchors)
    assert [(a.round, a.finished) for a in anchors] == [(1, False), (2, True)]
    assert anchors[0].index < anchors[1].index
    with open_store(str(finished.db), create=False) as store:
        head = store.chain_head(finished.id)
    assert head is not None
    last = anchors[-1]
    assert (last.run_id, last.index, last.hash, last.keyed) == (
        finished.id,
        head.length - 1,
        head.last_hash,
        False,
    )
    # Snapshots are counted whole and again per table they copy (`snapshots:<table>`).
    assert sum(n for t, n in last.tables.items() if ":" not in t) == head.length
    assert (
        sum(n for t, n in last.tables.items() if t.startswith("snapshots:"))
        == last.tables["snapshots"]
    )
    assert {"turns", "verdicts", "decisions"} <= set(last.tables)


def test_audit_anchor_prints_the_latest(finished: Run):
    done = runner.invoke(app, ["audit", "anchor", finished.id, "--db", str(finished.db)])
    assert done.exit_code == 0, done.output
    latest = read_anchors(finished.anchors)[-1]
    assert f"link #{latest.index} {latest.hash}" in done.output
    assert "end of the run" in done.output
    as_json = runner.invoke(
        app, ["audit", "anchor", finished.id, "--db", str(finished.db), "--json"]
    )
    assert Anchor.from_dict(json.loads(as_json.output), "output") == latest


def test_an_untouched_run_holds_its_anchors(finished: Run, db: str):
    alone = verify(finished, db)
    assert alone.exit_code == 0, alone.output
    assert f"add --anchor {finished.anchors}" in alone.output.replace("\n", "")
    done = verify(finished, db, "--anchor", str(finished.anchors))
    assert done.exit_code == 0, done.output
    assert "anchors: 2" in done.output and "clean" in done.output
    assert not tampered_lines(done.output)
    as_json = verify(finished, db, "--anchor", str(finished.anchors), "--json")
    report = json.loads(as_json.output)
    assert report["clean"] and report["anchor"]["clean"] and report["anchor"]["anchors"] == 2


def test_cut_links_and_the_head_moved_back(finished: Run, db: str, raw: sa.Engine):
    from pedagogy.memory import schema

    chain = links(db, finished.id)
    cut = len(chain) - 3
    with raw.begin() as conn:
        for link in chain[cut:]:
            conn.execute(sa.text(f"DELETE FROM {link.table} WHERE id = :i"), {"i": link.id})
            if link.table != "snapshots":
                continue
            # A copy of an outcome row cut: the row put back as the earlier links had it (or
            # removed, if none had it), so that the shorter chain is well formed.
            subject, now = link.row["subject"], link.row["content"]
            earlier = [
                x.row["content"]
                for x in chain[:cut]
                if x.table == "snapshots"
                and (x.row["subject"], x.row["subject_id"]) == (subject, link.row["subject_id"])
            ]
            table = schema.metadata.tables[subject]
            where = table.c.id == now["id"]
            if earlier:
                back = {c: v for c, v in earlier[-1].items() if now.get(c) != v}
                conn.execute(sa.update(table).where(where).values(**back))
            else:
                conn.execute(sa.delete(table).where(where))
        conn.execute(
            sa.text("UPDATE chain_heads SET length = :n, last_hash = :h"),
            {"n": cut, "h": chain[cut - 1].hash},
        )
    assert verify(finished, db).exit_code == 0  # the chain alone cannot tell
    done = verify(finished, db, "--anchor", str(finished.anchors))
    assert done.exit_code == 1, done.output
    (line,) = tampered_lines(done.output)
    assert f"ends at link #{len(chain) - 1}, but no row holds that index" in line
    assert "links were removed" in line


def _forged_append(raw: sa.Engine, run_id: str, chain: list[ChainLinkRecord]) -> None:
    """A decision appended with a correct unkeyed link, the head moved on to it."""
    index = len(chain)
    with raw.begin() as conn:
        conn.execute(
            sa.text(
                "INSERT INTO decisions (run_id, round, kind, policy, subject, chosen, detail, "
                "chain_index, hash) VALUES (:r, 2, 'promotion', 'heldout', 'forged', 1, '{}', "
                ":k, '')"
            ),
            {"r": run_id, "k": index},
        )
        forged = conn.execute(sa.text("SELECT max(id) FROM decisions")).scalar_one()
        row = {
            "id": forged,
            "round": 2,
            "kind": "promotion",
            "policy": "heldout",
            "subject": "forged",
            "chosen": True,
            "value": None,
            "detail": {},
            "episode_id": None,
        }
        fake = link_hash(chain[-1].hash, "decisions", row, run_id, index)
        conn.execute(
            sa.text("UPDATE decisions SET hash = :h WHERE id = :i"), {"h": fake, "i": forged}
        )
        conn.execute(
            sa.text("UPDATE chain_heads SET length = :n, last_hash = :h"),
            {"n": index + 1, "h": fake},
        )


def test_an_append_after_the_run_finished(finished: Run, db: str, raw: sa.Engine):
    _forged_append(raw, finished.id, links(db, finished.id))
    assert verify(finished, db).exit_code == 0  # a well-formed link, the head moved on
    done = verify(finished, db, "--anchor", str(finished.anchors))
    assert done.exit_code == 1, done.output
    (line,) = tampered_lines(done.output)
    assert "1 links after the anchor of round 2, which says the run had finished" in line


def test_links_after_a_round_anchor_are_reported_not_condemned(
    finished: Run, db: str, tmp_path: Path
):
    first = finished.anchors.read_text().splitlines()[0]
    (tmp_path / "round1.json").write_text(first)
    done = verify(finished, db, "--anchor", str(tmp_path / "round1.json"))
    assert done.exit_code == 0, done.output
    total, anchored = len(links(db, finished.id)), read_anchors(finished.anchors)[0].length
    assert f"{total - anchored} links after the anchor of round 1" in done.output


def test_the_whole_chain_re_hashed_without_a_key(finished: Run, db: str, raw: sa.Engine):
    """A verdict flipped, then every link and the head recomputed with the chain's own code."""
    chain = links(db, finished.id)
    v = next(link for link in chain if link.table == "verdicts")
    with raw.begin() as conn:
        conn.execute(
            sa.text("UPDATE verdicts SET correct = :c WHERE id = :i"),
            {"c": not v.row["correct"], "i": v.id},
        )
    previous = ""
    with raw.begin() as conn:
        for link in links(db, finished.id):
            previous = link_hash(previous, link.table, link.row, finished.id, link.chain_index)
            conn.execute(
                sa.text(f"UPDATE {link.table} SET hash = :h WHERE id = :i"),
                {"h": previous, "i": link.id},
            )
        conn.execute(sa.text("UPDATE chain_heads SET last_hash = :h"), {"h": previous})
    assert verify(finished, db).exit_code == 0  # re-hashed: the chain alone cannot tell
    done = verify(finished, db, "--anchor", str(finished.anchors))
    assert done.exit_code == 1, done.output
    (line,) = tampered_lines(done.output)
    assert "no longer has the hash the anchor of round 1 recorded" in line
    assert "rewritten" in line


def test_the_export_carries_the_anchor(finished: Run, db: str, tmp_path: Path):
    out = tmp_path / "out" / "records.jsonl"
    done = runner.invoke(app, ["export", finished.id, "--db", db, "--out", str(out)])
    assert done.exit_code == 0, done.output
    beside = tmp_path / "out" / "records.anchor.json"
    (carried,) = read_anchors(beside)
    assert carried == read_anchors(finished.anchors)[-1]
    held = verify(finished, db, "--anchor", str(beside))
    assert held.exit_code == 0, held.output
    assert "anchors: 1" in held.output


@pytest.mark.parametrize(
    "text",
    [None, "", "not json\n", '{"run_id": "x"}\n', "[1, 2]\n", '{"round": 1}\n{"round": 2}\n'],
    ids=["missing", "empty", "garbled", "incomplete", "not-an-object", "lines-incomplete"],
)
def test_a_bad_anchor_file_is_one_line_exit_2(
    finished: Run, db: str, tmp_path: Path, text: str | None
):
    path = tmp_path / "anchors.jsonl"
    if text is not None:
        path.write_text(text)
    done = verify(finished, db, "--anchor", str(path))
    assert done.exit_code == 2, done.output
    lines = done.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:") and str(path) in lines[0]


def test_anchors_of_another_run_are_refused(finished: Run, db: str, tmp_path: Path):
    other = json.loads(finished.anchors.read_text().splitlines()[-1])
    other["run_id"] = "another-run"
    path = tmp_path / "other.json"
    path.write_text(json.dumps(other))
    done = verify(finished, db, "--anchor", str(path))
    assert done.exit_code == 2, done.output
    assert f"holds no anchor of run '{finished.id}'" in done.output
