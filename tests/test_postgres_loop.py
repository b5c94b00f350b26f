"""The loop against PostgreSQL: the store and LangGraph's Postgres checkpointer on a real server."""

import pytest
from typer.testing import CliRunner

from pedagogy.cli import app
from pedagogy.memory.store import open_store

pytestmark = [pytest.mark.slow, pytest.mark.postgres]


def test_loop_on_postgres(quick_config, postgres_database):
    cfg = quick_config(rounds=1, db=postgres_database)
    result = CliRunner().invoke(app, ["run", "--config", str(cfg), "--quiet"])
    assert result.exit_code == 0, result.output
    store = open_store(postgres_database)
    (run,) = store.list_runs()
    assert run.status == "completed"
    assert len(store.episodes(run.id)) == 48
    assert store.verify_chain(run.id) == []
    replay = CliRunner().invoke(app, ["replay", run.id, "--db", postgres_database])
    assert replay.exit_code == 0
    assert "model calls 0 · tool executions 0 · mismatches 0" in replay.output
