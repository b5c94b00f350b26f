"""An in-process run or read command on PostgreSQL leaves no connection open behind it.

A notebook, a service or a test session runs many commands in one process: each must give its
connections back to the server (the store's engine disposed, LangGraph's checkpointer closed) on
every exit path, not only when the process ends.
"""

import asyncio
import time

import pytest
from typer.testing import CliRunner

from pedagogy.cli import app
from pedagogy.config import load_config

pytestmark = [pytest.mark.slow, pytest.mark.postgres]


def _others(url: str) -> int:
    """Connections to `url`'s database other than the one counting them."""
    import psycopg
    from sqlalchemy.engine import make_url

    plain = make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)
    with psycopg.connect(plain, autocommit=True, connect_timeout=10) as conn:
        row = conn.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
            "AND pid <> pg_backend_pid()"
        ).fetchone()
    return row[0]


def _settled(url: str, expected: int) -> int:
    """The count once it reaches `expected`, or after 5 s (a closed connection's server process
    leaves pg_stat_activity a moment after the client hung up)."""
    deadline = time.monotonic() + 5
    while (n := _others(url)) != expected and time.monotonic() < deadline:
        time.sleep(0.1)
    return n


def _invoke(args: list[str], code: int = 0) -> str:
    result = CliRunner().invoke(app, args)
    assert result.exit_code == code, result.output
    return result.output


def test_run_and_read_commands_give_their_connections_back(
    quick_config, postgres_database, tmp_path
):
    db = postgres_database
    before = _others(db)
    cfg = quick_config(rounds=1, db=db)
    _invoke(["run", "--config", str(cfg), "--quiet"])
    assert _settled(db, before) == before, "`pedagogy run` left connections open"

    from pedagogy.memory.store import open_store

    with open_store(db, create=False) as store:
        (run,) = store.list_runs()
    for args in (
        ["runs"],
        ["show", run.id],
        ["show", run.id, "--episodes"],
        ["export", run.id, "--out", str(tmp_path / "export.jsonl")],
        ["replay", run.id],
        ["audit", "verify", run.id],
    ):
        _invoke([*args, "--db", db])
        assert _settled(db, before) == before, f"`pedagogy {args[0]}` left connections open"
    # a completed run resumed: nothing runs, the store is still opened and must be closed
    _invoke(["run", "--config", str(cfg), "--resume", run.id, "--quiet"])
    assert _settled(db, before) == before, "`pedagogy run --resume` left connections open"


def test_budget_stop_gives_its_connections_back(quick_config, postgres_database):
    db = postgres_database
    before = _others(db)
    cfg = quick_config(rounds=1, db=db)
    output = _invoke(
        ["run", "--config", str(cfg), "--quiet", "--budget-wall-seconds", "0.000001"], code=3
    )
    assert "budget_exhausted" in output
    assert _settled(db, before) == before


# run_started: the run row, its lease and the checks' calls are written; round_planned: inside
# the loop graph, with LangGraph's checkpointer connected too.
@pytest.mark.parametrize("event", ["run_started", "round_planned"])
@pytest.mark.parametrize("raised", [KeyboardInterrupt, RuntimeError])
def test_interrupted_or_failed_run_gives_its_connections_back(
    quick_config, postgres_database, raised, event
):
    from pedagogy.runner import run_loop

    db = postgres_database
    before = _others(db)
    config = load_config(quick_config(rounds=1, db=db))
    seen = []

    def emit(name: str, _data: dict) -> None:
        if name == event:
            seen.append(_others(db))
            raise raised("stop here")

    with pytest.raises(raised):
        asyncio.run(run_loop(config, emit=emit))
    assert seen and seen[0] > before  # the run was connected when it stopped
    assert _settled(db, before) == before
