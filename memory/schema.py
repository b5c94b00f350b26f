"""The SQL schema of a pedagogy database, as SQLAlchemy Core tables.

One table per record of `pedagogy.memory.records`, portable between SQLite and PostgreSQL (generic
types only; JSON columns use `sqlalchemy.JSON`). Constraints are named through a naming convention
so that the hand-written Alembic migration (`migrations/versions/0001_initial.py`) can name them
the same way and a test can check that migration and metadata agree.

Two foreign keys are left out on purpose: `model_versions.training_job_id` and
`training_jobs.output_version_id`. A version and the job that made it point at each other; a cycle of
foreign keys would force one insert order (or deferred constraints) on every caller.
"""

from __future__ import annotations

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Column,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
    false,
)

NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

metadata = MetaData(naming_convention=NAMING_CONVENTION)

ID = String(128)
"""Ids are caller-chosen strings (uuid hex, content hashes, readable run names)."""
NAME = String(64)
"""Short enumerations and names: status, role, agent, polarity, ..."""


def _ts(name: str, nullable: bool = True) -> Column:
    return Column(name, DateTime(timezone=True), nullable=nullable)


def _link() -> tuple[Column, Column]:
    """A row's link in its run's hash chain (migration 0006; turns and tool calls have their own):
    its position, unique across the run's chained tables, and its hash."""
    index = Column("chain_index", Integer, nullable=False)
    return index, Column("hash", String(64), nullable=False)


runs = Table(
    "runs",
    metadata,
    Column("id", ID, primary_key=True),
    Column("name", Text, nullable=False),
    Column("config", JSON, nullable=False),
    Column("seed", BigInteger, nullable=False),
    Column("status", NAME, nullable=False),
    Column("error", Text),
    _ts("created_at", nullable=False),
    _ts("finished_at"),
)

chain_heads = Table(
    "chain_heads",
    metadata,
    Column("run_id", ID, ForeignKey("runs.id"), primary_key=True),
    Column("last_hash", String(64), nullable=False),
    Column("length", Integer, nullable=False),
    # Whether the chain's links are HMACs under PEDAGOGY_AUDIT_KEY (never the key itself).
    Column("keyed", Boolean, nullable=False, server_default=false()),
    # Links before this index are pre-0006 turns and tool calls, hashed the earlier way.
    Column("full_from", Integer, nullable=False, server_default="0"),
)
"""The end of each run's hash chain (`pedagogy.memory.chain`); its row is also the per-run write
lock."""

problems = Table(
    "problems",
    metadata,
    Column("id", ID, primary_key=True),
    Column("domain", NAME, nullable=False),
    Column("skill", String(128), nullable=False),
    Column("level", Integer, nullable=False),
    Column("prompt", Text, nullable=False),
    Column("answer", Text, nullable=False),
    Column("metadata", JSON, nullable=False),
    Column("source", NAME, nullable=False),
    Column("parent_id", ID),
    _ts("created_at", nullable=False),
)

model_versions = Table(
    "model_versions",
    metadata,
    Column("id", ID, primary_key=True),
    Column("run_id", ID, ForeignKey("runs.id"), nullable=False),
    Column("role", NAME, nullable=False),
    Column("number", Integer, nullable=False),
    Column("path", Text, nullable=False),
    Column("parent_id", ID, ForeignKey("model_versions.id")),
    Column("training_job_id", ID),
    Column("status", NAME, nullable=False),
    _ts("created_at", nullable=False),
    Index(None, "run_id"),
    Index(None, "parent_id"),
)

training_jobs = Table(
    "training_jobs",
    metadata,
    Column("id", ID, primary_key=True),
    Column("run_id", ID, ForeignKey("runs.id"), nullable=False),
    Column("round", Integer, nullable=False),
    Column("kind", NAME, nullable=False),
    Column("config", JSON, nullable=False),
    Column("base_version_id", ID, ForeignKey("model_versions.id")),
    Column("status", NAME, nullable=False),
    Column("metrics", JSON, nullable=False),
    Column("output_version_id", ID),
    _ts("started_at", nullable=False),
    _ts("finished_at"),
    Index(None, "run_id"),
)

episodes = Table(
    "episodes",
    metadata,
    Column("id", ID, primary_key=True),
    Column("run_id", ID, ForeignKey("runs.id"), nullable=False),
    Column("round", Integer, nullable=False),
    Column("index", Integer, nullable=False),
    Column("problem_id", ID, ForeignKey("problems.id"), nullable=False),
    Column("arm", String(256), nullable=False),
    Column("student_version", ID),
    Column("outcome", NAME, nullable=False),
    Column("correct_first", Boolean, nullable=False),
    Column("correct_final", Boolean, nullable=False),
    Column("explained", Boolean, nullable=False),
    Column("seed", BigInteger, nullable=False),
    Column("decisions", JSON, nullable=False),
    _ts("created_at", nullable=False),
    UniqueConstraint("run_id", "round", "index"),
    Index(None, "problem_id"),
)

turns = Table(
    "turns",
    metadata,
    Column("id", ID, primary_key=True),
    # NULL: a turn outside any episode (an LLM generator posing a round's problems).
    Column("episode_id", ID, ForeignKey("episodes.id"), nullable=True),
    Column("run_id", ID, ForeignKey("runs.id"), nullable=False),
    Column("chain_index", Integer, nullable=False),
    Column("seq", Integer, nullable=False),
    Column("agent", NAME, nullable=False),
    Column("backend", NAME, nullable=False),
    Column("model", Text, nullable=False),
    Column("model_version", ID),
    Column("request", JSON, nullable=False),
    Column("response", Text, nullable=False),
    Column("prompt_tokens", Integer, nullable=False),
    Column("completion_tokens", Integer, nullable=False),
    Column("latency_s", Float, nullable=False),
    Column("cost", Float),
    Column("seed", BigInteger),
    Column("error", Text),
    Column("hash", String(64), nullable=False),
    # An acting agent's step: trajectory, step, text action, ... (migration 0005; NULL before).
    Column("detail", JSON),
    # Position in the run's hash chain: verify_chain walks turns (and tool calls) in this order.
    UniqueConstraint("run_id", "chain_index"),
    Index(None, "episode_id"),
)

tool_calls = Table(
    "tool_calls",
    metadata,
    Column("id", ID, primary_key=True),
    Column("run_id", ID, ForeignKey("runs.id"), nullable=False),
    Column("episode_id", ID, ForeignKey("episodes.id"), nullable=True),
    Column("turn_id", ID, ForeignKey("turns.id"), nullable=False),
    # Turns and tool calls share the run's hash chain: chain_index is unique across both tables
    # (the chain head's row lock hands out the indices).
    Column("chain_index", Integer, nullable=False),
    Column("step", Integer, nullable=False),
    Column("tool", String(128), nullable=False),
    Column("call_id", ID, nullable=False),
    Column("arguments", JSON, nullable=False),
    Column("observation", Text, nullable=False),
    Column("ok", Boolean, nullable=False),
    Column("error", Text),
    Column("latency_s", Float, nullable=False),
    Column("truncated", Boolean, nullable=False),
    Column("detail", JSON, nullable=False),
    Column("hash", String(64), nullable=False),
    UniqueConstraint("run_id", "chain_index"),
    Index(None, "episode_id"),
    Index(None, "turn_id"),
)
"""Every tool call of an acting agent with its observation (migration 0005)."""

verdicts = Table(
    "verdicts",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("turn_id", ID, ForeignKey("turns.id"), nullable=False),
    Column("episode_id", ID, ForeignKey("episodes.id"), nullable=False),
    Column("correct", Boolean, nullable=False),
    Column("score", Float, nullable=False),
    Column("parsed_answer", Text),
    Column("verifier", NAME, nullable=False),
    Column("detail", Text, nullable=False),
    *_link(),
    Index(None, "turn_id"),
    Index(None, "episode_id"),
)

explanations = Table(
    "explanations",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("turn_id", ID, ForeignKey("turns.id"), nullable=False),
    Column("episode_id", ID, ForeignKey("episodes.id"), nullable=False),
    Column("style", NAME, nullable=False),
    Column("budget_spent", Float, nullable=False),
    Column("utility", Float),
    *_link(),
    Index(None, "turn_id"),
    Index(None, "episode_id"),
)

curriculum_states = Table(
    "curriculum_states",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("run_id", ID, ForeignKey("runs.id"), nullable=False),
    Column("round", Integer, nullable=False),
    Column("state", JSON, nullable=False),
    UniqueConstraint("run_id", "round"),
)

dataset_items = Table(
    "dataset_items",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("job_id", ID, ForeignKey("training_jobs.id"), nullable=False),
    # NULL: made from turns outside episodes (an LLM generator's training pairs)
    Column("episode_id", ID, ForeignKey("episodes.id"), nullable=True),
    Column("turn_id", ID, ForeignKey("turns.id"), nullable=False),
    Column("polarity", NAME, nullable=False),
    Column("prompt", Text, nullable=False),
    Column("completion", Text, nullable=False),
    *_link(),
    Index(None, "job_id"),
    Index(None, "episode_id"),
    Index(None, "turn_id"),
)

evaluations = Table(
    "evaluations",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("run_id", ID, ForeignKey("runs.id"), nullable=False),
    Column("round", Integer, nullable=False),
    Column("model_version_id", ID, ForeignKey("model_versions.id"), nullable=False),
    Column("skill", String(128), nullable=False),
    Column("level", Integer, nullable=False),
    Column("n", Integer, nullable=False),
    Column("correct", Integer, nullable=False),
    # An acting student's means per arm (mean_tool_calls, invalid_action_rate, ...); NULL for a
    # text student (migration 0005).
    Column("metrics", JSON),
    Index(None, "run_id"),
    Index(None, "model_version_id"),
)

decisions = Table(
    "decisions",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("run_id", ID, ForeignKey("runs.id"), nullable=False),
    Column("round", Integer, nullable=False),
    Column("kind", NAME, nullable=False),
    Column("policy", NAME, nullable=False),
    Column("subject", ID, nullable=False),
    Column("chosen", Boolean),
    Column("value", Float),
    Column("detail", JSON, nullable=False),
    Column("episode_id", ID),
    *_link(),
    Index(None, "run_id", "round"),
    Index(None, "run_id", "kind"),
)
"""Every decision of a teaching policy (migration 0002). No foreign key on `episode_id`: an
intervention is decided before its episode is written."""
