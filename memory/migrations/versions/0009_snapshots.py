"""The rows that decide or record an outcome go on the run's hash chain: `snapshots`.

Runs (config, seed), problems, episodes, model versions (and each status change), training jobs,
evaluations and curriculum states are not links themselves: a `snapshots` row, a link of the run's
chain, holds a copy of such a row when it is written and again at each change, and `pedagogy
audit verify` compares every row with its last copy. A run's first copy (of its runs row) says
whether the run is keyed; a model version's holds the sha256 of each file in its folder.

Existing runs are chained as this upgrade finds them: their rows are copied, in a fixed order
(the run, the problems its episodes pose, its episodes, versions, jobs, evaluations, curriculum
states), as links appended to the end of each run's chain, and a warning says how many. An edit
made before the upgrade cannot be told from the original. A keyed run is chained under
PEDAGOGY_AUDIT_KEY; when it is unset, a keyed run is left unchained and the warning names it
(`audit verify` then notes that its rows are not on the chain).

Revision ID: 0009_snapshots
Revises: 0008_natural_keys
Create Date: 2026-12-01
"""

from __future__ import annotations

import itertools
import warnings
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from pedagogy.memory.chain import ChainWriter, audit_key, row_content, weight_files

revision: str = "0009_snapshots"
down_revision: str | Sequence[str] | None = "0008_natural_keys"
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
"""The chained tables before this revision."""
_ORDER = {
    "runs": "id",
    "episodes": ("round", "index"),
    "model_versions": ("role", "number"),
    "training_jobs": ("round", "role", "attempt"),
    "evaluations": "id",
    "curriculum_states": "round",
}


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


def upgrade() -> None:
    op.create_table(
        "snapshots",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("run_id", ID, nullable=False),
        sa.Column("subject", sa.String(64), nullable=False),
        sa.Column("subject_id", ID, nullable=False),
        sa.Column("content", sa.JSON(), nullable=False),
        sa.Column("chain_index", sa.Integer(), nullable=False),
        sa.Column("hash", sa.String(64), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_snapshots"),
        sa.UniqueConstraint("run_id", "chain_index", name="uq_snapshots_run_id_chain_index"),
        sa.ForeignKeyConstraint(["run_id"], ["runs.id"], name="fk_snapshots_run_id_runs"),
    )
    op.create_index(
        "ix_snapshots_run_id_subject_subject_id", "snapshots", ["run_id", "subject", "subject_id"]
    )
    _chain_existing_runs(op.get_bind())


def _chain_existing_runs(bind: sa.Connection) -> None:
    names = ("runs", "chain_heads", "problems", "snapshots", *_ORDER)
    t = _tables(bind, *dict.fromkeys(names))
    heads, snaps = t["chain_heads"], t["snapshots"]
    key = audit_key()
    chained: dict[str, int] = {}
    skipped: list[str] = []
    ids = itertools.count(1)
    for head in bind.execute(sa.select(heads).order_by(heads.c.run_id)).all():
        if head.keyed and key is None:
            skipped.append(head.run_id)
            continue
        chain = ChainWriter(head.run_id, head.last_hash, head.length, key if head.keyed else None)
        rows: list[dict] = []

        def copy(subject: str, row: dict, extra: dict | None = None, chain=chain, rows=rows):
            content = row_content(subject, row)
            content.update(extra or {})
            link = {
                "id": next(ids),
                "run_id": chain.run_id,
                "subject": subject,
                "subject_id": str(row["id"]),
                "content": content,
            }
            chain.link("snapshots", link)
            rows.append(link)

        for name, order in _ORDER.items():
            table = t[name]
            where = table.c.id == head.run_id if name == "runs" else table.c.run_id == head.run_id
            keys = (order,) if isinstance(order, str) else order
            query = sa.select(table).where(where).order_by(*(table.c[k] for k in keys))
            found = [dict(r._mapping) for r in bind.execute(query)]
            for row in found:
                if name == "runs":
                    copy(name, row, {"keyed": bool(head.keyed)})
                elif name == "model_versions":
                    copy(name, row, {"files": weight_files(row["path"])})
                else:
                    copy(name, row)
            if name == "runs":  # the problems its episodes pose, right after the run
                e, p = t["episodes"], t["problems"]
                posed = sa.select(e.c.problem_id).where(e.c.run_id == head.run_id)
                query = sa.select(p).where(p.c.id.in_(posed)).order_by(p.c.id)
                for problem in bind.execute(query):
                    copy("problems", dict(problem._mapping))
        if rows:
            bind.execute(snaps.insert(), rows)
        bind.execute(
            heads.update()
            .where(heads.c.run_id == head.run_id)
            .values(last_hash=chain.last, length=chain.length)
        )
        chained[head.run_id] = len(rows)
    if chained and bind.dialect.name == "postgresql":
        # The ids were chosen here (a link covers its id): move the sequence past them.
        bind.exec_driver_sql(
            "SELECT setval(pg_get_serial_sequence('snapshots', 'id'), "
            "(SELECT max(id) FROM snapshots))"
        )
    if chained:
        warnings.warn(
            f"migration 0009 chained the outcome rows of {len(chained)} run(s) as it found them "
            f"({sum(chained.values())} snapshots appended to their chains; edits made before this "
            "upgrade cannot be told)",
            stacklevel=2,
        )
    if skipped:
        warnings.warn(
            f"migration 0009 left {len(skipped)} keyed run(s) unchained (PEDAGOGY_AUDIT_KEY is "
            f"unset): {', '.join(skipped[:5])}; their outcome rows are not on their chains",
            stacklevel=2,
        )


def downgrade() -> None:
    """Drop the snapshots; each run that had some is re-chained from its first snapshot's index
    without them (under PEDAGOGY_AUDIT_KEY when set and the run is keyed), so that the older
    code verifies it clean."""
    bind = op.get_bind()
    t = _tables(bind, "chain_heads", "episodes", "training_jobs", "snapshots", *_CHAINED)
    heads, snaps = t["chain_heads"], t["snapshots"]
    first_of = bind.execute(
        sa.select(snaps.c.run_id, sa.func.min(snaps.c.chain_index))
        .group_by(snaps.c.run_id)
        .order_by(snaps.c.run_id)
    ).all()
    key = audit_key()
    for run_id, first in first_of:
        links = []
        before = None
        for name in _CHAINED:
            table = t[name]
            query = sa.select(table).where(_of_run(t, name, run_id), table.c.chain_index > first)
            links += [(r.chain_index, name, dict(r._mapping)) for r in bind.execute(query)]
            query = sa.select(table.c.hash).where(
                _of_run(t, name, run_id), table.c.chain_index == first - 1
            )
            before = before or bind.execute(query).scalar()
        keyed = bool(
            bind.execute(sa.select(heads.c.keyed).where(heads.c.run_id == run_id)).scalar()
        )
        chain = ChainWriter(run_id, before or "", first, key if keyed else None)
        rows: dict[str, list[dict]] = {name: [] for name in _CHAINED}
        for _, name, row in sorted(links, key=lambda link: link[0]):
            chain.link(name, row)
            rows[name].append(row)
        bind.execute(snaps.delete().where(snaps.c.run_id == run_id))
        for name, linked in rows.items():
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
    op.drop_index("ix_snapshots_run_id_subject_subject_id", table_name="snapshots")
    op.drop_table("snapshots")
