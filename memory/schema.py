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
    Column("role", NAME, nullable=False, doc="student | generator: the model it is a version of."),
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
        doc="0, then 1, 2, ... for each retry of a failed job of the same round and role (an "
        "interrupted job is restarted in place).",
    ),
    Index(None, "run_id"),
    UniqueConstraint("run_id", "round", "role", "attempt"),
)

episodes = Table(
    "episodes",
    metadata,
    Column("id", ID, primary_key=True, doc="The episode id."),
    Column("run_id", ID, ForeignKey("runs.id"), nullable=False, doc="The run it belongs to."),
    Column("round", Integer, nullable=False, doc="The round it was practised in."),
    Column("index", Integer, nullable=False, doc="Position in the round's plan."),
    Column("problem_id", ID, ForeignKey("problems.id"), nullable=False, doc="The problem worked."),
    Column("arm", String(256), nullable=False, doc="The curriculum arm, skill@level."),
    Column("student_version", ID, doc="The model version that made the first attempt."),
    Column(
        "outcome",
        NAME,
        nullable=False,
        doc="correct_first | correct_after_explanation | wrong | error.",
    ),
    Column("correct_first", Boolean, nullable=False, doc="Whether the first attempt was right."),
    Column("correct_final", Boolean, nullable=False, doc="Whether the last attempt was right."),
    Column(
        "explained",
        Boolean,
        nullable=False,
        doc="Whether the teacher explained (or demonstrated).",
    ),
    Column("seed", BigInteger, nullable=False, doc="The episode's sampling seed."),
    Column(
        "decisions",
        JSON,
        nullable=False,
        doc="Derived decisions a replay must reproduce: intervene or not, parsed answers, the "
        "teacher's budget left, an acting student's settings (`agent`), ...",
    ),
    _ts("created_at", nullable=False, doc="When it was stored."),
    UniqueConstraint("run_id", "round", "index"),
    Index(None, "problem_id"),
)

turns = Table(
    "turns",
    metadata,
    Column(
        "id",
        ID,
        primary_key=True,
        doc="uuid hex, chosen by the caller so records link before they are written.",
    ),
    Column(
        "episode_id",
        ID,
        ForeignKey("episodes.id"),
        nullable=True,
        doc="The episode it belongs to; NULL for a turn outside any episode (an LLM generator "
        "posing a round's problems).",
    ),
    Column("run_id", ID, ForeignKey("runs.id"), nullable=False, doc="The run it belongs to."),
    Column(
        "chain_index",
        Integer,
        nullable=False,
        doc="Position in the run's hash chain, unique across the run's chained tables.",
    ),
    Column("seq", Integer, nullable=False, doc="Position within its episode."),
    Column("agent", NAME, nullable=False, doc="teacher | student | generator | verifier."),
    Column(
        "backend",
        NAME,
        nullable=False,
        doc="The backend kind that made the call: scripted, transformers, litellm, ...",
    ),
    Column("model", Text, nullable=False, doc="The model as the backend names it."),
    Column(
        "model_version",
        ID,
        doc="The pedagogy model version that answered (a local trained model); NULL otherwise.",
    ),
    Column(
        "request",
        JSON,
        nullable=False,
        doc="The request as sent: messages, max_tokens, temperature, seed, stop, purpose, tools "
        "and the problem id (never a key).",
    ),
    Column(
        "response",
        Text,
        nullable=False,
        doc="The text the model returned; empty when the call failed.",
    ),
    Column(
        "prompt_tokens",
        Integer,
        nullable=False,
        doc="Tokens of the prompt, as the backend counted them.",
    ),
    Column(
        "completion_tokens",
        Integer,
        nullable=False,
        doc="Tokens of the response, as the backend counted them.",
    ),
    Column("latency_s", Float, nullable=False, doc="Seconds the call took."),
    Column("cost", Float, doc="USD; NULL when unknown (local models, models without a price)."),
    Column("seed", BigInteger, doc="The request's sampling seed."),
    Column("error", Text, doc="Why the call failed, one line; NULL when it answered."),
    Column(
        "hash",
        String(64),
        nullable=False,
        doc="Its link in the run's hash chain: SHA-256 (or HMAC-SHA256 under PEDAGOGY_AUDIT_KEY) "
        "over the row and the link before it.",
    ),
    Column(
        "detail",
        JSON,
        doc="What the turn was beyond its text (migration 0005; NULL before): an acting step "
        "(trajectory, step, text action, first-thought prefix, self-consistency votes), the "
        "explanation as shown (`shown`), why generation stopped (`finish_reason`), an LLM "
        "judge's votes and agreement (`judge`), ...",
    ),
    # Position in the run's hash chain: verify_chain walks turns (and tool calls) in this order.
    UniqueConstraint("run_id", "chain_index"),
    Index(None, "episode_id"),
)

tool_calls = Table(
    "tool_calls",
    metadata,
    Column("id", ID, primary_key=True, doc="uuid hex, chosen by the caller."),
    Column("run_id", ID, ForeignKey("runs.id"), nullable=False, doc="The run it belongs to."),
    Column(
        "episode_id",
        ID,
        ForeignKey("episodes.id"),
        nullable=True,
        doc="The episode it belongs to.",
    ),
    Column(
        "turn_id",
        ID,
        ForeignKey("turns.id"),
        nullable=False,
        doc="The model turn that asked for it.",
    ),
    Column(
        "chain_index",
        Integer,
        nullable=False,
        doc="Position in the run's hash chain, unique across the run's chained tables.",
    ),
    Column(
        "step",
        Integer,
        nullable=False,
        doc="Position of that turn in its trajectory (0 = first step).",
    ),
    Column("tool", String(128), nullable=False, doc="The tool's name."),
    Column(
        "call_id",
        ID,
        nullable=False,
        doc="The call's id as the model sees it (OpenAI tool_call_id).",
    ),
    Column(
        "arguments",
        JSON,
        nullable=False,
        doc='The arguments as the model gave them ({"_raw": text} when they were not a JSON '
        "object).",
    ),
    Column(
        "observation",
        Text,
        nullable=False,
        doc="What the agent was shown (already truncated by the tool).",
    ),
    Column("ok", Boolean, nullable=False, doc="Whether the tool ran and succeeded."),
    Column(
        "error",
        Text,
        doc="Why it failed (timeout, bad_arguments, unknown_tool, ...); NULL when ok.",
    ),
    Column("latency_s", Float, nullable=False, doc="Seconds the tool took."),
    Column(
        "truncated",
        Boolean,
        nullable=False,
        doc="Whether the observation was cut to the tool's output limit.",
    ),
    Column("detail", JSON, nullable=False, doc="The tool's detail: exit code, resource use, ..."),
    Column(
        "hash",
        String(64),
        nullable=False,
        doc="Its link in the run's hash chain: SHA-256 (or HMAC-SHA256 under PEDAGOGY_AUDIT_KEY) "
        "over the row and the link before it.",
    ),
    UniqueConstraint("run_id", "chain_index"),
    Index(None, "episode_id"),
    Index(None, "turn_id"),
)
"""Every tool call of an acting agent with its observation (migration 0005)."""

call_attempts = Table(
    "call_attempts",
    metadata,
    Column("id", ID, primary_key=True, doc='"<turn id>:<n>".'),
    Column("run_id", ID, ForeignKey("runs.id"), nullable=False, doc="The run it belongs to."),
    Column("turn_id", ID, ForeignKey("turns.id"), nullable=False, doc="The turn of the call."),
    Column(
        "chain_index",
        Integer,
        nullable=False,
        doc="Position in the run's hash chain, unique across the run's chained tables. Right "
        "after its turn's.",
    ),
    Column("n", Integer, nullable=False, doc="Attempt number of the call, 0-based."),
    Column("endpoint", Text, nullable=False, doc="The model and api_base tried (never a key)."),
    Column(
        "status",
        Integer,
        doc="HTTP status; NULL when no readable response came (a timeout, a refused "
        "connection, a body that is not JSON).",
    ),
    Column("error", Text, doc="Why the attempt failed, one line; NULL for the one that served."),
    Column("latency_s", Float, nullable=False, doc="Seconds the attempt took."),
    Column(
        "retry_after_s",
        Float,
        doc="What the server asked to wait before the next attempt (Retry-After); NULL when it "
        "did not say.",
    ),
    _ts("created_at", nullable=False, doc="When the attempt was sent."),
    Column(
        "hash",
        String(64),
        nullable=False,
        doc="Its link in the run's hash chain: SHA-256 (or HMAC-SHA256 under PEDAGOGY_AUDIT_KEY) "
        "over the row and the link before it.",
    ),
    UniqueConstraint("run_id", "chain_index"),
    UniqueConstraint("turn_id", "n"),
    Index(None, "turn_id"),
)
"""Every attempt of a model call that needed more than one (migration 0007): attempt `n`
(0-based) at `endpoint` (a model and api_base label, never a key), its HTTP status, one line of
error (NULL for the attempt that served), latency and the Retry-After it asked for. A call
served at its first attempt has no rows: its turn says everything."""

verdicts = Table(
    "verdicts",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True, doc="Row number."),
    Column("turn_id", ID, ForeignKey("turns.id"), nullable=False, doc="The student turn judged."),
    Column(
        "episode_id",
        ID,
        ForeignKey("episodes.id"),
        nullable=False,
        doc="The episode it belongs to.",
    ),
    Column("correct", Boolean, nullable=False, doc="Whether the answer was right."),
    Column("score", Float, nullable=False, doc="1.0 or 0.0, or the domain's partial score."),
    Column(
        "parsed_answer",
        Text,
        doc="The answer the domain parsed from the response; NULL if none.",
    ),
    Column("verifier", NAME, nullable=False, doc="programmatic | llm_judge."),
    Column(
        "detail",
        Text,
        nullable=False,
        doc="The verifier's note: a failed judge call's error; for an LLM judge with several "
        'samples, "judge: 2 of 3 say yes (agreement 0.67)" (every vote is in the judge turn\'s '
        "detail).",
    ),
    *_link(),
    Index(None, "turn_id"),
    Index(None, "episode_id"),
)

explanations = Table(
    "explanations",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True, doc="Row number."),
    Column(
        "turn_id",
        ID,
        ForeignKey("turns.id"),
        nullable=False,
        doc="The teacher turn that explained.",
    ),
    Column(
        "episode_id",
        ID,
        ForeignKey("episodes.id"),
        nullable=False,
        doc="The episode it belongs to.",
    ),
    Column(
        "style",
        NAME,
        nullable=False,
        doc="The style it was shown in (pedagogy.agents.explanations); demonstration for an "
        "acting teacher's trajectory.",
    ),
    Column(
        "budget_spent",
        Float,
        nullable=False,
        doc="What it was charged of the teacher's budget: its share of what the episode reserved.",
    ),
    Column(
        "utility",
        Float,
        doc="The utility intervention policy's estimated gain; NULL under other policies.",
    ),
    *_link(),
    Index(None, "turn_id"),
    Index(None, "episode_id"),
)

curriculum_states = Table(
    "curriculum_states",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True, doc="Row number."),
    Column("run_id", ID, ForeignKey("runs.id"), nullable=False, doc="The run it belongs to."),
    Column("round", Integer, nullable=False, doc="The round after which it was saved."),
    Column(
        "state",
        JSON,
        nullable=False,
        doc="The sampler's state: arm values, probabilities, RNG state, ...",
    ),
    UniqueConstraint("run_id", "round"),
)

dataset_items = Table(
    "dataset_items",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True, doc="Row number."),
    Column(
        "job_id",
        ID,
        ForeignKey("training_jobs.id"),
        nullable=False,
        doc="The training job it was made for.",
    ),
    Column(
        "episode_id",
        ID,
        ForeignKey("episodes.id"),
        nullable=True,
        doc="The episode its turn belongs to; NULL for an item made from a turn outside episodes "
        "(a teacher's refinement that trains the LLM generator).",
    ),
    Column(
        "turn_id",
        ID,
        ForeignKey("turns.id"),
        nullable=False,
        doc="The turn whose response is the completion: a teacher's explanation or a student's "
        "success (or, negative, a wrong attempt).",
    ),
    Column(
        "polarity",
        NAME,
        nullable=False,
        doc="positive | negative (a wrong attempt, for redi and dpo).",
    ),
    Column("prompt", Text, nullable=False, doc="The training prompt."),
    Column("completion", Text, nullable=False, doc="The training completion."),
    *_link(),
    Column(
        "part",
        Integer,
        nullable=False,
        server_default="0",
        doc="0, or 1 for the same explanation as the completion of the re-attempt prompt "
        "(training.in_context). With job and turn, its natural key (migration 0008).",
    ),
    UniqueConstraint("job_id", "turn_id", "part"),
    Index(None, "job_id"),
    Index(None, "episode_id"),
    Index(None, "turn_id"),
)

evaluations = Table(
    "evaluations",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True, doc="Row number."),
    Column("run_id", ID, ForeignKey("runs.id"), nullable=False, doc="The run it belongs to."),
    Column(
        "round",
        Integer,
        nullable=False,
        doc="The round after which it was measured (0: before any teaching).",
    ),
    Column(
        "model_version_id",
        ID,
        ForeignKey("model_versions.id"),
        nullable=False,
        doc="The version evaluated.",
    ),
    Column("skill", String(128), nullable=False, doc="The arm's skill."),
    Column("level", Integer, nullable=False, doc="The arm's level."),
    Column("n", Integer, nullable=False, doc="Held-out problems of the arm."),
    Column("correct", Integer, nullable=False, doc="How many the version answered right."),
    Column(
        "metrics",
        JSON,
        doc="An acting student's means on the arm (mean_tool_calls, invalid_action_rate, "
        "mean_steps, unanswered); NULL for a text student (migration 0005).",
    ),
    Index(None, "run_id"),
    Index(None, "model_version_id"),
    # Natural key (migration 0008): one row per version, round and arm.
    UniqueConstraint("model_version_id", "round", "skill", "level"),
)

decisions = Table(
    "decisions",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True, doc="Row number."),
    Column("run_id", ID, ForeignKey("runs.id"), nullable=False, doc="The run it belongs to."),
    Column("round", Integer, nullable=False, doc="The round it was made in."),
    Column(
        "kind",
        NAME,
        nullable=False,
        doc="Which mechanism decided: intervention, curriculum, unlock, style, filter, ...",
    ),
    Column(
        "policy",
        NAME,
        nullable=False,
        doc="Which implementation decided, e.g. utility, bandit.",
    ),
    Column(
        "subject",
        ID,
        nullable=False,
        doc="What it decided about: an episode id, an arm, a problem id.",
    ),
    Column("chosen", Boolean, doc="The yes/no outcome, where there is one."),
    Column("value", Float, doc="The number it was based on: a utility, a probability, a reward."),
    Column("detail", JSON, nullable=False, doc="Anything else the policy recorded."),
    Column(
        "episode_id",
        ID,
        doc="The episode it concerns, if any. No foreign key: an intervention is decided before "
        "its episode is written.",
    ),
    *_link(),
    Index(None, "run_id", "round"),
    Index(None, "run_id", "kind"),
)
"""Every decision of a teaching policy (migration 0002). No foreign key on `episode_id`: an
intervention is decided before its episode is written."""
