"""Curriculum states, decisions, evaluations and accounting."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import func, insert, select, update

from pedagogy.memory import schema as S
from pedagogy.memory.chain import same_value
from pedagogy.memory.records import (
    CurriculumStateRecord,
    DecisionRecord,
    EvaluationRecord,
    UsageRecord,
)
from pedagogy.memory.store_core import StoreCore
from pedagogy.memory.store_rows import _record, _row


class ResultsMixin(StoreCore):
    """Curriculum states, policy decisions, evaluations and token accounting."""

    def save_curriculum_state(
        self, record: CurriculumStateRecord, decisions: Sequence[DecisionRecord] = ()
    ) -> None:
        """Upsert on (run, round), with a snapshot link of the state as saved; saving the state
        stored changes nothing and adds no link (a node run again after a crash saves what it
        saved before: its chain stays as an uninterrupted run's). `decisions` of the run (the
        ones the state follows from) are recorded first, in the same transaction."""
        t = S.curriculum_states
        row = _row(record)
        match = (t.c.run_id == record.run_id) & (t.c.round == record.round)
        with self._writing(f"save curriculum state of run {record.run_id!r}") as conn:
            chain = self._lock_chain(conn, record.run_id)
            if decisions:
                self._link_decisions(conn, decisions, {record.run_id: chain})
            stored = conn.execute(select(t.c.state).where(match)).first()
            if stored is not None and same_value(stored.state, record.state):
                if decisions:
                    self._save_chains(conn, {record.run_id: chain})
                return
            name = conn.dialect.name
            if name in ("sqlite", "postgresql"):
                module = __import__(f"sqlalchemy.dialects.{name}", fromlist=["insert"])
                stmt = module.insert(t).values(**row)
                stmt = stmt.on_conflict_do_update(
                    index_elements=["run_id", "round"], set_={"state": stmt.excluded.state}
                )
                conn.execute(stmt)
            elif conn.execute(update(t).where(match).values(state=record.state)).rowcount == 0:
                conn.execute(insert(t), [row])
            self._resnapshot(conn, chain, "curriculum_states", match)
            self._save_chains(conn, {record.run_id: chain})

    def curriculum_states(self, run_id: str) -> list[CurriculumStateRecord]:
        t = S.curriculum_states
        with self._engine.connect() as conn:
            rows = conn.execute(select(t).where(t.c.run_id == run_id).order_by(t.c.round))
            return [_record(CurriculumStateRecord, r) for r in rows]

    def record_decisions(self, decisions: Sequence[DecisionRecord]) -> None:
        if decisions:
            with self._writing("record decisions") as conn:
                runs = sorted({d.run_id for d in decisions})
                chains = {run_id: self._lock_chain(conn, run_id) for run_id in runs}
                self._link_decisions(conn, decisions, chains)
                self._save_chains(conn, chains)

    def decisions(
        self, run_id: str, round: int | None = None, kind: str | None = None
    ) -> list[DecisionRecord]:
        t = S.decisions
        query = select(t).where(t.c.run_id == run_id)
        if round is not None:
            query = query.where(t.c.round == round)
        if kind is not None:
            query = query.where(t.c.kind == kind)
        with self._engine.connect() as conn:
            rows = conn.execute(query.order_by(t.c.round, t.c.id))
            return [_record(DecisionRecord, r) for r in rows]

    # --- evaluation and accounting -------------------------------------------------------------

    def record_evaluations(self, evaluations: Sequence[EvaluationRecord]) -> None:
        """Idempotent on the natural key (version, round, skill, level): a row already stored
        is kept as it is."""
        t = S.evaluations
        rows = {(e.model_version_id, e.round, e.skill, e.level): _row(e) for e in evaluations}
        if not rows:
            return
        with self._writing("record evaluations") as conn:
            runs = sorted({row["run_id"] for row in rows.values()})
            chains = {run_id: self._lock_chain(conn, run_id) for run_id in runs}
            versions = sorted({key[0] for key in rows})
            query = select(t.c.model_version_id, t.c.round, t.c.skill, t.c.level)
            for key in conn.execute(query.where(t.c.model_version_id.in_(versions))):
                rows.pop(tuple(key), None)
            fresh = list(rows.values())
            for row, row_id in zip(fresh, self._next_ids(conn, t, len(fresh))):
                row["id"] = row_id
            if fresh:
                conn.execute(insert(t), fresh)
            for run_id, chain in chains.items():
                mine = [row for row in fresh if row["run_id"] == run_id]
                self._snapshot(conn, chain, "evaluations", mine)
            self._save_chains(conn, chains)

    def evaluations(self, run_id: str) -> list[EvaluationRecord]:
        t = S.evaluations
        with self._engine.connect() as conn:
            rows = conn.execute(
                select(t)
                .where(t.c.run_id == run_id)
                .order_by(t.c.round, t.c.model_version_id, t.c.skill, t.c.level, t.c.id)
            )
            return [_record(EvaluationRecord, r) for r in rows]

    def token_totals(self, run_id: str) -> dict[str, dict[str, float]]:
        t = S.turns
        query = (
            select(
                t.c.agent,
                func.coalesce(func.sum(t.c.prompt_tokens), 0),
                func.coalesce(func.sum(t.c.completion_tokens), 0),
                func.sum(t.c.cost),  # NULL (unknown) costs are left out; all unknown: NULL
                func.count(),
                func.count(t.c.cost),
            )
            .where(t.c.run_id == run_id)
            .group_by(t.c.agent)
            .order_by(t.c.agent)
        )
        with self._engine.connect() as conn:
            self._require_run(conn, run_id)
            return {
                agent: {
                    "prompt_tokens": int(p),
                    "completion_tokens": int(c),
                    "cost": None if cost is None else float(cost),
                    "calls": int(n),
                    "cost_unknown": int(n) - int(priced),
                }
                for agent, p, c, cost, n, priced in conn.execute(query)
            }

    def usage(self, run_id: str) -> list[UsageRecord]:
        """The run's calls per agent, curriculum arm and backend: tokens, known cost, calls of
        unknown cost (one grouped query; budgets check it before every round)."""
        t, e = S.turns, S.episodes
        query = (
            select(
                t.c.agent,
                e.c.arm,
                t.c.backend,
                func.count(),
                func.coalesce(func.sum(t.c.prompt_tokens), 0),
                func.coalesce(func.sum(t.c.completion_tokens), 0),
                func.sum(t.c.cost),
                func.count(t.c.cost),
            )
            .select_from(t.outerjoin(e, e.c.id == t.c.episode_id))
            .where(t.c.run_id == run_id)
            .group_by(t.c.agent, e.c.arm, t.c.backend)
        )
        with self._engine.connect() as conn:
            self._require_run(conn, run_id)
            rows = [
                UsageRecord(
                    agent=agent,
                    arm=arm,
                    backend=backend,
                    calls=int(n),
                    prompt_tokens=int(p),
                    completion_tokens=int(c),
                    cost=None if cost is None else float(cost),
                    cost_unknown=int(n) - int(priced),
                )
                for agent, arm, backend, n, p, c, cost, priced in conn.execute(query)
            ]
        return sorted(rows, key=lambda u: (u.agent, u.arm or "", u.backend))
