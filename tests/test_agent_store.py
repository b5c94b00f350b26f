"""Tool calls in the store: written with their episode, on the run's hash chain, read back, and
migrated in (revision 0005) under existing data; on a real SQLite file and a real PostgreSQL."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa

from pedagogy.domains.base import Problem
from pedagogy.errors import StoreError
from pedagogy.memory import (
    EpisodeRecord,
    RunRecord,
    SQLStore,
    ToolCallRecord,
    TurnRecord,
    VerdictRecord,
    open_store,
)
from pedagogy.memory.store import MIGRATIONS


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'agent.db'}"
    return request.getfixturevalue("postgres_database")


@pytest.fixture
def store(db_url: str) -> Iterator[SQLStore]:
    with open_store(db_url) as s:
        s.create_run(RunRecord("run", "agent run", {}, 0))
        yield s


@pytest.fixture
def raw(db_url: str) -> Iterator[sa.Engine]:
    engine = sa.create_engine(db_url)
    yield engine
    engine.dispose()


PROBLEM = Problem("arith", "add", 0, "12+7-3=", "16")


def step_turn(seq: int, step: int, text: str, action: str, kind: str = "attempt") -> TurnRecord:
    request = {
        "messages": [{"role": "user", "content": PROBLEM.prompt}],
        "purpose": "act",
        "tools": [{"type": "function", "function": {"name": "calculator"}}],
    }
    return TurnRecord(
        seq,
        "student",
        "scripted",
        "tiny",
        request,
        text,
        prompt_tokens=5 + seq,
        completion_tokens=3,
        latency_s=0.01,
        id=uuid.uuid4().hex,
        detail={"trajectory": kind, "step": step, "text": text, "action": action},
    )


def agent_episode(index: int = 0) -> EpisodeRecord:
    """Two calculator calls, then the answer."""
    turns = [
        step_turn(0, 0, "T:first add\nC:calculator(12+7)", "call"),
        step_turn(1, 1, "C:calculator(19-3)", "call"),
        step_turn(2, 2, "A:16", "answer"),
    ]
    calls = [
        ToolCallRecord(
            uuid.uuid4().hex,
            turns[0].id,
            0,
            "calculator",
            "call_0",
            {"expression": "12+7"},
            "19",
            latency_s=0.002,
            detail={"digits": 2},
        ),
        ToolCallRecord(
            uuid.uuid4().hex,
            turns[1].id,
            1,
            "calculator",
            "call_1",
            {"expression": "19-3"},
            "16",
            latency_s=0.001,
        ),
    ]
    return EpisodeRecord(
        id=uuid.uuid4().hex,
        run_id="run",
        round=1,
        index=index,
        problem_id=PROBLEM.id,
        arm=PROBLEM.arm,
        student_version=None,
        outcome="correct_first",
        correct_first=True,
        correct_final=True,
        turns=turns,
        tool_calls=calls,
        verdicts=[VerdictRecord(turns[-1].id, True, 1.0, "16")],
        decisions={"agent": {"max_steps": 6}, "attempt_tools": ["calculator", "calculator"]},
    )


def test_tool_calls_round_trip_in_the_episode_transaction(store: SQLStore, raw: sa.Engine):
    store.add_problems([PROBLEM])
    episode = agent_episode()
    store.record_episodes([episode])
    store.record_episodes([agent_episode()])  # the same (run, round, index): skipped
    back = store.get_episode(episode.id)
    assert [c.id for c in back.tool_calls] == [c.id for c in episode.tool_calls]
    first = back.tool_calls[0]
    assert (first.tool, first.arguments, first.observation, first.ok, first.error) == (
        "calculator",
        {"expression": "12+7"},
        "19",
        True,
        None,
    )
    assert first.detail == {"digits": 2} and first.episode_id == episode.id and first.hash
    assert back.turns[0].detail["trajectory"] == "attempt"
    assert [c.id for c in store.tool_calls(episode.id)] == [c.id for c in episode.tool_calls]
    assert len(store.tool_calls(run_id="run")) == 2
    assert store.episodes("run", with_turns=True)[0].tool_calls == back.tool_calls
    with raw.connect() as conn:
        assert conn.execute(sa.text("SELECT COUNT(*) FROM tool_calls")).scalar_one() == 2
        turns = conn.execute(sa.text("SELECT chain_index FROM turns")).scalars().all()
        calls = conn.execute(sa.text("SELECT chain_index FROM tool_calls")).scalars().all()
    # one chain (link 0: the run's own copy): each call right after the turn that made it
    assert sorted(turns) == [1, 3, 5] and sorted(calls) == [2, 4]
    with pytest.raises(StoreError, match="exactly one of"):
        store.tool_calls()


def test_trajectories_render_from_stored_records(store: SQLStore):
    store.add_problems([PROBLEM])
    episode = agent_episode()
    store.record_episodes([episode])
    (traj,) = store.get_episode(episode.id).trajectories()
    assert (traj.kind, traj.answer, traj.prompt) == ("attempt", "16", PROBLEM.prompt)
    assert (
        traj.text()
        == "12+7-3=\nT:first add\nC:calculator(12+7)\nO:19\nC:calculator(19-3)\nO:16\nA:16"
    )
    assert [t for t, trainable in traj.segments() if trainable] == [
        "\nT:first add\nC:calculator(12+7)\n",
        "C:calculator(19-3)\n",
        "A:16",
    ]
    messages = traj.messages()
    assert [m["role"] for m in messages] == [
        "user",
        "assistant",
        "tool",
        "assistant",
        "tool",
        "assistant",
    ]
    assert messages[1]["content"] == "T:first add"
    assert messages[1]["tool_calls"] == [
        {
            "id": "call_0",
            "type": "function",
            "function": {"name": "calculator", "arguments": '{"expression": "12+7"}'},
        }
    ]
    assert messages[2] == {"role": "tool", "tool_call_id": "call_0", "content": "19"}


def test_the_chain_catches_edited_observations_and_details(store: SQLStore, raw: sa.Engine):
    store.add_problems([PROBLEM])
    episodes = [agent_episode(0), agent_episode(1)]
    store.record_episodes(episodes)
    assert store.verify_chain("run") == []
    call = episodes[0].tool_calls[1]
    with raw.begin() as conn:
        conn.execute(
            sa.text("UPDATE tool_calls SET observation = '17' WHERE id = :i"), {"i": call.id}
        )
    assert store.verify_chain("run") == [call.id]
    with raw.begin() as conn:
        conn.execute(
            sa.text("UPDATE tool_calls SET observation = '16' WHERE id = :i"), {"i": call.id}
        )
        conn.execute(
            sa.text("UPDATE turns SET detail = NULL WHERE id = :i"), {"i": episodes[1].turns[0].id}
        )
    assert store.verify_chain("run") == [episodes[1].turns[0].id]
    with raw.begin() as conn:
        conn.execute(
            sa.text("UPDATE turns SET detail = :d WHERE id = :i"),
            {"d": json.dumps(episodes[1].turns[0].detail), "i": episodes[1].turns[0].id},
        )
    assert store.verify_chain("run") == []
    with raw.begin() as conn:  # the verdicts follow the turns: the first one's link breaks ...
        conn.execute(
            sa.text("DELETE FROM verdicts WHERE turn_id = :i"), {"i": episodes[1].turns[2].id}
        )
        conn.execute(sa.text("DELETE FROM turns WHERE id = :i"), {"i": episodes[1].turns[2].id})
        (first_verdict,) = conn.execute(sa.text("SELECT id FROM verdicts")).scalars().all()
    # ... as does the next link (the episodes' copies follow their turns), and the chain head,
    # which counts the deleted ones, names the last turn or call left
    broken = store.verify_chain("run")
    assert broken[0] == f"verdicts:{first_verdict}" and broken[-1] == episodes[1].tool_calls[1].id
    assert all(b.startswith("snapshots:") for b in broken[1:-1]) and len(broken) == 3


def test_a_tool_call_without_its_turn_writes_nothing(store: SQLStore, raw: sa.Engine):
    store.add_problems([PROBLEM])
    episode = agent_episode()
    episode.tool_calls[0].turn_id = "elsewhere"
    with pytest.raises(StoreError, match="'elsewhere', which is not among the turns"):
        store.record_episodes([episode])
    with raw.connect() as conn:
        for table in ("episodes", "turns", "tool_calls"):
            assert conn.execute(sa.text(f"SELECT COUNT(*) FROM {table}")).scalar_one() == 0
    assert store.verify_chain("run") == []


def test_upgrading_from_0004_keeps_data_chain_and_takes_tool_calls(db_url: str):
    """A database written before 0005 (no tool_calls, no turns.detail) upgrades in place: its
    turns hash as before, read back with an empty detail, and agent episodes join its chain.
    (Written at head, it is made a pre-0005 one by the downgrade, which re-hashes its turns the
    pre-0006 way: "before" is read after it.)"""
    from alembic import command
    from alembic.config import Config

    from tests.test_store import batch

    with open_store(db_url) as s:
        s.create_run(RunRecord("run", "old", {}, 0))
        s.record_episodes(batch(s, "run", 0, 3))
    engine = sa.create_engine(db_url)
    with engine.begin() as conn:
        config = Config()
        config.set_main_option("script_location", str(MIGRATIONS))
        config.attributes["connection"] = conn
        command.downgrade(config, "0004_items_outside_episodes")
        assert "tool_calls" not in sa.inspect(conn).get_table_names()
        assert "detail" not in {c["name"] for c in sa.inspect(conn).get_columns("turns")}
        before = dict(conn.execute(sa.text("SELECT id, hash FROM turns")).all())
    engine.dispose()
    with open_store(db_url) as s:
        turns = [t for e in s.episodes("run", with_turns=True) for t in e.turns]
        assert {t.id: t.hash for t in turns} == before and all(t.detail == {} for t in turns)
        assert s.verify_chain("run") == []
        s.add_problems([PROBLEM])
        episode = agent_episode()
        episode.round = 1
        s.record_episodes([episode])
        assert len(s.tool_calls(episode.id)) == 2 and s.verify_chain("run") == []
