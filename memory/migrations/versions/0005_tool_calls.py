"""Tool calls of acting agents, on the run's hash chain; a detail column for acting turns; a
metrics column for evaluations (an acting student's tool calls and invalid actions per arm).

Revision ID: 0005_tool_calls
Revises: 0004_items_outside_episodes
Create Date: 2026-11-27
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005_tool_calls"
down_revision: str | Sequence[str] | None = "0004_items_outside_episodes"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

ID = sa.String(128)


def _fk(column: str, target: str) -> sa.ForeignKeyConstraint:
    return sa.ForeignKeyConstraint(
        [column], [f"{target}.id"], name=f"fk_tool_calls_{column}_{target}"
    )


def upgrade() -> None:
    # A nullable column is added in place on SQLite too (no table rebuild): old turns keep NULL,
    # which reads back as an empty detail and hashes as before.
    op.add_column("turns", sa.Column("detail", sa.JSON(), nullable=True))
    op.add_column("evaluations", sa.Column("metrics", sa.JSON(), nullable=True))
    op.create_table(
        "tool_calls",
        sa.Column("id", ID, nullable=False),
        sa.Column("run_id", ID, nullable=False),
        sa.Column("episode_id", ID, nullable=True),
        sa.Column("turn_id", ID, nullable=False),
        sa.Column("chain_index", sa.Integer(), nullable=False),
        sa.Column("step", sa.Integer(), nullable=False),
        sa.Column("tool", sa.String(128), nullable=False),
        sa.Column("call_id", ID, nullable=False),
        sa.Column("arguments", sa.JSON(), nullable=False),
        sa.Column("observation", sa.Text(), nullable=False),
        sa.Column("ok", sa.Boolean(), nullable=False),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("latency_s", sa.Float(), nullable=False),
        sa.Column("truncated", sa.Boolean(), nullable=False),
        sa.Column("detail", sa.JSON(), nullable=False),
        sa.Column("hash", sa.String(64), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_tool_calls"),
        sa.UniqueConstraint("run_id", "chain_index", name="uq_tool_calls_run_id_chain_index"),
        _fk("run_id", "runs"),
        _fk("episode_id", "episodes"),
        _fk("turn_id", "turns"),
    )
    op.create_index("ix_tool_calls_episode_id", "tool_calls", ["episode_id"])
    op.create_index("ix_tool_calls_turn_id", "tool_calls", ["turn_id"])


def downgrade() -> None:
    op.drop_table("tool_calls")
    with op.batch_alter_table("evaluations") as batch:
        batch.drop_column("metrics")
    if op.get_bind().dialect.name == "sqlite":
        # The rebuild of `turns` drops the table verdicts, explanations and dataset items point
        # at; their check waits for the commit (as in 0003).
        op.execute("PRAGMA defer_foreign_keys = ON")
    with op.batch_alter_table("turns") as batch:
        batch.drop_column("detail")
