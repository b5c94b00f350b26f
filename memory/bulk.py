"""Bulk reads of a run's episodes for replay: one query per table for each chunk of ids.

`SQLStore.episodes(with_turns=True)` reads a whole run at once, with verdicts and explanations,
through the generic row mapper, and a replay then read each episode's problem on its own. A
replay of a large run reads it a chunk at a time, episodes with their problems, and only what a
replay serves, selecting only the columns its records need and mapping rows by position: reading
is a large share of a replay's time once no graph is compiled per episode.

These read the store's engine directly (`SQLStore._engine`); for other `Store` implementations
`readable` is False and a caller reads `Store.episodes`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from datetime import datetime
from functools import cache
from typing import TYPE_CHECKING, Any, TypeVar

from sqlalchemy import DateTime, Table, select
from sqlalchemy.pool import StaticPool

from pedagogy.memory import schema as S
from pedagogy.memory.base import Store
from pedagogy.memory.records import EpisodeRecord, ToolCallRecord, TurnRecord
from pedagogy.memory.store_rows import _CHUNK, _from_db, _names

__all__ = ["after_fork", "episode_ids", "episodes_for_replay", "forkable", "readable"]

if TYPE_CHECKING:
    from pedagogy.domains.base import Problem

R = TypeVar("R")


def _engine(store: Store) -> Any:
    return getattr(store, "_engine", None)


def episode_ids(store: Store, run_id: str) -> list[str]:
    """The ids of the run's episodes, in (round, index) order."""
    t = S.episodes
    with _engine(store).connect() as conn:
        query = select(t.c.id).where(t.c.run_id == run_id).order_by(t.c.round, t.c["index"])
        return list(conn.scalars(query))


@cache
def _columns(
    table: Table, cls: type, skip: tuple[str, ...]
) -> tuple[list[Any], list[str], frozenset[str]]:
    """The table's columns that are fields of `cls` (less `skip`), their names, and which hold
    datetimes."""
    names = set(_names(cls)) - set(skip)
    cols = [c for c in table.columns if c.name in names]
    return (
        cols,
        [c.name for c in cols],
        frozenset(c.name for c in cols if isinstance(c.type, DateTime)),
    )


def _reader(
    table: Table, cls: type[R], skip: tuple[str, ...] = ()
) -> tuple[list[Any], Callable[..., R]]:
    """The columns to select for `cls` (less `skip`), and row -> record (plus keyword values)."""
    cols, names, dates = _columns(table, cls, skip)

    def read(row: Any, **extra: Any) -> R:
        values = dict(zip(names, tuple(row)))
        for name in dates:
            if isinstance(values[name], datetime):
                values[name] = _from_db(values[name])
        return cls(**values, **extra)

    return cols, read


def episodes_for_replay(
    store: Store, ids: Sequence[str]
) -> tuple[list[EpisodeRecord], dict[str, Problem]]:
    """The episodes `ids`, in that order (unknown ids are left out), with what a replay serves,
    and their problems by id.

    Each episode comes with its turns (by `seq`) and tool calls (in the order they were made);
    its verdicts and explanations, which a replay derives again, are not read, nor its
    `created_at`. A turn's `request` and `detail` are read only in agent episodes (their
    decisions hold "agent"), whose replay rebuilds the actors from them; elsewhere they are {}
    (a replay serves responses whatever was asked).
    """
    e, t, c, p = S.episodes, S.turns, S.tool_calls, S.problems
    ecols, episode = _reader(e, EpisodeRecord, skip=("created_at",))
    tcols, turn = _reader(t, TurnRecord, skip=("request", "detail"))
    ccols, call = _reader(c, ToolCallRecord)
    pcols, problem = _reader(p, _problem_class())
    by_id: dict[str, EpisodeRecord] = {}
    problems: dict[str, Problem] = {}
    with _engine(store).connect() as conn:
        for chunk in _chunks(list(ids)):
            for row in conn.execute(select(*ecols).where(e.c.id.in_(chunk))).all():
                rec = episode(row)
                by_id[rec.id] = rec
            turns: dict[str, TurnRecord] = {}
            query = (
                select(*tcols).where(t.c.episode_id.in_(chunk)).order_by(t.c.seq, t.c.chain_index)
            )
            for row in conn.execute(query).all():
                rec = turn(row, request={}, detail={})
                by_id[rec.episode_id].turns.append(rec)
                turns[rec.id] = rec
            acting = [i for i in chunk if i in by_id and "agent" in by_id[i].decisions]
            if acting:
                query = select(t.c.id, t.c.request, t.c.detail)
                for turn_id, request, detail in conn.execute(
                    query.where(t.c.episode_id.in_(acting))
                ).all():
                    turns[turn_id].request = request
                    turns[turn_id].detail = detail or {}  # NULL: not an acting step
            query = select(*ccols).where(c.c.episode_id.in_(chunk)).order_by(c.c.chain_index)
            for row in conn.execute(query).all():
                rec = call(row)
                by_id[rec.episode_id].tool_calls.append(rec)
            wanted = select(e.c.problem_id).where(e.c.id.in_(chunk))
            for row in conn.execute(select(p.c.id, *pcols).where(p.c.id.in_(wanted))).all():
                problems[row[0]] = problem(row[1:])
    return [by_id[i] for i in ids if i in by_id], problems


def _problem_class() -> type:
    from pedagogy.domains.base import Problem

    return Problem


def _chunks(items: list[str]) -> Iterator[list[str]]:
    for i in range(0, len(items), _CHUNK):
        yield items[i : i + _CHUNK]


def readable(store: Store) -> bool:
    """Whether `store` can be read in bulk here (an `SQLStore`); else use `Store.episodes`."""
    return _engine(store) is not None


def forkable(store: Store) -> bool:
    """Whether a forked process can open its own connections to `store`'s database: a file or
    a server, not an in-memory SQLite database (one connection, which only this process has)."""
    engine = _engine(store)
    return engine is not None and not isinstance(engine.pool, StaticPool)


def after_fork(store: Store) -> None:
    """In a forked process: forget the parent's pooled connections (without closing them, which
    would close the parent's) so that this process opens its own."""
    _engine(store).dispose(close=False)
