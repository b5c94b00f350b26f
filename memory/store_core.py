"""The base of `SQLStore`'s parts: transactions, errors naming the run, chain locking and the
inserts of chained rows."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any

from sqlalchemy import Connection, Engine, Table, func, insert, select, update
from sqlalchemy.exc import DBAPIError, IntegrityError

from pedagogy.errors import StoreError
from pedagogy.memory import schema as S
from pedagogy.memory.chain import (
    KEY_ENV,
    ChainWriter,
    Encoded,
    audit_key,
    row_content,
    weight_files,
)
from pedagogy.memory.records import DecisionRecord, ModelVersionRecord
from pedagogy.memory.store_rows import _UNPLANNED, _insert_plan, _reason, _row, _to_db


class StoreCore:
    """What every part of `SQLStore` shares: its engine, the writing transaction, and the run's
    hash chain while a transaction appends to it (`pedagogy.memory.chain`)."""

    url: str
    """Database URL with any password masked."""
    _engine: Engine
    _opened: bool
    _insert_plans: dict[tuple[str, tuple[str, ...]], Any]

    @contextmanager
    def _writing(self, what: str) -> Iterator[Connection]:
        try:
            with self._engine.begin() as conn:
                yield conn
        except IntegrityError as exc:
            raise StoreError(
                f"cannot {what} in {self.url}: {_reason(exc)}; a referenced row is missing or an id "
                "is already taken (record runs, problems, episodes and versions before what "
                "points at them)"
            ) from exc
        except DBAPIError as exc:
            raise StoreError(f"cannot {what} in {self.url}: {_reason(exc)}") from exc

    def _unknown_run(self, run_id: str) -> StoreError:
        return StoreError(
            f"unknown run id {run_id!r} in {self.url}; list runs with `pedagogy runs`"
        )

    def _require_run(self, conn: Connection, run_id: str) -> None:
        if conn.execute(select(S.runs.c.id).where(S.runs.c.id == run_id)).first() is None:
            raise self._unknown_run(run_id)

    def _lock_chain(self, conn: Connection, run_id: str) -> ChainWriter:
        h = S.chain_heads
        # A no-op UPDATE first: it takes the row lock (PostgreSQL) or the write lock (SQLite)
        # before anything is read, so two writers of one run cannot both extend the same head.
        locked = conn.execute(update(h).where(h.c.run_id == run_id).values(length=h.c.length))
        if locked.rowcount == 0:
            raise self._unknown_run(run_id)
        row = conn.execute(
            select(h.c.last_hash, h.c.length, h.c.keyed).where(h.c.run_id == run_id)
        ).one()
        key = audit_key() if row.keyed else None  # an unkeyed run stays unkeyed
        if row.keyed and key is None:
            raise StoreError(
                f"run {run_id!r} in {self.url} is chained with a secret key; set {KEY_ENV} to "
                "the key it was written with to add to it"
            )
        return ChainWriter(run_id, row.last_hash, row.length, key)

    def _save_chains(self, conn: Connection, chains: dict[str, ChainWriter]) -> None:
        h = S.chain_heads
        for c in chains.values():
            conn.execute(
                update(h).where(h.c.run_id == c.run_id).values(last_hash=c.last, length=c.length)
            )

    def _insert_many(self, conn: Connection, table: Table, rows: list[dict[str, Any]]) -> None:
        """Insert `rows` (dicts with the same keys) in one executemany, as `insert(table)` would.

        On SQLite the statement is compiled once per table and key set and the rows go to the
        driver as tuples through each column type's own bind processor (the values stored are
        those Core would store): Core builds a parameter dict per row, which cost about as much
        as hashing the rows onto the chain. Elsewhere, and for key sets that leave a column with
        a Python-side default out, Core's executemany."""
        if not rows:
            return
        plan = _UNPLANNED
        if conn.dialect.name == "sqlite":
            key = (table.name, tuple(rows[0]))
            plan = self._insert_plans.get(key, _UNPLANNED)
            if plan is _UNPLANNED:
                plan = self._insert_plans[key] = _insert_plan(conn.dialect, table, key[1])
        if plan is None or plan is _UNPLANNED:
            conn.execute(insert(table), rows)
            return
        sql, getter, processors = plan
        if processors:
            params = []
            for row in rows:
                values = list(getter(row))
                for i, process in processors:
                    values[i] = process(values[i])
                params.append(tuple(values))
        else:
            params = [getter(row) for row in rows]
        conn.exec_driver_sql(sql, params)

    def _insert_links(
        self, conn: Connection, table: Any, rows: list[dict[str, Any]], chain: ChainWriter
    ) -> None:
        """Insert rows of a table with integer ids as the next links of `chain`. A link covers its
        row's id, so the ids are taken first (`_next_ids`) and each row goes in with its hash."""
        if not rows:
            return
        for row, row_id in zip(rows, self._next_ids(conn, table, len(rows))):
            row["id"] = row_id
            chain.link(table.name, row)
        self._insert_many(conn, table, rows)

    def _next_ids(self, conn: Connection, table: Any, n: int) -> list[int]:
        """`n` unused ids of `table`: from its sequence on PostgreSQL (safe beside other
        writers); on SQLite after the largest, as SQLite itself would, since this transaction
        already holds the database's write lock (`_lock_chain`)."""
        if conn.dialect.name == "postgresql":
            sequence = func.pg_get_serial_sequence(table.name, "id")
            query = select(func.nextval(sequence)).select_from(func.generate_series(1, n))
            return sorted(conn.scalars(query))
        top = conn.scalar(select(func.coalesce(func.max(table.c.id), 0)))
        return list(range(top + 1, top + 1 + n))

    def _link_decisions(
        self, conn: Connection, decisions: Sequence[DecisionRecord], chains: dict[str, ChainWriter]
    ) -> None:
        by_run: dict[str, list[dict[str, Any]]] = defaultdict(list)
        for d in decisions:
            by_run[d.run_id].append(_row(d))
        for run_id, rows in by_run.items():
            self._insert_links(conn, S.decisions, rows, chains[run_id])

    def _insert_version(
        self, conn: Connection, version: ModelVersionRecord, chain: ChainWriter
    ) -> None:
        """Insert the version unless its id is stored, with its snapshot (and its files' hashes)
        as the next link of `chain`, its run's."""
        t = S.model_versions
        if conn.execute(select(t.c.id).where(t.c.id == version.id)).first() is None:
            row = _row(version, created_at=_to_db(version.created_at))
            conn.execute(insert(t), [row])
            self._snapshot(conn, chain, "model_versions", [row], [self._files(version.path)])

    @staticmethod
    def _files(path: str) -> dict[str, Any]:
        return {"files": weight_files(path)}

    def _snapshot(
        self,
        conn: Connection,
        chain: ChainWriter,
        subject: str,
        rows: Sequence[Mapping[str, Any]],
        extra: Sequence[dict[str, Any]] | None = None,
    ) -> None:
        """Chain a copy of each row of `subject` (one of chain.SNAPSHOT_TABLES) as written."""
        snaps = []
        for i, row in enumerate(rows):
            content = row_content(subject, row)
            if extra is not None:
                content.update(extra[i])
            subject_id = str(row["id"])
            snaps.append(
                {
                    "run_id": chain.run_id,
                    "subject": subject,
                    "subject_id": subject_id,
                    "content": Encoded.of_row(content, subject, subject_id),
                }
            )
        self._insert_links(conn, S.snapshots, snaps, chain)

    def _resnapshot(self, conn: Connection, chain: ChainWriter, subject: str, where: Any) -> None:
        """Chain a copy of the rows of `subject` that `where` selects, as now stored (after a
        change). A model version keeps the file hashes of its last copy: its files are those it
        was made with."""
        table = S.metadata.tables[subject]
        rows = [dict(r._mapping) for r in conn.execute(select(table).where(where).order_by("id"))]
        extra = None
        if subject == "model_versions" and rows:
            s = S.snapshots
            ids = [str(r["id"]) for r in rows]
            query = (
                select(s.c.subject_id, s.c.content)
                .where(s.c.run_id == chain.run_id, s.c.subject == subject)
                .where(s.c.subject_id.in_(ids))
                .order_by(s.c.chain_index)
            )
            last = {sid: content for sid, content in conn.execute(query)}
            extra = [{"files": (last.get(i) or {}).get("files")} for i in ids]
        self._snapshot(conn, chain, subject, rows, extra)
