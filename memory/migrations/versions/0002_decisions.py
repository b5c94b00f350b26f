"""Decisions of the teaching policies: interventions, curriculum, unlocks, styles, filter outcomes.

Revision ID: 0002_decisions
Revises: 0001_initial
Create Date: 2026-11-26
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002_decisions"
down_revision: str | Sequence[str] | None = "0001_initial"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

ID = sa.String(128)
NAME = sa.String(64)


def upgrade() -> None:
    op.create_table(
        "decisions",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("run_id", ID, nullable=False),
        sa.Column("round", sa.Integer(), nullable=False),
        sa.Column("kind", NAME, nullable=False),
        sa.Column("policy", NAME, nullable=False),
        sa.Column("subject", ID, nullable=False),
        sa.Column("chosen", sa.Boolean(), nullable=True),
        sa.Column("value", sa.Float(), nullable=True),
        sa.Column("detail", sa.JSON(), nullable=False),
        sa.Column("episode_id", ID, nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_decisions"),
        sa.ForeignKeyConstraint(["run_id"], ["runs.id"], name="fk_decisions_run_id_runs"),
    )
    op.create_index("ix_decisions_run_id_round", "decisions", ["run_id", "round"])
    op.create_index("ix_decisions_run_id_kind", "decisions", ["run_id", "kind"])


def downgrade() -> None:
    op.drop_table("decisions")
