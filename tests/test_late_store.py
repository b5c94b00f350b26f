"""A new run creates its database file just before its run row: a run killed while it checks its
config, builds its domain and its models (SIGKILL: no cleanup runs) leaves no file behind."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from pedagogy import run_models, runner
from pedagogy.config import load_config
from pedagogy.errors import PedagogyError


def _config(tmp_path: Path):
    return load_config(None).with_overrides(
        {"workdir": str(tmp_path / "work"), "db": str(tmp_path / "db" / "runs.db"), "rounds": 1}
    )


def test_the_database_file_does_not_exist_while_the_models_are_built(tmp_path, monkeypatch):
    seen: list[bool] = []

    def student_model(config, *args, **kwargs):
        seen.append((tmp_path / "db" / "runs.db").exists() or (tmp_path / "db").exists())
        raise PedagogyError("stopped here, as a kill would")

    monkeypatch.setattr(run_models, "student_model", student_model)
    with pytest.raises(PedagogyError, match="stopped here"):
        asyncio.run(runner.run_loop(_config(tmp_path)))
    assert seen == [False]  # neither the file nor its folder existed yet
    assert not (tmp_path / "db").exists()


def test_an_existing_database_is_opened_as_before_and_kept(tmp_path, monkeypatch):
    from pedagogy.memory.store import open_store

    db = tmp_path / "db" / "runs.db"
    db.parent.mkdir()
    open_store(db).close()

    def student_model(config, *args, **kwargs):
        raise PedagogyError("stopped here")

    monkeypatch.setattr(run_models, "student_model", student_model)
    with pytest.raises(PedagogyError):
        asyncio.run(runner.run_loop(_config(tmp_path)))
    assert db.exists()  # someone else's file: never removed
