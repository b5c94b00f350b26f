"""Turns outside episodes: an LLM generator's calls, made while a round is planned.

Revision ID: 0003_turns_outside_episodes
Revises: 0002_decisions
Create Date: 2026-11-27
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003_turns_outside_episodes"
down_revision: str | Sequence[str] | None = "0002_decisions"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _defer_foreign_keys() -> None:
    """SQLite rebuilds the table (it cannot alter a column in place): dropping the old `turns`
    would break the foreign keys of verdicts, explanations and dataset items until the copy is
    renamed back, so their check waits for the commit (settable inside a transaction, unlike
    `foreign_keys`)."""
    if op.get_bind().dialect.name == "sqlite":
        op.execute("PRAGMA defer_foreign_keys = ON")


def upgrade() -> None:
    _defer_foreign_keys()
    with op.batch_alter_table("turns") as batch:
        batch.alter_column("episode_id", existing_type=sa.String(128), nullable=True)


def downgrade() -> None:
    op.execute("DELETE FROM turns WHERE episode_id IS NULL")
    _defer_foreign_keys()
    with op.batch_alter_table("turns") as batch:
        batch.alter_column("episode_id", existing_type=sa.String(128), nullable=False)
