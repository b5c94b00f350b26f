"""The SQL schema of a pedagogy database, as SQLAlchemy Core tables.

One table per record of `pedagogy.memory.records`, portable between SQLite and PostgreSQL (generic
types only; JSON columns use `sqlalchemy.JSON`). Constraints are named through a naming convention
so that the hand-written Alembic migration (`migrations/versions/0001_initial.py`) can name them
the same way and a test can check that migration and metadata agree.

Two foreign keys are left out on purpose: `model_versions.training_job_id` and
`training_jobs.output_version_id`. A version and the job that made it point at each other; a cycle of
foreign keys would force one insert order (or deferred constraints) on every caller.

The tables live in `schema_runs` (runs and models), `schema_episodes` (what happened in episodes)
and `schema_learning` (curriculum, training data, evaluations, decisions); they are all here, in
the order they are defined, which is the order of `metadata.tables`.
"""

from __future__ import annotations

from pedagogy.memory.schema_episodes import (
    call_attempts,
    episodes,
    explanations,
    tool_calls,
    turns,
    verdicts,
)
from pedagogy.memory.schema_learning import (
    curriculum_states,
    dataset_items,
    decisions,
    evaluations,
)
from pedagogy.memory.schema_runs import (
    ID,
    NAME,
    NAMING_CONVENTION,
    chain_heads,
    metadata,
    model_versions,
    problems,
    runs,
    snapshots,
    training_jobs,
)

__all__ = [
    "ID",
    "NAME",
    "NAMING_CONVENTION",
    "call_attempts",
    "chain_heads",
    "curriculum_states",
    "dataset_items",
    "decisions",
    "episodes",
    "evaluations",
    "explanations",
    "metadata",
    "model_versions",
    "problems",
    "runs",
    "snapshots",
    "tool_calls",
    "training_jobs",
    "turns",
    "verdicts",
]
