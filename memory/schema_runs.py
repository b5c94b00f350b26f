"""Tables of runs and models: the naming convention and `metadata` every table shares, then runs,
chain_heads, problems, model_versions and training_jobs (re-exported by `pedagogy.memory.schema`)."""

from __future__ import annotations

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Column,
    DateTime,
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


def _ts(name: str, nullable: bool = True, doc: str | None = None) -> Column:
    return Column(name, DateTime(timezone=True), nullable=nullable, doc=doc)


def _link() -> tuple[Column, Column]:
    """A row's link in its run's hash chain (migration 0006; turns and tool calls have their own):
    its position, unique across the run's chained tables, and its hash."""
    index = Column(
        "chain_index",
        Integer,
        nullable=False,
        doc="Position in the run's hash chain, unique across the run's chained tables "
        "(migration 0006).",
    )
    link = Column(
        "hash",
        String(64),
        nullable=False,
        doc="Its link in the run's hash chain: SHA-256 (or HMAC-SHA256 under "
        "PEDAGOGY_AUDIT_KEY) over the row and the link before it.",
    )
    return index, link


runs = Table(
    "runs",
    metadata,
    Column(
        "id",
        ID,
        primary_key=True,
        doc="The run id: its UTC start time and a random suffix (20250101-120000-a1b2c3).",
    ),
    Column("name", Text, nullable=False, doc="The config's `name`."),
    Column(
        "config",
        JSON,
        nullable=False,
        doc="The run's config as it ran (`RunConfig` as JSON), with the plugins it used "
        "(`plugins`) and its episode graph (`episodes.graph`); `--resume` rebuilds the run "
        "from it.",
    ),
    Column(
        "seed",
        BigInteger,
        nullable=False,
        doc="The run seed (curriculum, problems, model init).",
    ),
    Column(
        "status",
        NAME,
        nullable=False,
        doc="running | completed | failed | interrupted | budget_exhausted, as last written; a "
        "running run whose lease is not live is shown as interrupted.",
    ),
    Column("error", Text, doc="Why the run failed or stopped early, one line; NULL otherwise."),
    _ts("created_at", nullable=False, doc="When the run started."),
    _ts(
        "finished_at",
        doc="When it last stopped (completed, failed, interrupted, budget_exhausted); NULL while "
        "running.",
    ),
    Column(
        "lease_holder",
        String(256),
        doc='The process working on the run, "host:pid:token" (migration 0008); NULL when none '
        "holds it (`pedagogy.memory.lease`).",
    ),
    _ts("lease_heartbeat", doc="The lease holder's last heartbeat."),
)

chain_heads = Table(
    "chain_heads",
    metadata,
    Column(
        "run_id",
        ID,
        ForeignKey("runs.id"),
        primary_key=True,
        doc="The run whose chain this is.",
    ),
    Column("last_hash", String(64), nullable=False, doc="The hash of the chain's last link."),
    Column("length", Integer, nullable=False, doc="Number of links: the next link's chain_index."),
    Column(
        "keyed",
        Boolean,
        nullable=False,
        server_default=false(),
        doc="Whether the links are HMACs under PEDAGOGY_AUDIT_KEY (the key itself is never "
        "stored).",
    ),
    Column(
        "full_from",
        Integer,
        nullable=False,
        server_default="0",
        doc="Links before this index are turns and tool calls hashed the earlier way (written "
        "before migration 0006).",
    ),
)
"""The end of each run's hash chain (`pedagogy.memory.chain`); its row is also the per-run write
lock."""

snapshots = Table(
    "snapshots",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True, doc="Row number."),
    Column(
        "run_id", ID, ForeignKey("runs.id"), nullable=False, doc="The run whose chain holds it."
    ),
    Column(
        "subject",
        NAME,
        nullable=False,
        doc="The table of the row it is a copy of: runs, problems, episodes, model_versions, "
        "training_jobs, evaluations or curriculum_states.",
    ),
    Column("subject_id", ID, nullable=False, doc="That row's id, as text."),
    Column(
        "content",
        JSON,
        nullable=False,
        doc="The row's audited columns as written (`chain.row_content`); a run's first also "
        "`keyed`, a model version's also `files` (sha256 of each file in its folder).",
    ),
    *_link(),
    UniqueConstraint("run_id", "chain_index"),
    Index(None, "run_id", "subject", "subject_id"),
)
"""Chained copies of the rows that decide or record an outcome (migration 0009): written with
the row and again at each change, so `pedagogy audit verify` compares every such row with its
last copy and names the field that changed."""

problems = Table(
    "problems",
    metadata,
    Column(
        "id",
        ID,
        primary_key=True,
        doc="Content id: a hash of domain, skill, level, prompt and answer.",
    ),
    Column("domain", NAME, nullable=False, doc="Name of the domain that made it."),
    Column("skill", String(128), nullable=False, doc="Skill, e.g. a reasoning-gym dataset name."),
    Column("level", Integer, nullable=False, doc="Difficulty level, 0 = easiest."),
    Column("prompt", Text, nullable=False, doc="What the student is shown."),
    Column("answer", Text, nullable=False, doc="The reference answer."),
    Column(
        "metadata",
        JSON,
        nullable=False,
        doc="Domain-specific data needed to verify or solve it.",
    ),
    Column(
        "source",
        NAME,
        nullable=False,
        doc="procedural | teacher-refined | generator-refined | generator | file.",
    ),
    Column(
        "parent_id",
        ID,
        doc="The problem it was derived from (a refinement's failed problem); NULL otherwise.",
    ),
    _ts("created_at", nullable=False, doc="When it was first stored."),
)

model_versions = Table(
    "model_versions",
    metadata,
    Column("id", ID, primary_key=True, doc="The version id, e.g. <run>-student-v0."),
    Column("run_id", ID, ForeignKey("runs.id"), nullable=False, doc="The run that made it."),
    Column(
        "role",
        NAME,
        nullable=False,
        doc="student | generator | teacher (the embedded teacher model, only number 0): the model "
        "it is a version of.",
    ),
    Column(
        "number",
        Integer,
        nullable=False,
        doc="0 = the base model; 1, 2, ... per training job.",
    ),
    Column(
        "path",
        Text,
        nullable=False,
        doc="Where its weights are: a model directory (or a hub id for a base model).",
    ),
    Column(
        "parent_id",
        ID,
        ForeignKey("model_versions.id"),
        doc="The version it was trained from; NULL for a base model.",
    ),
    Column(
        "training_job_id",
        ID,
        doc="The job that made it; NULL for a base model. No foreign key: job and version point "
        "at each other.",
    ),
    Column("status", NAME, nullable=False, doc="base | candidate | promoted | rolled_back."),
    _ts("created_at", nullable=False, doc="When it was stored."),
    Index(None, "run_id"),
    Index(None, "parent_id"),
    # Natural key (migration 0008): a version per run, role and number.
    UniqueConstraint("run_id", "role", "number"),
)

training_jobs = Table(
    "training_jobs",
    metadata,
    Column("id", ID, primary_key=True, doc="The job id."),
    Column("run_id", ID, ForeignKey("runs.id"), nullable=False, doc="The run it trained for."),
    Column("round", Integer, nullable=False, doc="The round after which it trained."),
    Column(
        "kind",
        NAME,
        nullable=False,
        doc="The trainer: sft, redi, dpo, trajectory_sft or a registered one.",
    ),
    Column(
        "config",
        JSON,
        nullable=False,
        doc="Its settings (steps, batch size, learning rate, ...).",
    ),
    Column(
        "base_version_id",
        ID,
        ForeignKey("model_versions.id"),
        doc="The version it trained from.",
    ),
    Column(
        "status",
        NAME,
        nullable=False,
        doc="running | completed | failed | skipped | interrupted (its process died: restarted in "
        "place on resume; its items are left out of `export`).",
    ),
    Column(
        "metrics",
        JSON,
        nullable=False,
        doc="What the trainer reported: loss, steps, examples, seconds, ...",
    ),
    Column(
        "output_version_id",
        ID,
        doc="The version it made; NULL until it finishes. No foreign key: see "
        "model_versions.training_job_id.",
    ),
    _ts("started_at", nullable=False, doc="When it started."),
    _ts("finished_at", doc="When it finished; NULL while running."),
    Column(
        "role",
        NAME,
        nullable=False,
        server_default="student",
        doc="student | generator: the model it trains. With run, round and attempt, its natural "
        "key (migration 0008).",
    ),
    Column(
        "attempt",
        Integer,
        nullable=False,
        server_default="0",
        doc="0; a failed or interrupted job is restarted in place when the run resumes (a "
        "retry decision keeps a failure's error). Runs stored before that have 1, 2, ... for "
        "each retry of a failed job of the same round and role.",
    ),
    Index(None, "run_id"),
    UniqueConstraint("run_id", "round", "role", "attempt"),
)
