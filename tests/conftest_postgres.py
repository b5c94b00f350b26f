"""A real, throwaway PostgreSQL server for the tests (a pytest plugin: `pytest_plugins`).

`postgres_url` (session scope) runs `initdb` into a temporary directory, starts the server on a
free port of 127.0.0.1 with its unix sockets in that directory, creates a database and yields a
`postgresql+psycopg://` URL; the server is stopped and the directory removed at the end. Every step
has a timeout. PostgreSQL refuses to run as root, so under root the server runs as the `postgres`
system user that the Debian package creates.

Set PEDAGOGY_TEST_POSTGRES_URL to use an existing server instead.
`postgres_database` (function scope) gives each test a fresh, empty database on that server.
"""

from __future__ import annotations

import glob
import os
import pwd
import shlex
import shutil
import socket
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

_TIMEOUT = 60
"""Seconds allowed for initdb, start, createdb and stop, each."""
_USER = "pedagogy"
"""The superuser name initdb creates (trust authentication, local only)."""


def _postgres_bin() -> Path | None:
    def version(path: str) -> tuple[int, ...]:
        name = Path(path).parent.parent.name
        return tuple(int(p) for p in name.split(".") if p.isdigit())

    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=version)
    if found:
        return Path(found[-1]).parent
    initdb = shutil.which("initdb")
    return Path(initdb).resolve().parent if initdb else None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _run(prefix: list[str], args: list[str], what: str) -> None:
    command = prefix + args
    if prefix and prefix[0] == "su":  # su takes one shell command line
        command = prefix + [shlex.join(args)]
    try:
        subprocess.run(command, check=True, capture_output=True, text=True, timeout=_TIMEOUT)
    except subprocess.TimeoutExpired as exc:
        raise RuntimeError(f"PostgreSQL {what} took more than {_TIMEOUT} s") from exc
    except subprocess.CalledProcessError as exc:
        raise RuntimeError(f"PostgreSQL {what} failed: {exc.stderr or exc.stdout}") from exc


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """URL of a database on a real PostgreSQL server started for this test session."""
    if os.environ.get("PEDAGOGY_TEST_POSTGRES_URL"):
        yield os.environ["PEDAGOGY_TEST_POSTGRES_URL"]
        return
    pytest.importorskip(
        "psycopg", reason="PostgreSQL tests need psycopg: pip install 'psycopg[binary]'"
    )
    bindir = _postgres_bin()
    if bindir is None:
        pytest.skip("PostgreSQL server binaries not found: apt-get install postgresql")
    prefix: list[str] = []
    owner = None
    if os.geteuid() == 0:
        try:
            owner = pwd.getpwnam("postgres")
        except KeyError:
            pytest.skip("running as root and no 'postgres' user: apt-get install postgresql")
        if shutil.which("runuser"):
            prefix = ["runuser", "-u", "postgres", "--"]
        else:
            prefix = ["su", "postgres", "-s", "/bin/sh", "-c"]
    # Not under pytest's tmp dir: that one is private to root, and the server runs as postgres.
    root = Path(tempfile.mkdtemp(prefix="pedagogy-pg-"))
    data, log = root / "data", root / "server.log"
    if owner is not None:
        os.chown(root, owner.pw_uid, owner.pw_gid)
    port = _free_port()
    started = False
    try:
        _run(
            prefix,
            [str(bindir / "initdb"), "-D", str(data), "-U", _USER, "--auth=trust", "-E", "UTF8"]
            + ["--locale=C", "--no-sync"],
            "initdb",
        )
        options = (
            f"-p {port} -k {root} -c listen_addresses=127.0.0.1 -c fsync=off "
            "-c synchronous_commit=off -c full_page_writes=off"
        )
        _run(
            prefix,
            [str(bindir / "pg_ctl"), "-D", str(data), "-l", str(log), "-o", options]
            + ["-w", "-t", str(_TIMEOUT), "start"],
            "start",
        )
        started = True
        _run(
            prefix,
            [str(bindir / "createdb"), "-h", "127.0.0.1", "-p", str(port), "-U", _USER]
            + ["pedagogy_test"],
            "createdb",
        )
        yield f"postgresql+psycopg://{_USER}@127.0.0.1:{port}/pedagogy_test"
    finally:
        if started:
            try:
                _run(
                    prefix,
                    [str(bindir / "pg_ctl"), "-D", str(data), "-m", "immediate", "-w"]
                    + ["-t", str(_TIMEOUT), "stop"],
                    "stop",
                )
            except RuntimeError:
                pass
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def postgres_database(postgres_url: str) -> Iterator[str]:
    """URL of a fresh, empty database on the session's server, dropped after the test."""
    import psycopg
    from sqlalchemy.engine import make_url

    url = make_url(postgres_url)
    name = f"t_{uuid.uuid4().hex[:12]}"
    admin = url.set(drivername="postgresql").render_as_string(hide_password=False)
    with psycopg.connect(admin, autocommit=True, connect_timeout=10) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield url.set(database=name).render_as_string(hide_password=False)
    finally:
        with psycopg.connect(admin, autocommit=True, connect_timeout=10) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
