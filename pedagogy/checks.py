"""Checks of the paths and ids a command is given, made before it writes anything, and the
command hints its messages give (with `--db` wherever the database is not the default one)."""

from __future__ import annotations

import os
import shlex
import tempfile
from pathlib import Path
from typing import Any
from urllib.parse import unquote

from pedagogy.errors import ConfigError, StoreError

WORKDIR_FIX = "choose a folder you can write to: --workdir DIR or `workdir:` in the config"
DB_FIX = "choose a database file in a folder you can write to: --db PATH or `db:` in the config"


def require_writable_folder(path: Path | str, what: str, fix: str) -> None:
    """Raise ConfigError, naming `what` (the option and its value), the reason and `fix`,
    unless `path` is a folder this process can write in or can create.

    The check creates and removes an empty folder in the nearest existing one: permission bits
    do not stop root, and /proc or a read-only mount refuse what `os.access` allows. It leaves
    nothing behind."""
    path = Path(path).expanduser().absolute()
    existing = path
    try:
        while not existing.exists():
            existing = existing.parent
    except OSError as err:  # e.g. a folder on the way that cannot be read
        raise ConfigError(f"{what}: {err.strerror} ({err.filename}); {fix}") from None
    if not existing.is_dir():
        raise ConfigError(f"{what}: {existing} is a file, not a folder; {fix}")
    try:
        os.rmdir(tempfile.mkdtemp(prefix=".pedagogy-write-check-", dir=existing))
    except OSError as err:
        raise ConfigError(f"{what}: cannot write in {existing} ({err.strerror}); {fix}") from None


def sqlite_path(url: str) -> Path | None:
    """The file of a SQLite URL or plain path; None for an in-memory database or a server."""
    if url in ("", ":memory:"):
        return None
    if "://" not in url:
        return Path(url).expanduser()
    if url.startswith("sqlite:///") and url not in ("sqlite:///", "sqlite:///:memory:"):
        return Path(unquote(url[len("sqlite:///") :].split("?")[0]))
    return None


def require_writable_db(url: str) -> None:
    """A SQLite database's folder must be writable (SQLite writes its journal next to it)."""
    file = sqlite_path(url)
    if file is not None:
        require_writable_folder(file.parent, f"db {file}", DB_FIX)


def require_output(out: Path, fmt: str) -> None:
    """`export --out`: a file (jsonl) or a folder (hf) this process can write."""
    out = Path(out).expanduser()
    fix = "choose a path you can write to with --out"
    if fmt == "jsonl":
        if out.is_dir():
            raise ConfigError(
                f"--out {out} is a folder; give a file path, e.g. --out {out / 'records.jsonl'}"
            )
        if out.exists() and not os.access(out, os.W_OK):
            raise ConfigError(f"--out {out}: the file is not writable; {fix}")
        require_writable_folder(out.parent, f"--out {out}", fix)
    else:
        if out.exists() and not out.is_dir():
            raise ConfigError(
                f"--out {out} is a file, and --format hf writes a folder; give a folder's path"
            )
        require_writable_folder(out, f"--out {out}", fix)


def db_option(url: str | None) -> str:
    """` --db URL` for a command hint, or "" when `url` is None or the database that commands
    open without --db (the default config's, from the current directory). A SQLite database is
    named by its file."""
    if not url:
        return ""
    from pedagogy.config import load_config

    mine, default = sqlite_path(url), sqlite_path(load_config(None).db_url())
    if mine is None:
        return f" --db {shlex.quote(url)}"
    if default is not None and mine.resolve() == default.resolve():
        return ""
    return f" --db {shlex.quote(str(mine))}"


def interrupted_line(run_id: str | None, db: str | None) -> str:
    """What Ctrl-C during `pedagogy run` prints: the command that continues the run."""
    if run_id is None:
        return "interrupted before the run was stored; start it again with the same command"
    return (
        f"interrupted; continue run {run_id} with `pedagogy run --resume {run_id}{db_option(db)}`"
    )


def require_episode(store: Any, run_id: str, episode_id: str, db: str | None) -> None:
    """An unknown episode id: one line saying which command lists the run's episode ids."""
    try:
        store.get_episode(episode_id)
    except StoreError:
        raise StoreError(
            f"unknown episode id {episode_id!r} in run {run_id}; list the run's episode ids "
            f"with `pedagogy show {run_id} --episodes{db_option(db)}`"
        ) from None


def require_model_version(store: Any, version_id: str, db: str | None) -> None:
    """An unknown model version id: one line saying which command lists version ids."""
    try:
        store.get_model_version(version_id)
    except StoreError:
        where = db_option(db)
        raise StoreError(
            f"unknown model version {version_id!r} in {store.url}; `pedagogy show RUN{where}` "
            f"lists a run's model version ids (`pedagogy runs{where}` lists the runs)"
        ) from None
