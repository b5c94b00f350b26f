"""Dataset items outside episodes: an LLM generator's training pairs, made from the teacher's
refine calls (turns outside episodes), are stored like the student's so that a generator version
can be audited.

Revision ID: 0004_items_outside_episodes
Revises: 0003_turns_outside_episodes
Create Date: 2026-11-27
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004_items_outside_episodes"  # alembic_version holds 32 characters
down_revision: str | Sequence[str] | None = "0003_turns_outside_episodes"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # Nothing references dataset_items, so SQLite's table rebuild needs no deferred checks.
    with op.batch_alter_table("dataset_items") as batch:
        batch.alter_column("episode_id", existing_type=sa.String(128), nullable=True)


def downgrade() -> None:
    op.execute("DELETE FROM dataset_items WHERE episode_id IS NULL")
    with op.batch_alter_table("dataset_items") as batch:
        batch.alter_column("episode_id", existing_type=sa.String(128), nullable=False)
