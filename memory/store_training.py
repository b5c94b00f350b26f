"""Model versions, training jobs and dataset items."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from typing import Any

from sqlalchemy import Connection, insert, select, update

from pedagogy.errors import StoreError
from pedagogy.memory import schema as S
from pedagogy.memory.chain import ChainWriter
from pedagogy.memory.records import (
    DatasetItemRecord,
    DecisionRecord,
    ModelVersionRecord,
    TrainingJobRecord,
)
from pedagogy.memory.store_core import StoreCore
from pedagogy.memory.store_rows import _now, _record, _row, _to_db


class TrainingMixin(StoreCore):
    """Model versions, training jobs and their dataset items."""

    def add_model_version(self, version: ModelVersionRecord) -> None:
        """Idempotent on the id; another id with the same (run, role, number) is an error."""
        with self._writing(f"add model version {version.id!r}") as conn:
            chain = self._lock_chain(conn, version.run_id)
            self._insert_version(conn, version, chain)
            self._save_chains(conn, {version.run_id: chain})

    def set_model_status(self, version_id: str, status: str) -> None:
        """A new link of the run's chain holds the version as it now is: its history of status
        changes is on the chain. Setting the status it has changes nothing and adds no link (a
        node run again after a crash promotes its candidate again: its chain stays as an
        uninterrupted run's)."""
        t = S.model_versions
        with self._writing(f"set status of model version {version_id!r}") as conn:
            run_id = conn.scalar(select(t.c.run_id).where(t.c.id == version_id))
            if run_id is not None:
                chain = self._lock_chain(conn, run_id)
                # Read under the chain's lock: a concurrent writer cannot change it in between.
                if conn.scalar(select(t.c.status).where(t.c.id == version_id)) == status:
                    return
                conn.execute(update(t).where(t.c.id == version_id).values(status=status))
                self._resnapshot(conn, chain, "model_versions", t.c.id == version_id)
                self._save_chains(conn, {run_id: chain})
                return
        raise self._unknown_version(version_id)

    def _unknown_version(self, version_id: str) -> StoreError:
        return StoreError(
            f"unknown model version {version_id!r} in {self.url}; list versions with "
            "`pedagogy runs` / `pedagogy audit`"
        )

    def model_versions(self, run_id: str, role: str | None = None) -> list[ModelVersionRecord]:
        t = S.model_versions
        query = select(t).where(t.c.run_id == run_id)
        if role is not None:
            query = query.where(t.c.role == role)
        with self._engine.connect() as conn:
            rows = conn.execute(query.order_by(t.c.role, t.c.number, t.c.created_at))
            return [_record(ModelVersionRecord, r) for r in rows]

    def get_model_version(self, version_id: str) -> ModelVersionRecord:
        t = S.model_versions
        with self._engine.connect() as conn:
            row = conn.execute(select(t).where(t.c.id == version_id)).first()
        if row is None:
            raise self._unknown_version(version_id)
        return _record(ModelVersionRecord, row)

    def start_training_job(
        self,
        job: TrainingJobRecord,
        items: Sequence[DatasetItemRecord] = (),
        decisions: Sequence[DecisionRecord] = (),
    ) -> TrainingJobRecord:
        """Insert-or-return-existing on the natural key (run, round, role, attempt): with its
        dataset `items` (their job_id set to the job's) and the `decisions` that chose them, in
        one transaction, so a rerun finds all of them or none. Returns the stored job."""
        if job.role == "student":  # callers that name the role in the config only
            job.role = str(job.config.get("role", "student"))
        t = S.training_jobs
        key = (
            (t.c.run_id == job.run_id)
            & (t.c.round == job.round)
            & (t.c.role == job.role)
            & (t.c.attempt == job.attempt)
        )
        with self._writing(f"start training job {job.id!r}") as conn:
            runs = sorted({d.run_id for d in decisions} | {job.run_id})
            chains = {run_id: self._lock_chain(conn, run_id) for run_id in runs}
            stored = conn.execute(select(t).where(key)).first()
            if stored is not None:
                return _record(TrainingJobRecord, stored)
            row = _row(job, started_at=_to_db(job.started_at))
            conn.execute(insert(t), [row])
            self._snapshot(conn, chains[job.run_id], "training_jobs", [row])
            for item in items:
                item.job_id = job.id
            self._link_items(conn, items, {job.id: job.run_id}, chains)
            self._link_decisions(conn, decisions, chains)
            self._save_chains(conn, chains)
        return job

    def training_job(
        self, run_id: str, round: int, role: str = "student"
    ) -> TrainingJobRecord | None:
        """The latest attempt of the run's job of `round` and `role`; None if it has none."""
        t = S.training_jobs
        query = (
            select(t)
            .where(t.c.run_id == run_id, t.c.round == round, t.c.role == role)
            .order_by(t.c.attempt.desc())
        )
        with self._engine.connect() as conn:
            row = conn.execute(query).first()
        return None if row is None else _record(TrainingJobRecord, row)

    def restart_training_job(self, job_id: str, decisions: Sequence[DecisionRecord] = ()) -> None:
        """Mark an interrupted or failed job running again (its items stay: it trains on them
        anew), recording `decisions` (a failed job's `retry`) in the same transaction: a crash
        cannot leave the decision without the restart, nor record it twice."""
        t = S.training_jobs
        with self._writing(f"restart training job {job_id!r}") as conn:
            run_id = conn.scalar(select(t.c.run_id).where(t.c.id == job_id))
            if run_id is None:
                return
            chain = self._lock_chain(conn, run_id)
            self._link_decisions(conn, decisions, {run_id: chain})
            values = {"status": "running", "finished_at": None, "output_version_id": None}
            conn.execute(update(t).where(t.c.id == job_id).values(**values))
            self._resnapshot(conn, chain, "training_jobs", t.c.id == job_id)
            self._save_chains(conn, {run_id: chain})

    def interrupt_training_jobs(self, run_id: str) -> list[str]:
        """Mark the run's jobs still `running` (their process died) `interrupted`; their items
        are left out of `export` until a resume restarts and finishes them. Returns their ids."""
        t = S.training_jobs
        running = (t.c.run_id == run_id) & (t.c.status == "running")
        with self._writing(f"mark interrupted training jobs of run {run_id!r}") as conn:
            chain = self._lock_chain(conn, run_id)
            ids = list(conn.scalars(select(t.c.id).where(running).order_by(t.c.id)))
            if ids:
                conn.execute(
                    update(t)
                    .where(t.c.id.in_(ids))
                    .values(status="interrupted", finished_at=_now())
                )
                self._resnapshot(conn, chain, "training_jobs", t.c.id.in_(ids))
                self._save_chains(conn, {run_id: chain})
        return ids

    def finish_training_job(
        self,
        job_id: str,
        status: str,
        metrics: dict[str, Any],
        output_version_id: str | None,
        version: ModelVersionRecord | None = None,
    ) -> None:
        """With the `version` it made (if given) in the same transaction: a job is never
        completed without its version, nor a version stored without its completed job."""
        t = S.training_jobs
        values = {
            "status": status,
            "metrics": metrics,
            "output_version_id": output_version_id,
            "finished_at": _now(),
        }
        with self._writing(f"finish training job {job_id!r}") as conn:
            run_id = conn.scalar(select(t.c.run_id).where(t.c.id == job_id))
            if run_id is not None:
                chain = self._lock_chain(conn, run_id)
                conn.execute(update(t).where(t.c.id == job_id).values(**values))
                self._resnapshot(conn, chain, "training_jobs", t.c.id == job_id)
                if version is not None:
                    self._insert_version(conn, version, chain)
                self._save_chains(conn, {run_id: chain})
                return
        raise StoreError(
            f"unknown training job {job_id!r} in {self.url}; start it with start_training_job first"
        )

    def training_jobs(self, run_id: str) -> list[TrainingJobRecord]:
        t = S.training_jobs
        with self._engine.connect() as conn:
            rows = conn.execute(
                select(t).where(t.c.run_id == run_id).order_by(t.c.round, t.c.started_at, t.c.id)
            )
            return [_record(TrainingJobRecord, r) for r in rows]

    def add_dataset_items(self, items: Sequence[DatasetItemRecord]) -> None:
        """Idempotent: an item equal to one its job already has (same turn, polarity, prompt
        and completion) is not stored again; a turn's further items get the next `part`."""
        if not items:
            return
        j, h = S.training_jobs, S.chain_heads
        job_ids = list(dict.fromkeys(i.job_id for i in items))
        with self._writing("add dataset items") as conn:
            # Lock the runs' chains before reading anything (see _lock_chain).
            runs_of_jobs = select(j.c.run_id).where(j.c.id.in_(job_ids))
            conn.execute(update(h).where(h.c.run_id.in_(runs_of_jobs)).values(length=h.c.length))
            run_of = dict(conn.execute(select(j.c.id, j.c.run_id).where(j.c.id.in_(job_ids))).all())
            missing = [job for job in job_ids if job not in run_of]
            if missing:
                raise StoreError(
                    f"cannot add dataset items in {self.url}: unknown training job {missing[0]!r}; "
                    "start it with start_training_job first"
                )
            chains = {
                run_id: self._lock_chain(conn, run_id) for run_id in sorted(set(run_of.values()))
            }
            self._link_items(conn, items, run_of, chains)
            self._save_chains(conn, chains)

    def _link_items(
        self,
        conn: Connection,
        items: Sequence[DatasetItemRecord],
        run_of: dict[str, str],
        chains: dict[str, ChainWriter],
    ) -> None:
        """Insert the items not stored yet as links of their runs' chains (see add_dataset_items)."""
        if not items:
            return
        t = S.dataset_items
        stored: dict[tuple[str, str], dict[tuple[str, str, str], tuple[int, int]]] = defaultdict(
            dict
        )
        query = select(
            t.c.id, t.c.job_id, t.c.turn_id, t.c.part, t.c.polarity, t.c.prompt, t.c.completion
        )
        for row in conn.execute(query.where(t.c.job_id.in_(list(run_of)))):
            stored[(row.job_id, row.turn_id)][(row.polarity, row.prompt, row.completion)] = (
                row.id,
                row.part,
            )
        by_run: dict[str, list[dict[str, Any]]] = defaultdict(list)
        for item in items:
            known = stored[(item.job_id, item.turn_id)]
            content = (item.polarity, item.prompt, item.completion)
            if content in known:
                continue
            part = max((p for _, p in known.values()), default=-1) + 1
            known[content] = (0, part)
            by_run[run_of[item.job_id]].append(_row(item, ("id",), part=part))
        for run_id, rows in by_run.items():
            self._insert_links(conn, t, rows, chains[run_id])

    def dataset_items(self, job_id: str) -> list[DatasetItemRecord]:
        t = S.dataset_items
        with self._engine.connect() as conn:
            rows = conn.execute(select(t).where(t.c.job_id == job_id).order_by(t.c.id))
            return [_record(DatasetItemRecord, r) for r in rows]
