"""Plain records the store takes and returns. ORM rows never leave pedagogy.memory."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any


@dataclass
class RunRecord:
    id: str
    name: str
    config: dict[str, Any]
    seed: int
    status: str = "running"
    """running | completed | failed | interrupted"""
    error: str | None = None
    created_at: datetime | None = None
    finished_at: datetime | None = None


@dataclass
class TurnRecord:
    """One agent call inside an episode."""

    seq: int
    agent: str
    """teacher | student | generator | verifier"""
    backend: str
    model: str
    request: dict[str, Any]
    response: str
    model_version: str | None = None
    prompt_tokens: int = 0
    completion_tokens: int = 0
    latency_s: float = 0.0
    cost: float | None = None
    seed: int | None = None
    error: str | None = None
    id: str = ""
    """Assigned by the caller (uuid hex) so records can be linked before they are written."""
    episode_id: str | None = ""
    """The episode it belongs to (set when recorded); None for a turn outside any episode."""
    hash: str = ""
    """Hash chain per run: sha256(previous hash + this turn's content); set by the store."""


@dataclass
class VerdictRecord:
    turn_id: str
    """The student turn that was judged."""
    correct: bool
    score: float
    parsed_answer: str | None
    verifier: str = "programmatic"
    detail: str = ""


@dataclass
class ExplanationRecord:
    turn_id: str
    """The teacher turn that explained."""
    style: str = "worked"
    budget_spent: float = 1.0
    utility: float | None = None


@dataclass
class EpisodeRecord:
    """One problem worked through the episode graph, with everything that happened in it."""

    id: str
    run_id: str
    round: int
    index: int
    """Position in the round's plan; (run_id, round, index) is unique."""
    problem_id: str
    arm: str
    student_version: str | None
    outcome: str
    """correct_first | correct_after_explanation | wrong | error"""
    correct_first: bool = False
    correct_final: bool = False
    explained: bool = False
    seed: int = 0
    turns: list[TurnRecord] = field(default_factory=list)
    verdicts: list[VerdictRecord] = field(default_factory=list)
    explanations: list[ExplanationRecord] = field(default_factory=list)
    decisions: dict[str, Any] = field(default_factory=dict)
    """Derived decisions (intervene?, parsed answers, ...) that replay must reproduce."""
    created_at: datetime | None = None


@dataclass
class ModelVersionRecord:
    id: str
    run_id: str
    role: str
    """student | generator"""
    number: int
    """0 = the base model; 1, 2, ... per training job."""
    path: str
    parent_id: str | None = None
    training_job_id: str | None = None
    status: str = "candidate"
    """base | candidate | promoted | rolled_back"""
    created_at: datetime | None = None


@dataclass
class TrainingJobRecord:
    id: str
    run_id: str
    round: int
    kind: str
    """sft | lora | dpo | redi"""
    config: dict[str, Any]
    base_version_id: str | None
    status: str = "running"
    """running | completed | failed"""
    metrics: dict[str, Any] = field(default_factory=dict)
    output_version_id: str | None = None
    started_at: datetime | None = None
    finished_at: datetime | None = None


@dataclass
class DatasetItemRecord:
    """One training example and where it came from."""

    job_id: str
    episode_id: str | None
    """None for an item made from a turn outside episodes (a teacher's refine reply that trains
    the LLM generator)."""
    turn_id: str
    """The turn whose response is the completion (teacher explanation or student success)."""
    polarity: str
    """positive | negative"""
    prompt: str
    completion: str
    id: int | None = None


@dataclass
class EvaluationRecord:
    run_id: str
    round: int
    model_version_id: str
    skill: str
    level: int
    n: int
    correct: int

    @property
    def accuracy(self) -> float:
        return self.correct / self.n if self.n else 0.0


@dataclass
class DecisionRecord:
    """One decision a teaching policy made, kept so that a run can be audited in SQL.

    `kind` says which mechanism decided ("intervention", "curriculum", "unlock", "style",
    "filter", ...), `policy` which implementation, `subject` what it decided about (an episode
    id, an arm, a problem id). `chosen` is the yes/no outcome where there is one and `value` the
    number it was based on (a utility, a probability, a reward); `detail` holds anything else.
    """

    run_id: str
    round: int
    kind: str
    policy: str
    subject: str
    chosen: bool | None = None
    value: float | None = None
    detail: dict[str, Any] = field(default_factory=dict)
    episode_id: str | None = None


@dataclass
class CurriculumStateRecord:
    run_id: str
    round: int
    state: dict[str, Any]
    """Sampler state: arm values, probabilities, RNG state, ..."""
