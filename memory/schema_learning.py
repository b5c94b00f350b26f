"""Tables of how the run learned and decided: curriculum_states, dataset_items, evaluations and
decisions (re-exported by `pedagogy.memory.schema`)."""

from __future__ import annotations

from sqlalchemy import (
    JSON,
    Boolean,
    Column,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    Table,
    Text,
    UniqueConstraint,
)

from pedagogy.memory.schema_runs import ID, NAME, _link, metadata

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
