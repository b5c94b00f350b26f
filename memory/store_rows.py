"""Rows in and out of the store's tables: record <-> row, datetimes in UTC, and the executemany
plan of an INSERT on a positional driver (`StoreCore._insert_many`)."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import fields
from datetime import datetime, timezone
from functools import cache
from operator import attrgetter, itemgetter
from typing import Any, TypeVar

from sqlalchemy import Table, insert
from sqlalchemy.engine import Dialect

from pedagogy.memory.records import TurnRecord

R = TypeVar("R")
_CHUNK = 500
"""Ids per IN (...) list: far below SQLite's and PostgreSQL's parameter limits."""


def _reason(exc: BaseException) -> str:
    orig = getattr(exc, "orig", None) or exc
    text = " ".join(str(orig).split())
    return text[:300] or type(orig).__name__


def _now() -> datetime:
    return datetime.now(timezone.utc)


def _to_db(dt: datetime | None) -> datetime:
    # SQLite drops the offset: store UTC everywhere, attach it again on the way out.
    if dt is None:
        return _now()
    return dt.replace(tzinfo=timezone.utc) if dt.tzinfo is None else dt.astimezone(timezone.utc)


def _from_db(dt: datetime | None) -> datetime | None:
    if dt is None:
        return None
    return dt.replace(tzinfo=timezone.utc) if dt.tzinfo is None else dt.astimezone(timezone.utc)


@cache
def _names(cls: type) -> tuple[str, ...]:
    return tuple(f.name for f in fields(cls))


@cache
def _row_reader(
    cls: type, skip: tuple[str, ...]
) -> tuple[tuple[str, ...], Callable[[Any], tuple[Any, ...]], tuple[str, ...]]:
    """The field names of `cls` less `skip`, a getter of their values (one C call), and the
    fields that may hold a datetime (typed datetime or Any; the others are left unchecked)."""
    names = tuple(n for n in _names(cls) if n not in skip)
    pick = attrgetter(*names)
    getter = pick if len(names) > 1 else (lambda record: (pick(record),))
    types = {f.name: str(f.type) for f in fields(cls)}
    dated = tuple(n for n in names if "datetime" in types[n] or "Any" == types[n])
    return names, getter, dated


def _row(record: Any, skip: tuple[str, ...] = (), **extra: Any) -> dict[str, Any]:
    """Column values from the record's fields of the same name, plus `extra`."""
    names, getter, dated = _row_reader(type(record), skip)
    row = dict(zip(names, getter(record)))
    for name in dated:
        value = row[name]
        if isinstance(value, datetime):
            row[name] = _to_db(value)
    row.update(extra)
    return row


def _record(cls: type[R], row: Any, **extra: Any) -> R:
    """A record from the row's columns of the same name as its fields, plus `extra`."""
    mapping = row._mapping
    values = {n: mapping[n] for n in _names(cls) if n in mapping}
    for name, value in values.items():
        if isinstance(value, datetime):
            values[name] = _from_db(value)
    values.update(extra)
    return cls(**values)


def _turn(row: Any) -> TurnRecord:
    turn = _record(TurnRecord, row)
    turn.detail = turn.detail or {}  # NULL: a turn that is not an acting step
    return turn


_UNPLANNED = object()


def _insert_plan(
    dialect: Dialect, table: Table, keys: tuple[str, ...]
) -> tuple[str, Callable[[dict[str, Any]], tuple[Any, ...]], list[tuple[int, Any]]] | None:
    """The INSERT of `keys` into `table` for a positional driver: its SQL, a getter of a row's
    values in parameter order, and (position, bind processor) for the columns that have one.
    None when Core would add anything to the rows' values (a column left out with a Python-side
    default) or the driver takes named parameters."""
    if any(c.default is not None for c in table.columns if c.key not in keys):
        return None
    compiled = insert(table).compile(dialect=dialect, column_keys=list(keys))
    names = compiled.positiontup
    if not compiled.positional or names is None or sorted(names) != sorted(keys):
        return None
    processors = []
    for i, name in enumerate(names):
        process = table.c[name].type.dialect_impl(dialect).bind_processor(dialect)
        if process is not None:
            processors.append((i, process))
    pick = itemgetter(*names)
    getter = pick if len(names) > 1 else (lambda row: (pick(row),))
    return str(compiled), getter, processors


def _chunks(items: Sequence[Any]) -> Iterator[Sequence[Any]]:
    for i in range(0, len(items), _CHUNK):
        yield items[i : i + _CHUNK]
