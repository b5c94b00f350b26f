"""Opening a store: database URLs, the engine and its SQLite settings, damaged files, and the
schema migration run in code."""

from __future__ import annotations

import os
import re
import sqlite3
import threading
import time
from importlib.util import find_spec
from pathlib import Path
from typing import Any
from urllib.parse import quote

from sqlalchemy import Connection, Engine, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, DBAPIError, NoSuchModuleError
from sqlalchemy.pool import StaticPool

from pedagogy.errors import StoreError
from pedagogy.memory.chain import json_text
from pedagogy.memory.store_core import StoreCore
from pedagogy.memory.store_rows import _reason

MIGRATIONS = Path(__file__).resolve().parent / "migrations"
_SQLITE_TIMEOUT = 30.0
"""Seconds a SQLite connection waits for another's lock (also when switching a file to WAL)."""
_MIGRATING = threading.Lock()
_MIGRATION_LOCK = 0x7065646167
"""PostgreSQL advisory lock key held while migrating ('pedag')."""
_SQLITE_CORRUPT, _SQLITE_NOTADB = 11, 26


def new_sqlite_paths(url: str | os.PathLike[str] | None) -> list[Path]:
    """The SQLite file at `url` and its missing folders, deepest first, if the file does not exist
    yet; [] for an existing file, an in-memory database or a server."""
    try:
        parsed = make_url(_sqlalchemy_url(None if url is None else os.fspath(url)))
    except ArgumentError:
        return []
    if parsed.get_backend_name() != "sqlite" or parsed.database in (None, "", ":memory:"):
        return []
    path = Path(parsed.database).absolute()
    if path.exists():
        return []
    return [path] + [p for p in path.parents if not p.exists()]


def mask_url(url: str) -> str:
    """The URL with any password replaced by ***."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except ArgumentError:
        return re.sub(r"(://[^:/@]*:)[^@]*@", r"\1***@", url)


def redact_urls(value: Any) -> Any:
    """`value` (a config: dicts, lists, strings) with the password of every URL in it masked, so
    that a stored run config never holds a database or endpoint password."""
    if isinstance(value, str):
        if "://" in value and "@" in value and not any(c.isspace() for c in value):
            return mask_url(value)
        return value
    if isinstance(value, dict):
        return {k: redact_urls(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [redact_urls(v) for v in value]
    return value


def _sqlalchemy_url(url: str | None) -> str:
    if url is None or url in ("", ":memory:", "sqlite://", "sqlite:///:memory:"):
        return "sqlite://"
    if "://" not in url:  # a file path: quoted, so that "?", "#" and "%" stay in the name
        path = str(Path(url).expanduser().resolve())
        return "sqlite:///" + path.replace("%", "%25").replace("?", "%3F").replace("#", "%23")
    if url.startswith("postgres://"):
        url = "postgresql://" + url[len("postgres://") :]
    if url.startswith("postgresql://") and find_spec("psycopg2") is None:
        # SQLAlchemy's default PostgreSQL driver is psycopg2; pedagogy[postgres] installs psycopg 3.
        url = "postgresql+psycopg://" + url[len("postgresql://") :]
    return url


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    _wal_mode(cursor)
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()


def _sqlite_read_pragmas(dbapi_connection: Any, _record: Any) -> None:
    # A reader leaves the journal mode alone: switching to WAL writes into a file that may not be
    # pedagogy's (a pedagogy database is in WAL mode since its creation).
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()


def _wal_mode(cursor: Any) -> None:
    """Switch a SQLite file to WAL (persistent in the file), waiting out other openers.

    Switching needs an exclusive lock, and SQLite answers "database is locked" at once, without
    its busy timeout, while another connection is opening or switching the same new file; so retry
    for as long as the connection's own busy timeout would wait.
    """
    deadline = time.monotonic() + _SQLITE_TIMEOUT
    while True:
        try:
            if cursor.execute("PRAGMA journal_mode").fetchone()[0] != "wal":
                cursor.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() > deadline:
                raise
            time.sleep(0.02)


class OpeningMixin(StoreCore):
    """Connecting to the database, and creating or upgrading its schema."""

    def _open(self, create: bool) -> None:
        try:
            conn = self._engine.connect()
        except DBAPIError as exc:
            fix = (
                "check the --db path and that the file is a pedagogy SQLite database"
                if self._engine.dialect.name == "sqlite"
                else "check the --db URL and that the server is running"
            )
            raise StoreError(f"cannot connect to {self.url}: {_reason(exc)}; {fix}") from exc
        with conn:
            with conn.begin():
                self._migrate(conn, create)
            if self._engine.dialect.name == "sqlite":  # _migrate may have switched them off
                conn.exec_driver_sql("PRAGMA foreign_keys=ON")

    def _make_engine(self, raw: str, create: bool) -> Engine:
        try:
            parsed = make_url(raw)
        except ArgumentError as exc:
            raise StoreError(
                f"invalid database URL {self.url!r}: {exc}; use e.g. sqlite:///runs/pedagogy.db "
                "or postgresql://user:password@host:5432/db"
            ) from exc
        kwargs: dict[str, Any] = {}
        backend = parsed.get_backend_name()
        if backend == "sqlite":
            if parsed.database in (None, "", ":memory:"):
                kwargs.update(poolclass=StaticPool)
            else:
                path = Path(parsed.database).absolute()
                if not create and not path.is_file():
                    raise StoreError(
                        f"no database at {path}; check the --db path (`pedagogy runs --db PATH` "
                        "lists the runs in a database, `pedagogy run` creates one)"
                    )
                if not path.parent.is_dir():
                    raise StoreError(
                        f"cannot open {self.url}: directory {str(path.parent)!r} does not exist; "
                        "create it or choose another --db path"
                    )
                if not create:  # SQLite creates a missing file on connect; mode=rw fails instead
                    query = {**parsed.query, "mode": "rw", "uri": "true"}
                    parsed = parsed.set(database=f"file:{quote(str(path))}", query=query)
            kwargs["connect_args"] = {"check_same_thread": False, "timeout": _SQLITE_TIMEOUT}
            kwargs["json_serializer"] = json_text  # a snapshot's content as encoded for its hash
        elif backend == "postgresql" and parsed.get_driver_name() == "psycopg":
            kwargs["connect_args"] = {"connect_timeout": 10}
        try:
            engine = create_engine(parsed, **kwargs)
        except NoSuchModuleError as exc:
            if backend == "postgresql":
                raise StoreError(
                    f"unknown PostgreSQL driver {parsed.get_driver_name()!r} in {self.url}; use "
                    "postgresql://user:password@host/db with psycopg: pip install "
                    "'pedagogy[postgres]'"
                ) from exc
            raise StoreError(
                f"unsupported database URL {self.url}: {exc}; use sqlite:///path.db or "
                "postgresql://user:password@host/db"
            ) from exc
        except ImportError as exc:
            fix = (
                "pip install 'pedagogy[postgres]'"
                if backend == "postgresql"
                else "install it, or use sqlite:///path.db or postgresql://user:password@host/db"
            )
            raise StoreError(f"no driver for {self.url} ({exc}); {fix}") from exc
        if engine.dialect.name == "sqlite":
            event.listen(engine, "connect", _sqlite_pragmas if create else _sqlite_read_pragmas)
            event.listen(engine, "handle_error", self._damaged)
        return engine

    def _damaged(self, context: Any) -> None:
        """SQLite's "file is not a database" and "database disk image is malformed", at open or
        in any later query, as one StoreError naming the file (not a 150-line traceback)."""
        exc = context.original_exception
        reason = _reason(exc)
        code = (getattr(exc, "sqlite_errorcode", None) or 0) & 0xFF
        if code == _SQLITE_NOTADB or reason == "file is not a database":
            fix = "check the --db path: it must be a pedagogy SQLite database"
        elif (
            code == _SQLITE_CORRUPT
            or reason == "database disk image is malformed"
            # pedagogy writes only UTF-8: other bytes in a name or a text column are damage too
            or isinstance(exc, UnicodeDecodeError)
            or reason.startswith("Could not decode to UTF-8")
        ):
            if not reason.startswith("database disk"):  # not the garbage bytes themselves
                reason = "it holds text that is not UTF-8"
            fix = (
                "the file is damaged: restore it from a backup (`sqlite3 FILE .recover` saves "
                "what is still readable)"
            )
        else:
            return
        what = "cannot use" if self._opened else "cannot connect to"
        raise StoreError(f"{what} {self.url}: {reason}; {fix}") from exc

    def _migrate(self, conn: Connection, create: bool) -> None:
        from alembic import command
        from alembic.config import Config
        from alembic.runtime.migration import MigrationContext
        from alembic.script import ScriptDirectory

        script = ScriptDirectory(str(MIGRATIONS))
        head = script.get_current_head()
        current = MigrationContext.configure(conn).get_current_revision()
        if current == head:
            return
        if current is not None and current not in {r.revision for r in script.walk_revisions()}:
            raise StoreError(
                f"database {self.url} is at schema revision {current!r}, unknown to this version "
                "of pedagogy (written by a newer one?); upgrade pedagogy"
            )
        if current is None and not create:
            raise StoreError(
                f"{self.url} has no pedagogy schema: it is not a pedagogy database; check the "
                "--db path (`pedagogy runs --db PATH` lists the runs in a database)"
            )
        config = Config()
        config.set_main_option("script_location", str(MIGRATIONS))
        config.attributes["connection"] = conn
        # Openers of a new database race: one migrates, the others wait, then see head. Alembic
        # keeps its context in a module global, so threads of one process also take turns.
        with _MIGRATING:
            if conn.dialect.name == "sqlite":
                # Migrations that rebuild a table (SQLite cannot alter a column) must not cascade
                # or fail on the drop of the old copy; checked with foreign_key_check below. The
                # pragma only takes effect outside a transaction, hence before BEGIN.
                conn.exec_driver_sql("PRAGMA foreign_keys=OFF")
                conn.exec_driver_sql("BEGIN IMMEDIATE")
            elif conn.dialect.name == "postgresql":
                conn.exec_driver_sql(f"SELECT pg_advisory_xact_lock({_MIGRATION_LOCK})")
            if MigrationContext.configure(conn).get_current_revision() == head:
                return
            try:
                command.upgrade(config, "head")
            except DBAPIError as exc:
                raise StoreError(
                    f"cannot create the pedagogy schema in {self.url}: {_reason(exc)}; "
                    "check that the database user may create tables"
                ) from exc
            if conn.dialect.name == "sqlite":
                broken = conn.exec_driver_sql("PRAGMA foreign_key_check").fetchall()
                if broken:
                    raise StoreError(
                        f"upgrading {self.url} from revision {current!r} left {len(broken)} rows "
                        f"with broken references (first: table {broken[0][0]!r}); the upgrade was "
                        "rolled back: restore a backup or report it"
                    )
