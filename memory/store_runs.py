"""Runs, the run lease and problems."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from sqlalchemy import Connection, insert, select, update

from pedagogy.errors import StoreError
from pedagogy.memory import schema as S
from pedagogy.memory.chain import ChainWriter, audit_key
from pedagogy.memory.records import DecisionRecord, ModelVersionRecord, RunRecord
from pedagogy.memory.store_core import StoreCore
from pedagogy.memory.store_open import redact_urls
from pedagogy.memory.store_rows import _chunks, _now, _record, _row, _to_db

if TYPE_CHECKING:
    from pedagogy.domains.base import Problem


_FINAL = {"completed", "failed", "interrupted", "budget_exhausted"}


class RunsMixin(StoreCore):
    """Runs, their lease (`pedagogy.memory.lease`) and problems."""

    def create_run(
        self,
        run: RunRecord,
        versions: Sequence[ModelVersionRecord] = (),
        holder: str | None = None,
        *,
        decisions: Sequence[DecisionRecord] = (),
    ) -> None:
        """Also its base model `versions`, `decisions` made before it started and, given a
        `holder`, its lease (`memory.lease`), in the same transaction: a run row always has its
        base versions."""
        created = _to_db(run.created_at)
        with self._writing(f"create run {run.id!r}") as conn:
            if conn.execute(select(S.runs.c.id).where(S.runs.c.id == run.id)).first():
                raise StoreError(
                    f"run id {run.id!r} already exists in {self.url}; choose another id or resume it"
                )
            config = redact_urls(run.config)
            row = _row(run, created_at=created, config=config)
            if holder is not None:
                row.update(lease_holder=holder, lease_heartbeat=_now())
            conn.execute(insert(S.runs), [row])
            key = audit_key()
            head = {"run_id": run.id, "last_hash": "", "length": 0, "full_from": 0}
            conn.execute(insert(S.chain_heads), [{**head, "keyed": key is not None}])
            # Link 0 says whether the run is keyed, under the key: clearing `keyed` afterwards
            # breaks the chain for anyone who holds the key.
            chain = ChainWriter(run.id, "", 0, key)
            self._snapshot(conn, chain, "runs", [row], [{"keyed": key is not None}])
            for version in versions:
                self._insert_version(conn, version, chain)
            if decisions:
                self._link_decisions(conn, decisions, {run.id: chain})
            self._save_chains(conn, {run.id: chain})

    def get_run(self, run_id: str) -> RunRecord:
        with self._engine.connect() as conn:
            row = conn.execute(select(S.runs).where(S.runs.c.id == run_id)).first()
        if row is None:
            raise self._unknown_run(run_id)
        return _record(RunRecord, row)

    def list_runs(self) -> list[RunRecord]:
        with self._engine.connect() as conn:
            rows = conn.execute(select(S.runs).order_by(S.runs.c.created_at, S.runs.c.id))
            return [_record(RunRecord, r) for r in rows]

    def set_run_status(self, run_id: str, status: str, error: str | None = None) -> None:
        values: dict[str, Any] = {"status": status, "error": error}
        values["finished_at"] = _now() if status in _FINAL else None
        with self._writing(f"set status of run {run_id!r}") as conn:
            result = conn.execute(update(S.runs).where(S.runs.c.id == run_id).values(**values))
            if result.rowcount == 0:
                raise self._unknown_run(run_id)

    # --- the run lease (pedagogy.memory.lease) ---------------------------------------------------

    def acquire_run(self, run_id: str, holder: str) -> RunRecord:
        """Take the run's lease for `holder` and mark it running; RunInUse when another live
        process holds it. Returns the run as it was before."""
        from pedagogy.memory.lease import is_live, refusal

        r = S.runs
        with self._writing(f"take the lease of run {run_id!r}") as conn:
            # A no-op UPDATE first takes the row's (PostgreSQL) or the database's (SQLite) write
            # lock, so two processes cannot both see the lease free.
            conn.execute(update(r).where(r.c.id == run_id).values(lease_holder=r.c.lease_holder))
            row = conn.execute(select(r).where(r.c.id == run_id)).first()
            if row is None:
                raise self._unknown_run(run_id)
            before = _record(RunRecord, row)
            held, beat = before.lease_holder, before.lease_heartbeat
            if held and held != holder and is_live(held, beat):
                raise refusal(run_id, held, beat)
            values = {"lease_holder": holder, "lease_heartbeat": _now(), "status": "running"}
            conn.execute(
                update(r).where(r.c.id == run_id).values(**values, error=None, finished_at=None)
            )
        return before

    def heartbeat(self, run_id: str, holder: str) -> bool:
        """Refresh the lease; False when `holder` no longer holds it."""
        r = S.runs
        mine = (r.c.id == run_id) & (r.c.lease_holder == holder)
        with self._writing(f"refresh the lease of run {run_id!r}") as conn:
            return conn.execute(update(r).where(mine).values(lease_heartbeat=_now())).rowcount == 1

    def release_run(self, run_id: str, holder: str) -> None:
        """Free the run's lease if `holder` still holds it."""
        r = S.runs
        mine = (r.c.id == run_id) & (r.c.lease_holder == holder)
        with self._writing(f"release the lease of run {run_id!r}") as conn:
            conn.execute(update(r).where(mine).values(lease_holder=None, lease_heartbeat=None))

    def set_run_budget(self, run_id: str, budget: dict[str, Any]) -> None:
        """Replace the `budget` section of a run's stored config (a resume with other limits)."""
        with self._writing(f"set the budget of run {run_id!r}") as conn:
            chain = self._lock_chain(conn, run_id)
            row = conn.execute(select(S.runs.c.config).where(S.runs.c.id == run_id)).first()
            if row is None:
                raise self._unknown_run(run_id)
            config = {**row[0], "budget": dict(budget)}
            conn.execute(update(S.runs).where(S.runs.c.id == run_id).values(config=config))
            self._resnapshot(conn, chain, "runs", S.runs.c.id == run_id)
            self._save_chains(conn, {run_id: chain})

    # --- problems ------------------------------------------------------------------------------

    def _insert_ignoring(self, conn: Connection, table: Any, rows: list[dict[str, Any]]) -> None:
        """Insert rows, skipping those whose primary key is already stored."""
        name = conn.dialect.name
        if name in ("sqlite", "postgresql"):
            module = __import__(f"sqlalchemy.dialects.{name}", fromlist=["insert"])
            conn.execute(module.insert(table).on_conflict_do_nothing(index_elements=["id"]), rows)
            return
        ids = [r["id"] for r in rows]
        stored: set[str] = set()
        for chunk in _chunks(ids):
            stored.update(conn.scalars(select(table.c.id).where(table.c.id.in_(chunk))))
        fresh = [r for r in rows if r["id"] not in stored]
        if fresh:
            conn.execute(insert(table), fresh)

    def add_problems(self, problems: Sequence[Problem]) -> None:
        rows: dict[str, dict[str, Any]] = {}
        now = _now()
        for p in problems:
            rows.setdefault(p.id, _row(p, id=p.id, created_at=now))
        if rows:
            with self._writing("add problems") as conn:
                self._insert_ignoring(conn, S.problems, list(rows.values()))

    def get_problems(self, ids: Sequence[str]) -> dict[str, Problem]:
        from pedagogy.domains.base import Problem

        found: dict[str, Problem] = {}
        unique = list(dict.fromkeys(ids))
        t = S.problems
        with self._engine.connect() as conn:
            for chunk in _chunks(unique):
                for r in conn.execute(select(t).where(t.c.id.in_(chunk))):
                    found[r.id] = _record(Problem, r)
        return found
