"""The store's SQLite insert path stores exactly what Core's executemany would."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
import sqlalchemy as sa

from pedagogy.errors import StoreError
from pedagogy.memory import RunRecord, SQLStore, TurnRecord, open_store
from pedagogy.memory import schema as S
from pedagogy.memory.store_rows import _insert_plan

AWARE = datetime(2025, 3, 1, 12, 30, 15, 123456, tzinfo=timezone(timedelta(hours=2)))


def _rows(run_id: str) -> dict[sa.Table, list[dict]]:
    """Rows of the written tables with the values whose storage differs by type: JSON (a None
    stored as JSON null, non-ASCII text, nesting), booleans, floats, NULLs and datetimes."""
    turns = [
        {
            "id": f"t{i}",
            "episode_id": None,
            "run_id": run_id,
            "seq": i,
            "agent": "teacher",
            "backend": "scripted",
            "model": "m",
            "model_version": None if i else "v1",
            "request": {"messages": [{"role": "user", "content": 'ünï ☃ \n\t"q"'}], "t": 0.5},
            "response": "r\u2028",
            "prompt_tokens": i,
            "completion_tokens": 2,
            "latency_s": 0.1 * i,
            "cost": None if i else 1e-7,
            "seed": None,
            "error": None,
            "detail": None if i else {"shown": "x", "n": [1, 2.5, None, True]},
            "chain_index": i,
            "hash": f"{i:064d}",
        }
        for i in range(3)
    ]
    attempts = [
        {
            "id": f"t0:{n}",
            "run_id": run_id,
            "turn_id": "t0",
            "n": n,
            "endpoint": "e",
            "status": None if n else 500,
            "error": "boom" if n == 0 else None,
            "latency_s": 1.5,
            "retry_after_s": None,
            "created_at": AWARE if n else AWARE.astimezone(timezone.utc).replace(tzinfo=None),
            "chain_index": 10 + n,
            "hash": "h",
        }
        for n in range(2)
    ]
    decisions = [
        {
            "id": 7 + i,
            "run_id": run_id,
            "round": 1,
            "kind": "k",
            "policy": "p",
            "subject": "s",
            "chosen": [True, False, None][i],
            "value": [0.25, None, 3.0][i],
            "detail": [{}, {"a": [1]}, {"é": None}][i],
            "episode_id": None,
            "chain_index": 20 + i,
            "hash": "h",
        }
        for i in range(3)
    ]
    return {S.turns: turns, S.call_attempts: attempts, S.decisions: decisions}


def _stored(store: SQLStore, table: sa.Table) -> list[tuple]:
    with store._engine.connect() as conn:
        return conn.exec_driver_sql(f"SELECT * FROM {table.name} ORDER BY rowid").all()


def test_sqlite_insert_path_stores_what_core_stores(tmp_path: Path):
    ours, core = open_store(tmp_path / "ours.db"), open_store(tmp_path / "core.db")
    try:
        for s in (ours, core):
            s.create_run(RunRecord("run", "x", {}, 0))
        rows = _rows("run")
        with ours._engine.begin() as conn:
            for table, table_rows in rows.items():
                ours._insert_many(conn, table, [dict(r) for r in table_rows])
        with core._engine.begin() as conn:
            for table, table_rows in rows.items():
                conn.execute(sa.insert(table), [dict(r) for r in table_rows])
        assert ours._insert_plans  # the fast path was taken, not Core
        for table in rows:
            assert _stored(ours, table) == _stored(core, table), table.name
    finally:
        ours.close()
        core.close()


def test_insert_path_errors_are_store_errors(tmp_path: Path):
    store = open_store(tmp_path / "p.db")
    try:
        store.create_run(RunRecord("run", "x", {}, 0))
        store.record_turns("run", [TurnRecord(0, "a", "b", "m", {}, "r", id="t")])
        turn = next(link for link in store.chain_links("run") if link.table == "turns")
        row = {**_rows("run")[S.turns][1], "id": "t2", "chain_index": turn.chain_index}  # taken
        with pytest.raises(StoreError, match="cannot record turns.*UNIQUE"):
            with store._writing("record turns") as conn:
                store._insert_many(conn, S.turns, [row])
    finally:
        store.close()


def test_a_key_set_that_leaves_out_a_python_default_goes_through_core():
    from sqlalchemy.dialects import sqlite

    table = sa.Table(
        "t",
        sa.MetaData(),
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("n", sa.Integer, default=3),
        sa.Column("d", sa.JSON),
    )
    dialect = sqlite.dialect()
    assert _insert_plan(dialect, table, ("id", "d")) is None
    sql, getter, processors = _insert_plan(dialect, table, ("id", "n", "d"))
    assert sql.startswith("INSERT INTO t (id, n, d) VALUES (?, ?, ?)")
    assert getter({"d": [1], "n": 2, "id": 1}) == (1, 2, [1])
    assert [i for i, _ in processors] == [2]  # only the JSON column is converted


@pytest.mark.parametrize(
    "content",
    [
        {},
        {"id": "e1", "decisions": {"b": [1, 2.5, None], "a": 'é ✓ "q"'}, "n": 0, "ok": True},
        {"z": {"y": {"x": []}}, "chain_index": 3, "content": "inner keys as outer ones"},
    ],
)
def test_a_snapshot_content_encoded_once_hashes_and_stores_as_the_plain_content(
    content, tmp_path: Path
):
    """A snapshot's content is encoded once for its link and its stored column (chain.Encoded):
    the link text is byte for byte that of the plain content, which `audit verify` hashes from
    the stored row, and the column reads back as the content."""
    from pedagogy.memory.chain import Encoded, json_text, link_text

    row = {"id": 7, "run_id": "r", "subject": "episodes", "subject_id": "e1"}
    encoded = Encoded(content, "test")
    for index in (0, 12345):
        plain = link_text("snapshots", {**row, "content": content}, "r", index)
        assert link_text("snapshots", {**row, "content": encoded}, "r", index) == plain
    assert json_text(encoded) == encoded.text and json_text(content) == json.dumps(content)
    store = open_store(tmp_path / "s.db")
    try:
        store.create_run(RunRecord("r", "n", {}, 0))
        with store._engine.begin() as conn:
            conn.execute(
                sa.insert(S.snapshots),
                [{**row, "id": 999, "chain_index": 999, "hash": "h", "content": encoded}],
            )
            query = sa.select(S.snapshots.c.content).where(S.snapshots.c.id == 999)
            stored = conn.execute(query).scalar_one()
        assert stored == content
    finally:
        store.close()


@pytest.mark.parametrize(
    "value",
    [
        {"b": 1, "a": [1.5, 0.0, -0.0, float("nan"), float("inf"), 10**20, True, None]},
        {"ü": 'naïve ✓ \u2028 "quoted"\n', "nested": {"z": {"y": [{"x": 1e-7}]}}},
        {"tuple": (1, 2), "empty": {}, "list": []},
        {},
    ],
)
def test_the_prebuilt_link_encoder_gives_the_canonical_text(value):
    """The C encoder built once (`chain._encode`) writes what `_CANONICAL.encode` wrote: link
    texts, and so every stored hash, stay byte for byte."""
    from pedagogy.memory.chain import _CANONICAL, Encoded, _encode

    assert _encode(value) == _CANONICAL.encode(value)
    assert _encode(Encoded(value, "x")) == _CANONICAL.encode(value)


def test_a_cycle_or_an_object_in_a_link_is_a_store_error():
    from pedagogy.memory.chain import canonical

    cycle: dict = {}
    cycle["self"] = cycle
    with pytest.raises(StoreError, match="not JSON-serialisable"):
        canonical(cycle, "turns row 't1'")
    with pytest.raises(StoreError, match="not JSON-serialisable"):
        canonical({"a": object()}, "turns row 't1'")


def test_a_snapshot_built_from_a_row_is_what_the_constructor_builds():
    from pedagogy.memory.chain import Encoded

    content = {"id": "e1", "round": 2, "decisions": {"ü": [1.5, None]}}
    made = Encoded.of_row(content, "episodes", "e1")
    assert type(made) is Encoded and made == content
    assert made.text == Encoded(content, "episodes row 'e1'").text
    with pytest.raises(StoreError, match="episodes row 'e1'"):
        Encoded.of_row({"x": object()}, "episodes", "e1")
