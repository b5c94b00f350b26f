"""Every failed attempt of a model call is a row: `call_attempts`, on the run's hash chain.

A turn is a call; when it took more than one attempt (an HTTP error, a timeout, a malformed or
empty reply, then a retry or a fallback endpoint), each attempt is a row pointing at the turn:
its number, the endpoint tried (a model and api_base label, never a key), the status, one line
of error (NULL for the attempt that served), the latency and the Retry-After the server asked
for. The rows are links of the run's chain, each right after its turn. The table is new: no
stored row needs sealing.

Revision ID: 0007_call_attempts
Revises: 0006_chain_all_rows
Create Date: 2026-11-29
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from pedagogy.memory.chain import ChainWriter, audit_key

revision: str = "0007_call_attempts"
down_revision: str | Sequence[str] | None = "0006_chain_all_rows"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

ID = sa.String(128)
_CHAINED = (
    "turns",
    "tool_calls",
    "verdicts",
    "explanations",
    "decisions",
    "dataset_items",
    "call_attempts",
)
"""The chained tables at this revision (a later one may chain more: not read here)."""


def _tables(bind: sa.Connection, *names: str) -> dict[str, sa.Table]:
    meta = sa.MetaData()
    return {name: sa.Table(name, meta, autoload_with=bind) for name in names}


def _fk(column: str, target: str) -> sa.ForeignKeyConstraint:
    return sa.ForeignKeyConstraint(
        [column], [f"{target}.id"], name=f"fk_call_attempts_{column}_{target}"
    )


def upgrade() -> None:
    op.create_table(
        "call_attempts",
        sa.Column("id", ID, nullable=False),
        sa.Column("run_id", ID, nullable=False),
        sa.Column("turn_id", ID, nullable=False),
        sa.Column("chain_index", sa.Integer(), nullable=False),
        sa.Column("n", sa.Integer(), nullable=False),
        sa.Column("endpoint", sa.Text(), nullable=False),
        sa.Column("status", sa.Integer(), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("latency_s", sa.Float(), nullable=False),
        sa.Column("retry_after_s", sa.Float(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("hash", sa.String(64), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_call_attempts"),
        sa.UniqueConstraint("run_id", "chain_index", name="uq_call_attempts_run_id_chain_index"),
        sa.UniqueConstraint("turn_id", "n", name="uq_call_attempts_turn_id_n"),
        _fk("run_id", "runs"),
        _fk("turn_id", "turns"),
    )
    op.create_index("ix_call_attempts_turn_id", "call_attempts", ["turn_id"])


def _of_run(t: dict[str, sa.Table], name: str, run_id: str) -> sa.ColumnElement[bool]:
    table, episodes, jobs = t[name], t["episodes"], t["training_jobs"]
    if name in ("verdicts", "explanations"):
        return table.c.episode_id.in_(sa.select(episodes.c.id).where(episodes.c.run_id == run_id))
    if name == "dataset_items":
        return table.c.job_id.in_(sa.select(jobs.c.id).where(jobs.c.run_id == run_id))
    return table.c.run_id == run_id


def downgrade() -> None:
    """Drop the attempts; each run that had some is re-chained from its first attempt's index
    without them (renumbered, format 2; under PEDAGOGY_AUDIT_KEY when set, else unkeyed), so
    that the older code verifies it clean."""
    bind = op.get_bind()
    t = _tables(bind, "chain_heads", "episodes", "training_jobs", *_CHAINED)
    heads, attempts = t["chain_heads"], t["call_attempts"]
    first_of = bind.execute(
        sa.select(attempts.c.run_id, sa.func.min(attempts.c.chain_index))
        .group_by(attempts.c.run_id)
        .order_by(attempts.c.run_id)
    ).all()
    key = audit_key()
    for run_id, first in first_of:
        links = []
        for name in _CHAINED[:-1]:
            table = t[name]
            query = sa.select(table).where(_of_run(t, name, run_id), table.c.chain_index > first)
            links += [(r.chain_index, name, dict(r._mapping)) for r in bind.execute(query)]
        before = None
        for name in _CHAINED[:-1]:
            table = t[name]
            query = sa.select(table.c.hash).where(
                _of_run(t, name, run_id), table.c.chain_index == first - 1
            )
            before = before or bind.execute(query).scalar()
        keyed = bool(
            bind.execute(sa.select(heads.c.keyed).where(heads.c.run_id == run_id)).scalar()
        )
        chain = ChainWriter(run_id, before or "", first, key if keyed else None)
        rows: dict[str, list[dict]] = {name: [] for name in _CHAINED[:-1]}
        for _, name, row in sorted(links, key=lambda link: link[0]):
            chain.link(name, row)
            rows[name].append(row)
        for name, linked in rows.items():
            # Indices only go down, in ascending order: each lands on a freed or its own slot.
            table = t[name]
            if linked:
                bind.execute(
                    table.update()
                    .where(table.c.id == sa.bindparam("link_id"))
                    .values(chain_index=sa.bindparam("link_index"), hash=sa.bindparam("link")),
                    [
                        {"link_id": r["id"], "link_index": r["chain_index"], "link": r["hash"]}
                        for r in linked
                    ],
                )
        bind.execute(
            heads.update()
            .where(heads.c.run_id == run_id)
            .values(last_hash=chain.last, length=chain.length, keyed=chain.key is not None)
        )
    op.drop_table("call_attempts")
