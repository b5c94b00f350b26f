"""The run lease: one process at a time works on a run.

The process running a run holds its lease: `runs.lease_holder` ("host:pid:token") and
`runs.lease_heartbeat`, refreshed every `HEARTBEAT_S` seconds by a background thread. Another
process takes the lease (resumes the run) only when it is free or stale: the holder's heartbeat
is older than `stale_after()` seconds, or the holder ran on this host and its process is gone (a
SIGKILL, a crash, a reboot: resumable at once). A run whose status still says `running` but whose
lease is not live was interrupted, and is shown so (`run_status`).

Taking the lease is one transaction that first takes the run row's write lock (a row lock on
PostgreSQL, the database's write lock on SQLite), so of two processes resuming at once exactly
one gets it; the other is refused with `RunInUse`.
"""

from __future__ import annotations

import os
import secrets
import socket
import threading
from datetime import datetime, timezone
from typing import TYPE_CHECKING

from pedagogy.errors import RunInUse

if TYPE_CHECKING:
    from pedagogy.memory.records import RunRecord
    from pedagogy.memory.store import SQLStore

HEARTBEAT_S = 5.0
"""Seconds between heartbeats."""
STALE_ENV = "PEDAGOGY_LEASE_STALE_S"
DEFAULT_STALE_S = 60.0
"""Seconds without a heartbeat after which a lease held on another host counts as abandoned."""


def new_holder() -> str:
    """A holder id for this process: "host:pid:token" (the token tells two leases of one
    process apart)."""
    return f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(4)}"


def stale_after() -> float:
    """Seconds without a heartbeat after which a lease is abandoned (PEDAGOGY_LEASE_STALE_S)."""
    try:
        return float(os.environ.get(STALE_ENV) or DEFAULT_STALE_S)
    except ValueError:
        return DEFAULT_STALE_S


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    try:  # a zombie (killed, not yet reaped by its parent) is gone too
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as f:
            return f.read().rpartition(")")[2].split()[0] != "Z"
    except (OSError, IndexError):
        return True


def _parse(holder: str) -> tuple[str, int | None]:
    host, _, rest = holder.rpartition(":")[0].rpartition(":")
    try:
        return host, int(rest)
    except ValueError:
        return host, None


def _age(heartbeat: datetime | None, now: datetime) -> float | None:
    if heartbeat is None:
        return None
    if heartbeat.tzinfo is None:
        heartbeat = heartbeat.replace(tzinfo=timezone.utc)
    return (now - heartbeat).total_seconds()


def is_live(
    holder: str | None,
    heartbeat: datetime | None,
    now: datetime | None = None,
    stale: float | None = None,
) -> bool:
    """Whether a lease is held by a process that is still working (see the module doc)."""
    if not holder:
        return False
    now = now or datetime.now(timezone.utc)
    age = _age(heartbeat, now)
    if age is None or age > (stale_after() if stale is None else stale):
        return False
    host, pid = _parse(holder)
    if host == socket.gethostname() and pid is not None:
        return _pid_alive(pid)
    return True


def run_status(run: RunRecord, now: datetime | None = None) -> str:
    """The run's status as `pedagogy runs` shows it: `interrupted` for a run stored as running
    whose process is gone (no live lease)."""
    if run.status == "running" and not is_live(run.lease_holder, run.lease_heartbeat, now):
        return "interrupted"
    return run.status


def refusal(run_id: str, holder: str, heartbeat: datetime | None) -> RunInUse:
    host, pid = _parse(holder)
    age = _age(heartbeat, datetime.now(timezone.utc))
    beat = "" if age is None else f", last heartbeat {max(age, 0):.0f} s ago"
    return RunInUse(
        f"run {run_id} is being run by another process (host {host}, pid {pid}{beat}); wait for "
        f"it to finish or stop it first (a run whose process died can be resumed at once on the "
        f"same host, from another host {stale_after():.0f} s after its last heartbeat)"
    )


class Lease:
    """This process's hold on a run: a daemon thread refreshes the heartbeat; `check` raises
    RunInUse once another process has taken the run over (this one was taken for dead)."""

    def __init__(self, store: SQLStore, run_id: str, holder: str, interval: float = HEARTBEAT_S):
        self.store, self.run_id, self.holder, self.interval = store, run_id, holder, interval
        self.lost = False
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> Lease:
        # An in-memory database is this process's alone (and its one connection must not be
        # shared with a second thread).
        if self.store.url != "sqlite://":
            self._thread = threading.Thread(
                target=self._beat, name=f"lease-{self.run_id}", daemon=True
            )
            self._thread.start()
        return self

    def _beat(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                if not self.store.heartbeat(self.run_id, self.holder):
                    self.lost = True
                    return
            except Exception:  # a busy or unreachable database: try again next beat
                continue

    def check(self) -> None:
        if self.lost:
            raise RunInUse(
                f"run {self.run_id} was taken over by another process (this one missed its "
                f"heartbeats for over {stale_after():.0f} s); stopping here"
            )

    def release(self) -> None:
        """Stop the heartbeat and free the run (if this process still holds it)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=self.interval + 35)
        if not self.lost:
            self.store.release_run(self.run_id, self.holder)
