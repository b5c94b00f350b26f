"""Natural keys, so that a loop node that runs again after a crash writes nothing twice; the run
lease.

- `evaluations`: unique per (model_version_id, round, skill, level). Duplicates already stored
  (a node evaluated twice) are dropped, the first (lowest id) kept.
- `model_versions`: unique per (run_id, role, number). A later duplicate number (two processes
  on one run) is renumbered after the run's last version of that role: versions are referenced by
  jobs, evaluations and other versions, so none is dropped.
- `training_jobs`: new `role` (from `config.role`, else "student") and `attempt` (0, 1, ... per
  run, round and role, in start order), unique per (run_id, round, role, attempt). A job already
  stored is never dropped: its dataset items are links of the run's hash chain.
- `dataset_items`: new `part` (0, 1, ... per job and turn, in id order), unique per (job_id,
  turn_id, part). `part` is not hashed: the chain's links are unchanged.
- `runs`: `lease_holder` and `lease_heartbeat` (`pedagogy.memory.lease`).

What the upgrade dropped or renumbered is reported as a warning per table.

Revision ID: 0008_natural_keys
Revises: 0007_call_attempts
Create Date: 2026-11-29
"""

from __future__ import annotations

import json
import warnings
from collections import defaultdict
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from pedagogy.memory.crash import crash_point

revision: str = "0008_natural_keys"
down_revision: str | Sequence[str] | None = "0007_call_attempts"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

NAME = sa.String(64)
_UNIQUE = {
    "evaluations": ("model_version_id", "round", "skill", "level"),
    "model_versions": ("run_id", "role", "number"),
    "training_jobs": ("run_id", "round", "role", "attempt"),
    "dataset_items": ("job_id", "turn_id", "part"),
}


def _name(table: str) -> str:
    return f"uq_{table}_{'_'.join(_UNIQUE[table])}"


def _table(bind: sa.Connection, name: str) -> sa.Table:
    return sa.Table(name, sa.MetaData(), autoload_with=bind)


def _update(bind: sa.Connection, table: sa.Table, column: str, values: dict) -> None:
    if values:
        bind.execute(
            table.update()
            .where(table.c.id == sa.bindparam("row_id"))
            .values({column: sa.bindparam("value")}),
            [{"row_id": k, "value": v} for k, v in values.items()],
        )


def _drop_duplicate_evaluations(bind: sa.Connection) -> None:
    t = _table(bind, "evaluations")
    seen: set[tuple] = set()
    dropped: dict[str, int] = defaultdict(int)
    doomed = []
    query = sa.select(t.c.id, t.c.run_id, t.c.model_version_id, t.c.round, t.c.skill, t.c.level)
    for row in bind.execute(query.order_by(t.c.id)):
        key = (row.model_version_id, row.round, row.skill, row.level)
        if key in seen:
            doomed.append(row.id)
            dropped[row.run_id] += 1
        seen.add(key)
    for i in range(0, len(doomed), 500):
        bind.execute(t.delete().where(t.c.id.in_(doomed[i : i + 500])))
    if doomed:
        runs = ", ".join(f"{run} ({n})" for run, n in sorted(dropped.items()))
        warnings.warn(
            f"migration 0008: dropped {len(doomed)} duplicate evaluation rows (a node that ran "
            f"twice; the first of each version, round and arm kept) of runs {runs}",
            stacklevel=2,
        )


def _renumber_duplicate_versions(bind: sa.Connection) -> None:
    t = _table(bind, "model_versions")
    rows = bind.execute(
        sa.select(t.c.id, t.c.run_id, t.c.role, t.c.number).order_by(t.c.created_at, t.c.id)
    ).all()
    top: dict[tuple[str, str], int] = defaultdict(int)
    for row in rows:
        top[(row.run_id, row.role)] = max(top[(row.run_id, row.role)], row.number)
    seen: set[tuple] = set()
    renumbered: dict[str, int] = {}
    notes = []
    for row in rows:
        key = (row.run_id, row.role, row.number)
        if key in seen:
            top[(row.run_id, row.role)] += 1
            renumbered[row.id] = top[(row.run_id, row.role)]
            notes.append(f"{row.id} ({row.role} v{row.number} -> v{renumbered[row.id]})")
        seen.add(key)
    _update(bind, t, "number", renumbered)
    if notes:
        warnings.warn(
            f"migration 0008: renumbered {len(notes)} model versions that repeated a number of "
            f"their run (two processes on one run): {', '.join(notes)}",
            stacklevel=2,
        )


def _number_jobs(bind: sa.Connection) -> None:
    t = _table(bind, "training_jobs")
    rows = bind.execute(
        sa.select(t.c.id, t.c.run_id, t.c.round, t.c.config).order_by(t.c.started_at, t.c.id)
    ).all()
    roles, attempts = {}, {}
    count: dict[tuple, int] = defaultdict(int)
    for row in rows:
        config = json.loads(row.config) if isinstance(row.config, str) else row.config
        config = config if isinstance(config, dict) else {}
        role = str(config.get("role", "student"))
        if role != "student":
            roles[row.id] = role
        key = (row.run_id, row.round, role)
        if count[key]:
            attempts[row.id] = count[key]
        count[key] += 1
    _update(bind, t, "role", roles)
    _update(bind, t, "attempt", attempts)


def _number_items(bind: sa.Connection) -> None:
    t = _table(bind, "dataset_items")
    count: dict[tuple, int] = defaultdict(int)
    parts = {}
    for row in bind.execute(sa.select(t.c.id, t.c.job_id, t.c.turn_id).order_by(t.c.id)):
        key = (row.job_id, row.turn_id)
        if count[key]:
            parts[row.id] = count[key]
        count[key] += 1
    _update(bind, t, "part", parts)


def upgrade() -> None:
    op.add_column("runs", sa.Column("lease_holder", sa.String(256), nullable=True))
    op.add_column("runs", sa.Column("lease_heartbeat", sa.DateTime(timezone=True), nullable=True))
    op.add_column(
        "training_jobs", sa.Column("role", NAME, nullable=False, server_default="student")
    )
    op.add_column(
        "training_jobs", sa.Column("attempt", sa.Integer(), nullable=False, server_default="0")
    )
    op.add_column(
        "dataset_items", sa.Column("part", sa.Integer(), nullable=False, server_default="0")
    )
    bind = op.get_bind()
    _drop_duplicate_evaluations(bind)
    _renumber_duplicate_versions(bind)
    _number_jobs(bind)
    _number_items(bind)
    for table, columns in _UNIQUE.items():
        with op.batch_alter_table(table) as batch:
            batch.create_unique_constraint(_name(table), list(columns))
    crash_point("migration")  # a test hook (PEDAGOGY_CRASH_AFTER): killed before the commit


def downgrade() -> None:
    """Drop the keys and the new columns (dropped duplicates are not restored)."""
    for table in _UNIQUE:
        with op.batch_alter_table(table) as batch:
            batch.drop_constraint(_name(table), type_="unique")
    with op.batch_alter_table("dataset_items") as batch:
        batch.drop_column("part")
    with op.batch_alter_table("training_jobs") as batch:
        batch.drop_column("attempt")
        batch.drop_column("role")
    with op.batch_alter_table("runs") as batch:
        batch.drop_column("lease_heartbeat")
        batch.drop_column("lease_holder")
