"""What a new user hits first: a damaged database, a mistyped --db, a run that fails at once, a
missing PostgreSQL driver. Each is one line on stderr naming the file and the fix, exit 2, no
traceback, and no file created or left behind."""

from __future__ import annotations

import os
import random
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from pedagogy.cli import app
from pedagogy.config import load_config
from pedagogy.errors import StoreError
from pedagogy.memory import ModelVersionRecord, RunRecord, open_store
from tests.test_store import batch

runner = CliRunner()
RUN = "run12"
"""A run recorded in the middle of the file (the 13th of 24)."""


def _error_line(args: list[str], exit_code: int = 2) -> str:
    """The command's one line on stderr; nothing on stdout, no traceback."""
    result = runner.invoke(app, args)
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    assert (result.exit_code, result.stdout) == (exit_code, ""), (result.exit_code, result.output)
    assert result.stderr.startswith("error: ") and len(result.stderr.splitlines()) == 1, (
        result.stderr
    )
    return result.stderr


def _read_commands(db: Path | str, out: Path) -> list[list[str]]:
    return [
        ["runs", "--db", str(db)],
        ["show", RUN, "--db", str(db)],
        ["replay", RUN, "--db", str(db)],
        ["export", RUN, "--out", str(out / "records.jsonl"), "--db", str(db)],
    ]


def _listing(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*"))


@pytest.fixture(scope="module")
def recorded_db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real SQLite file written by the store: 24 runs with the default config, each with its
    student version and 6 episodes, so every table's pages are spread through the file."""
    path = tmp_path_factory.mktemp("recorded") / "pedagogy.db"
    config = load_config(None).model_dump()
    with open_store(path) as store:
        for i in range(24):
            run_id = f"run{i:02d}"
            store.create_run(RunRecord(run_id, "first hour", config, seed=i))
            store.add_model_version(
                ModelVersionRecord(
                    f"{run_id}-v0", run_id, "student", 0, "/models/v0", status="base"
                )
            )
            store.record_episodes(batch(store, run_id, 0, 6))
    return path


def _garbage_in_the_middle(path: Path) -> None:
    data = bytearray(path.read_bytes())
    rng = random.Random(7)
    start, end = len(data) // 3, 2 * len(data) // 3
    data[start:end] = bytes(rng.randrange(256) for _ in range(end - start))
    path.write_bytes(bytes(data))


def _garbage_on_the_runs_table(path: Path) -> None:
    """Garbage over the runs table's root page: opening succeeds, the first query fails."""
    with sqlite3.connect(path) as conn:
        page_size = conn.execute("PRAGMA page_size").fetchone()[0]
        root = conn.execute("SELECT rootpage FROM sqlite_master WHERE name = 'runs'").fetchone()[0]
    conn.close()
    with path.open("r+b") as f:
        f.seek((root - 1) * page_size)
        f.write(random.Random(7).randbytes(page_size))


@pytest.mark.parametrize("damage", [_garbage_in_the_middle, _garbage_on_the_runs_table])
def test_a_damaged_database_is_one_line_for_every_read_command(recorded_db, tmp_path, damage):
    db = tmp_path / "pedagogy.db"
    shutil.copy(recorded_db, db)
    for args in _read_commands(db, tmp_path)[:2] + _read_commands(db, tmp_path)[3:]:
        assert runner.invoke(app, args).exit_code == 0  # undamaged, the commands work
    (tmp_path / "records.jsonl").unlink()
    damage(db)
    before = _listing(tmp_path)
    for args in _read_commands(db, tmp_path):
        line = _error_line(args)
        assert str(db) in line and "damaged" in line, line
    assert _listing(tmp_path) == before  # no export file, no -wal or -shm left


def test_the_damaged_database_of_the_issue_in_a_subprocess(recorded_db, tmp_path):
    """The user's exact command, through the installed entry point (typer's own traceback
    printer included)."""
    db = tmp_path / "pedagogy.db"
    shutil.copy(recorded_db, db)
    _garbage_in_the_middle(db)
    env = {k: v for k, v in os.environ.items() if k != "PEDAGOGY_DEBUG"}
    for args in (["runs"], ["show", RUN]):
        proc = subprocess.run(
            [sys.executable, "-m", "pedagogy.cli", *args, "--db", str(db)],
            capture_output=True,
            text=True,
            env=env,
            timeout=120,
        )
        assert proc.returncode == 2 and proc.stdout == "", proc
        assert proc.stderr.count("\n") == 1 and "damaged" in proc.stderr, proc.stderr


@pytest.mark.parametrize("typo", ["pedagogy.bd", "pedagogy-run/pedagogy.db"])
def test_a_mistyped_db_path_creates_nothing(tmp_path, typo):
    db = tmp_path / typo
    commands = _read_commands(db, tmp_path) + [
        ["show", RUN, "--episode", "e1", "--db", str(db)],
        ["audit", "model", f"{RUN}-v0", "--db", str(db)],
    ]
    for args in commands:
        line = _error_line(args)
        assert f"no database at {db}" in line and "--db" in line, line
    assert _listing(tmp_path) == []


def test_read_commands_without_db_create_no_default_database(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    line = _error_line(["runs"])
    assert "pedagogy-runs/pedagogy.db" in line and "pedagogy run" in line
    _error_line(["show", RUN])
    assert _listing(tmp_path) == []


def test_a_file_that_is_not_a_pedagogy_database_is_left_as_it_was(tmp_path):
    empty = tmp_path / "empty.db"  # what a failed run of an older version left behind
    empty.touch()
    foreign = tmp_path / "notes.sqlite"
    with sqlite3.connect(foreign) as conn:
        conn.execute("CREATE TABLE notes (text TEXT)")
    conn.close()
    junk = tmp_path / "notes.txt"
    junk.write_text("not a database\n" * 400)
    files = {p: p.read_bytes() for p in (empty, foreign, junk)}
    for db, expected in ((empty, "no pedagogy schema"), (foreign, "no pedagogy schema")):
        for args in _read_commands(db, tmp_path):
            line = _error_line(args)
            assert expected in line and str(db) in line and "--db" in line, line
    for args in _read_commands(junk, tmp_path):
        assert "file is not a database" in _error_line(args)
    assert {p: p.read_bytes() for p in files} == files  # not even switched to WAL
    assert _listing(tmp_path) == ["empty.db", "notes.sqlite", "notes.txt"]


def test_read_only_open_of_a_store(recorded_db, tmp_path):
    missing = tmp_path / "missing.db"
    with pytest.raises(StoreError, match=f"no database at {missing}; check the --db path"):
        open_store(missing, create=False)
    db = tmp_path / "copy.db"
    shutil.copy(recorded_db, db)
    with open_store(f"sqlite:///{db}", create=False) as store:
        assert len(store.list_runs()) == 24
    assert _listing(tmp_path) == ["copy.db"]  # its -wal and -shm went with the connection


def test_a_run_that_fails_before_its_first_row_leaves_nothing_behind(quick_config, tmp_path):
    # A misspelt domain option fails when the domain is built, after the database was opened.
    bad_domain = {"name": "reasoning_gym", "options": {"skills": ["chain_sum"], "levle": 2}}
    cfg = quick_config(domain=bad_domain)
    line = _error_line(["run", "--config", str(cfg), "--quiet"])
    assert "levle" in line
    assert _listing(tmp_path) == ["config.yaml"]  # neither the database nor its folder

    work = tmp_path / "work"  # a folder that already holds something keeps it
    work.mkdir()
    (work / "notes.txt").write_text("mine")
    _error_line(["run", "--config", str(cfg), "--quiet"])
    assert _listing(tmp_path) == ["config.yaml", "work", "work/notes.txt"]


def test_a_failed_run_keeps_a_database_that_existed(quick_config, tmp_path):
    cfg = quick_config(domain={"name": "reasoning_gym", "options": {"levle": 2}})
    db = tmp_path / "work" / "pedagogy.db"
    db.parent.mkdir()
    with open_store(db) as store:
        store.create_run(RunRecord("earlier", "kept", {}, 0))
    _error_line(["run", "--config", str(cfg), "--quiet"])
    with open_store(db, create=False) as store:
        assert [r.id for r in store.list_runs()] == ["earlier"]
    empty = tmp_path / "empty.db"  # existed, even without a run: not ours to delete
    open_store(empty).close()
    _error_line(["run", "--config", str(cfg), "--quiet", "--db", str(empty)])
    assert empty.exists()


def test_a_missing_postgresql_driver_names_the_extra(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "psycopg", None)  # import psycopg fails: not installed
    monkeypatch.setitem(sys.modules, "psycopg2", None)
    for args in (
        ["runs", "--db", "postgresql://u:secret@127.0.0.1:5432/runs"],
        ["run", "--db", "postgres://u:secret@127.0.0.1:5432/runs", "--quiet"],
        ["show", RUN, "--db", "postgresql+nonexistentdriver://u:secret@127.0.0.1/runs"],
    ):
        line = _error_line(args)
        assert "pip install 'pedagogy[postgres]'" in line and "secret" not in line, line
    assert _listing(tmp_path) == []


def test_an_unexpected_error_in_a_read_command_is_one_line(recorded_db, monkeypatch):
    import pedagogy.report

    def broken(*args, **kwargs):
        raise RuntimeError("a bug\nover two lines")

    monkeypatch.setattr(pedagogy.report, "run_summary", broken)
    monkeypatch.delenv("PEDAGOGY_DEBUG", raising=False)
    line = _error_line(["show", RUN, "--db", str(recorded_db)], exit_code=1)
    assert "RuntimeError: a bug over two lines" in line and "PEDAGOGY_DEBUG=1" in line, line
    monkeypatch.setenv("PEDAGOGY_DEBUG", "1")
    result = runner.invoke(app, ["show", RUN, "--db", str(recorded_db)])
    assert isinstance(result.exception, RuntimeError)  # the traceback, for a bug report


def test_a_missing_postgres_checkpointer_names_the_extra(tmp_path: Path):
    import asyncio
    from unittest import mock

    from pedagogy.errors import ConfigError
    from pedagogy.runner import _checkpointer

    async def enter() -> None:
        async with _checkpointer("postgresql+psycopg://u@127.0.0.1:1/x", tmp_path):
            pass

    with mock.patch.dict(sys.modules, {"langgraph.checkpoint.postgres.aio": None}):
        with pytest.raises(ConfigError, match=r"pip install 'pedagogy\[postgres\]'"):
            asyncio.run(enter())
