"""Initial schema: runs, problems, episodes, turns and everything that hangs off them.

Written by hand to match `pedagogy.memory.schema` (a test compares the two). Constraint names
follow the schema's naming convention.

Revision ID: 0001_initial
Revises:
Create Date: 2026-11-22
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0001_initial"
down_revision: str | Sequence[str] | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

ID = sa.String(128)
NAME = sa.String(64)
TS = sa.DateTime(timezone=True)


def _pk(table: str) -> sa.PrimaryKeyConstraint:
    return sa.PrimaryKeyConstraint("id", name=f"pk_{table}")


def _fk(table: str, column: str, target: str) -> sa.ForeignKeyConstraint:
    return sa.ForeignKeyConstraint([column], [f"{target}.id"], name=f"fk_{table}_{column}_{target}")


def _index(table: str, *columns: str) -> None:
    op.create_index(f"ix_{table}_{'_'.join(columns)}", table, list(columns))


def upgrade() -> None:
    op.create_table(
        "runs",
        sa.Column("id", ID, nullable=False),
        sa.Column("name", sa.Text(), nullable=False),
        sa.Column("config", sa.JSON(), nullable=False),
        sa.Column("seed", sa.BigInteger(), nullable=False),
        sa.Column("status", NAME, nullable=False),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("finished_at", TS, nullable=True),
        _pk("runs"),
    )
    op.create_table(
        "chain_heads",
        sa.Column("run_id", ID, nullable=False),
        sa.Column("last_hash", sa.String(64), nullable=False),
        sa.Column("length", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("run_id", name="pk_chain_heads"),
        _fk("chain_heads", "run_id", "runs"),
    )
    op.create_table(
        "problems",
        sa.Column("id", ID, nullable=False),
        sa.Column("domain", NAME, nullable=False),
        sa.Column("skill", sa.String(128), nullable=False),
        sa.Column("level", sa.Integer(), nullable=False),
        sa.Column("prompt", sa.Text(), nullable=False),
        sa.Column("answer", sa.Text(), nullable=False),
        sa.Column("metadata", sa.JSON(), nullable=False),
        sa.Column("source", NAME, nullable=False),
        sa.Column("parent_id", ID, nullable=True),
        sa.Column("created_at", TS, nullable=False),
        _pk("problems"),
    )
    op.create_table(
        "model_versions",
        sa.Column("id", ID, nullable=False),
        sa.Column("run_id", ID, nullable=False),
        sa.Column("role", NAME, nullable=False),
        sa.Column("number", sa.Integer(), nullable=False),
        sa.Column("path", sa.Text(), nullable=False),
        sa.Column("parent_id", ID, nullable=True),
        sa.Column("training_job_id", ID, nullable=True),
        sa.Column("status", NAME, nullable=False),
        sa.Column("created_at", TS, nullable=False),
        _pk("model_versions"),
        _fk("model_versions", "run_id", "runs"),
        _fk("model_versions", "parent_id", "model_versions"),
    )
    _index("model_versions", "run_id")
    _index("model_versions", "parent_id")
    op.create_table(
        "training_jobs",
        sa.Column("id", ID, nullable=False),
        sa.Column("run_id", ID, nullable=False),
        sa.Column("round", sa.Integer(), nullable=False),
        sa.Column("kind", NAME, nullable=False),
        sa.Column("config", sa.JSON(), nullable=False),
        sa.Column("base_version_id", ID, nullable=True),
        sa.Column("status", NAME, nullable=False),
        sa.Column("metrics", sa.JSON(), nullable=False),
        sa.Column("output_version_id", ID, nullable=True),
        sa.Column("started_at", TS, nullable=False),
        sa.Column("finished_at", TS, nullable=True),
        _pk("training_jobs"),
        _fk("training_jobs", "run_id", "runs"),
        _fk("training_jobs", "base_version_id", "model_versions"),
    )
    _index("training_jobs", "run_id")
    op.create_table(
        "episodes",
        sa.Column("id", ID, nullable=False),
        sa.Column("run_id", ID, nullable=False),
        sa.Column("round", sa.Integer(), nullable=False),
        sa.Column("index", sa.Integer(), nullable=False),
        sa.Column("problem_id", ID, nullable=False),
        sa.Column("arm", sa.String(256), nullable=False),
        sa.Column("student_version", ID, nullable=True),
        sa.Column("outcome", NAME, nullable=False),
        sa.Column("correct_first", sa.Boolean(), nullable=False),
        sa.Column("correct_final", sa.Boolean(), nullable=False),
        sa.Column("explained", sa.Boolean(), nullable=False),
        sa.Column("seed", sa.BigInteger(), nullable=False),
        sa.Column("decisions", sa.JSON(), nullable=False),
        sa.Column("created_at", TS, nullable=False),
        _pk("episodes"),
        sa.UniqueConstraint("run_id", "round", "index", name="uq_episodes_run_id_round_index"),
        _fk("episodes", "run_id", "runs"),
        _fk("episodes", "problem_id", "problems"),
    )
    _index("episodes", "problem_id")
    op.create_table(
        "turns",
        sa.Column("id", ID, nullable=False),
        sa.Column("episode_id", ID, nullable=False),
        sa.Column("run_id", ID, nullable=False),
        sa.Column("chain_index", sa.Integer(), nullable=False),
        sa.Column("seq", sa.Integer(), nullable=False),
        sa.Column("agent", NAME, nullable=False),
        sa.Column("backend", NAME, nullable=False),
        sa.Column("model", sa.Text(), nullable=False),
        sa.Column("model_version", ID, nullable=True),
        sa.Column("request", sa.JSON(), nullable=False),
        sa.Column("response", sa.Text(), nullable=False),
        sa.Column("prompt_tokens", sa.Integer(), nullable=False),
        sa.Column("completion_tokens", sa.Integer(), nullable=False),
        sa.Column("latency_s", sa.Float(), nullable=False),
        sa.Column("cost", sa.Float(), nullable=True),
        sa.Column("seed", sa.BigInteger(), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("hash", sa.String(64), nullable=False),
        _pk("turns"),
        sa.UniqueConstraint("run_id", "chain_index", name="uq_turns_run_id_chain_index"),
        _fk("turns", "episode_id", "episodes"),
        _fk("turns", "run_id", "runs"),
    )
    _index("turns", "episode_id")
    op.create_table(
        "verdicts",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("turn_id", ID, nullable=False),
        sa.Column("episode_id", ID, nullable=False),
        sa.Column("correct", sa.Boolean(), nullable=False),
        sa.Column("score", sa.Float(), nullable=False),
        sa.Column("parsed_answer", sa.Text(), nullable=True),
        sa.Column("verifier", NAME, nullable=False),
        sa.Column("detail", sa.Text(), nullable=False),
        _pk("verdicts"),
        _fk("verdicts", "turn_id", "turns"),
        _fk("verdicts", "episode_id", "episodes"),
    )
    _index("verdicts", "turn_id")
    _index("verdicts", "episode_id")
    op.create_table(
        "explanations",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("turn_id", ID, nullable=False),
        sa.Column("episode_id", ID, nullable=False),
        sa.Column("style", NAME, nullable=False),
        sa.Column("budget_spent", sa.Float(), nullable=False),
        sa.Column("utility", sa.Float(), nullable=True),
        _pk("explanations"),
        _fk("explanations", "turn_id", "turns"),
        _fk("explanations", "episode_id", "episodes"),
    )
    _index("explanations", "turn_id")
    _index("explanations", "episode_id")
    op.create_table(
        "curriculum_states",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("run_id", ID, nullable=False),
        sa.Column("round", sa.Integer(), nullable=False),
        sa.Column("state", sa.JSON(), nullable=False),
        _pk("curriculum_states"),
        sa.UniqueConstraint("run_id", "round", name="uq_curriculum_states_run_id_round"),
        _fk("curriculum_states", "run_id", "runs"),
    )
    op.create_table(
        "dataset_items",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("job_id", ID, nullable=False),
        sa.Column("episode_id", ID, nullable=False),
        sa.Column("turn_id", ID, nullable=False),
        sa.Column("polarity", NAME, nullable=False),
        sa.Column("prompt", sa.Text(), nullable=False),
        sa.Column("completion", sa.Text(), nullable=False),
        _pk("dataset_items"),
        _fk("dataset_items", "job_id", "training_jobs"),
        _fk("dataset_items", "episode_id", "episodes"),
        _fk("dataset_items", "turn_id", "turns"),
    )
    _index("dataset_items", "job_id")
    _index("dataset_items", "episode_id")
    _index("dataset_items", "turn_id")
    op.create_table(
        "evaluations",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("run_id", ID, nullable=False),
        sa.Column("round", sa.Integer(), nullable=False),
        sa.Column("model_version_id", ID, nullable=False),
        sa.Column("skill", sa.String(128), nullable=False),
        sa.Column("level", sa.Integer(), nullable=False),
        sa.Column("n", sa.Integer(), nullable=False),
        sa.Column("correct", sa.Integer(), nullable=False),
        _pk("evaluations"),
        _fk("evaluations", "run_id", "runs"),
        _fk("evaluations", "model_version_id", "model_versions"),
    )
    _index("evaluations", "run_id")
    _index("evaluations", "model_version_id")


def downgrade() -> None:
    for table in (
        "evaluations",
        "dataset_items",
        "curriculum_states",
        "explanations",
        "verdicts",
        "turns",
        "episodes",
        "training_jobs",
        "model_versions",
        "problems",
        "chain_heads",
        "runs",
    ):
        op.drop_table(table)
