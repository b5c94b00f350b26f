"""SQLStore: the Store protocol over SQLAlchemy Core, for SQLite files and PostgreSQL.

Why it looks the way it does:
- Writes are Core `insert(...)` executemany calls inside ONE transaction per method call. Measured
  here: Core executemany is ~10x faster than the ORM and ~200x faster than a commit per row, so
  `record_episodes` takes a whole round (episodes, turns, verdicts, explanations) at once.
- The schema is created by the Alembic migration in `migrations/`, run in code; a database already
  at head is left alone, so opening a store is cheap.
- Every turn, tool call, verdict, explanation, decision and dataset item is a link of its run's
  hash chain, in write order, in the transaction that writes it (`pedagogy.memory.chain`: hash =
  H(previous hash + canonical JSON of the row), H an HMAC when the run is keyed). The end of each
  chain lives in `chain_heads`; updating that row first in every writing transaction serialises
  writers of one run (a row lock on PostgreSQL, the write lock on SQLite), so concurrent workers
  cannot fork a chain. An acting agent's tool calls come each right after the turn that asked for
  it. A link covers its row's id, so rows with integer ids take them before the insert
  (`_next_ids`). `pedagogy.memory.audit` verifies chains.
- SQLite runs in WAL mode with synchronous=NORMAL (measured: ~6x faster commits than the default)
  and foreign keys on.

`SQLStore` is composed of one part per concern: opening (`store_open`), runs and problems
(`store_runs`), episodes and the chain (`store_episodes`), training (`store_training`), curriculum,
decisions, evaluations and accounting (`store_results`), on a shared base (`store_core`); row
helpers are in `store_rows`. Every name this module had is still importable from it.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from sqlalchemy import func, select

from pedagogy.memory import schema as S
from pedagogy.memory.store_episodes import EpisodesMixin
from pedagogy.memory.store_open import (
    MIGRATIONS,
    OpeningMixin,
    _sqlalchemy_url,
    mask_url,
    new_sqlite_paths,
    redact_urls,
)
from pedagogy.memory.store_results import ResultsMixin

# The row helpers, importable from here as before the split.
from pedagogy.memory.store_rows import _CHUNK, _from_db, _names, _now, _record, _row, _to_db  # noqa: F401
from pedagogy.memory.store_runs import RunsMixin
from pedagogy.memory.store_training import TrainingMixin

__all__ = [
    "MIGRATIONS",
    "SQLStore",
    "discard_if_unused",
    "mask_url",
    "new_sqlite_paths",
    "open_store",
    "redact_urls",
]


def open_store(url: str | os.PathLike[str] | None, *, create: bool = True) -> SQLStore:
    """Open (and, with create=True, create or upgrade) the database at `url`.

    `url` is an SQLAlchemy URL (`sqlite:///runs/p.db`, `postgresql://user:pw@host/db`) or a plain
    file path, taken as an SQLite file. None opens a private in-memory SQLite database: nothing
    persists after close().

    create=False is for readers (`pedagogy runs`, `show`, ...): it never creates a file or a
    schema, and a missing file, a database without the pedagogy schema or a damaged SQLite file
    is a one-line StoreError naming it. An existing pedagogy database at an older schema revision
    is still upgraded in place, as every opener does.
    """
    return SQLStore(url, create=create)


def discard_if_unused(store: SQLStore, new: Sequence[Path]) -> None:
    """Close `store`, then delete the SQLite file and folders of `new` (from `new_sqlite_paths`
    before opening it) if no run was recorded in it: a run that fails before its first row leaves
    nothing behind. A file another connection still has open (its -wal file outlives our close)
    is kept."""
    runs: int | None = None
    if new:
        try:
            with store._engine.connect() as conn:
                runs = conn.scalar(select(func.count()).select_from(S.runs))
        except Exception:  # damaged or half-created: keep it for the user to look at
            runs = None
    store.close()
    if not new or runs != 0 or Path(f"{new[0]}-wal").exists():
        return
    for suffix in ("", "-wal", "-shm", "-journal"):
        Path(f"{new[0]}{suffix}").unlink(missing_ok=True)
    for folder in new[1:]:
        try:
            folder.rmdir()
        except OSError:  # not empty: something else was put there
            break


class SQLStore(OpeningMixin, RunsMixin, EpisodesMixin, TrainingMixin, ResultsMixin):
    """A Store on any SQLAlchemy database (tested: SQLite files, PostgreSQL)."""

    def __init__(self, url: str | os.PathLike[str] | None = None, *, create: bool = True):
        raw = _sqlalchemy_url(None if url is None else os.fspath(url))
        self.url = mask_url(raw)
        """Database URL with any password masked."""
        self._opened = False
        self._insert_plans: dict[tuple[str, tuple[str, ...]], Any] = {}
        self._engine = self._make_engine(raw, create)
        try:
            self._open(create)
        except BaseException:
            self._engine.dispose()
            raise
        self._opened = True

    def close(self) -> None:
        self._engine.dispose()

    def __enter__(self) -> SQLStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"SQLStore({self.url!r})"
