"""The run's hash chain covers verdicts, explanations, decisions and dataset items too; a run may
be chained under a secret key.

Each of those tables gets `chain_index` and `hash` (see `pedagogy.memory.chain`), and
`chain_heads` gets `keyed` (whether the run's links are HMACs) and `full_from` (links before it
are turns and tool calls hashed the pre-0006 way). The rows already stored are sealed onto their
run's chain here, after its existing links, table by table in id order, without a key (no run was
keyed before this revision): from now on an edit of any of them is caught, though not one made
before the upgrade.

The sealing uses the chain's hashing code, so a later change of what a link covers must come as a
new format (a new `full_from`-like marker), never as an edit of format 2.

Revision ID: 0006_chain_all_rows
Revises: 0005_tool_calls
Create Date: 2026-11-28
"""

from __future__ import annotations

import heapq
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from pedagogy.memory.chain import ChainWriter, legacy_hash

revision: str = "0006_chain_all_rows"
down_revision: str | Sequence[str] | None = "0005_tool_calls"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TABLES = ("verdicts", "explanations", "decisions", "dataset_items")


def _tables(bind: sa.Connection, *names: str) -> dict[str, sa.Table]:
    meta = sa.MetaData()
    return {name: sa.Table(name, meta, autoload_with=bind) for name in names}


def _of_run(t: dict[str, sa.Table], name: str, run_id: str) -> sa.ColumnElement[bool]:
    table, episodes, jobs = t[name], t["episodes"], t["training_jobs"]
    if name in ("verdicts", "explanations"):
        return table.c.episode_id.in_(sa.select(episodes.c.id).where(episodes.c.run_id == run_id))
    if name == "dataset_items":
        return table.c.job_id.in_(sa.select(jobs.c.id).where(jobs.c.run_id == run_id))
    return table.c.run_id == run_id


def _set_links(bind: sa.Connection, table: sa.Table, rows: list[dict]) -> None:
    if rows:
        bind.execute(
            table.update()
            .where(table.c.id == sa.bindparam("link_id"))
            .values(chain_index=sa.bindparam("link_index"), hash=sa.bindparam("link")),
            [{"link_id": r["id"], "link_index": r["chain_index"], "link": r["hash"]} for r in rows],
        )


def upgrade() -> None:
    op.add_column(
        "chain_heads", sa.Column("keyed", sa.Boolean(), nullable=False, server_default=sa.false())
    )
    op.add_column(
        "chain_heads", sa.Column("full_from", sa.Integer(), nullable=False, server_default="0")
    )
    for name in TABLES:
        op.add_column(name, sa.Column("chain_index", sa.Integer(), nullable=True))
        op.add_column(name, sa.Column("hash", sa.String(64), nullable=True))

    bind = op.get_bind()
    t = _tables(bind, "chain_heads", "episodes", "training_jobs", *TABLES)
    heads = t["chain_heads"]
    bind.execute(heads.update().values(full_from=heads.c.length))
    for run_id, last, length in bind.execute(
        sa.select(heads.c.run_id, heads.c.last_hash, heads.c.length).order_by(heads.c.run_id)
    ).all():
        chain = ChainWriter(run_id, last, length, None)
        for name in TABLES:
            table = t[name]
            query = sa.select(table).where(_of_run(t, name, run_id)).order_by(table.c.id)
            rows = [dict(r._mapping) for r in bind.execute(query)]
            for row in rows:
                chain.link(name, row)
            _set_links(bind, table, rows)
        bind.execute(
            heads.update()
            .where(heads.c.run_id == run_id)
            .values(last_hash=chain.last, length=chain.length)
        )
    for name in TABLES:
        # Rows of no run (their episode or job is gone) are on no chain.
        table = t[name]
        bind.execute(table.update().where(table.c.hash.is_(None)).values(chain_index=-1, hash=""))
        # Nothing references these tables: SQLite's rebuild needs no deferred checks.
        with op.batch_alter_table(name) as batch:
            batch.alter_column("chain_index", existing_type=sa.Integer(), nullable=False)
            batch.alter_column("hash", existing_type=sa.String(64), nullable=False)


def downgrade() -> None:
    """Back to a turn-and-tool-call chain the older code verifies: those links are renumbered
    0, 1, ... in chain order and re-hashed the pre-0006 way (a keyed run loses its key)."""
    bind = op.get_bind()
    t = _tables(bind, "chain_heads", "turns", "tool_calls")
    heads = t["chain_heads"]
    for (run_id,) in bind.execute(sa.select(heads.c.run_id).order_by(heads.c.run_id)).all():
        streams = []
        for name in ("turns", "tool_calls"):
            table = t[name]
            query = sa.select(table).where(table.c.run_id == run_id).order_by(table.c.chain_index)
            streams.append([(r.chain_index, name, dict(r._mapping)) for r in bind.execute(query)])
        last, rows = "", {"turns": [], "tool_calls": []}
        for index, (_, name, row) in enumerate(heapq.merge(*streams, key=lambda s: s[0])):
            row["chain_index"], row["hash"] = index, legacy_hash(last, name, row, run_id)
            last = row["hash"]
            rows[name].append(row)
        for name, linked in rows.items():
            # Indices only go down, in ascending order: each lands on a freed or its own slot.
            _set_links(bind, t[name], linked)
        length = sum(len(linked) for linked in rows.values())
        bind.execute(
            heads.update().where(heads.c.run_id == run_id).values(last_hash=last, length=length)
        )
    for name in TABLES:
        with op.batch_alter_table(name) as batch:
            batch.drop_column("hash")
            batch.drop_column("chain_index")
    with op.batch_alter_table("chain_heads") as batch:
        batch.drop_column("full_from")
        batch.drop_column("keyed")
