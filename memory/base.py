"""The Store protocol: a few plain methods over records. Implementations: SQLStore (SQLite, PostgreSQL)."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from pedagogy.memory.records import (
    CallAttemptRecord,
    ChainHeadRecord,
    ChainLinkRecord,
    CurriculumStateRecord,
    DatasetItemRecord,
    DecisionRecord,
    EpisodeFilter,
    EpisodePage,
    EpisodeRecord,
    EvaluationRecord,
    ModelVersionRecord,
    RunRecord,
    ToolCallRecord,
    TrainingJobRecord,
    TurnRecord,
    UsageRecord,
)

if TYPE_CHECKING:
    from pedagogy.domains.base import Problem


@runtime_checkable
class Store(Protocol):
    url: str
    """Database URL with any password masked."""

    # runs
    def create_run(
        self,
        run: RunRecord,
        versions: Sequence[ModelVersionRecord] = (),
        holder: str | None = None,
        *,
        decisions: Sequence[DecisionRecord] = (),
    ) -> None:
        """Also starts the run's hash chain, keyed when PEDAGOGY_AUDIT_KEY is set. The password
        of any URL in `run.config` (a database's, an endpoint's) is masked before it is stored.
        Its base model `versions`, `decisions` made before it started (its teacher model's
        held-out accuracy) and, given a `holder`, its lease are written with it."""
        ...

    def get_run(self, run_id: str) -> RunRecord:
        """Raises StoreError naming the id and `pedagogy runs` when it does not exist."""
        ...

    def list_runs(self) -> list[RunRecord]: ...
    def set_run_status(self, run_id: str, status: str, error: str | None = None) -> None: ...

    # the run lease (pedagogy.memory.lease)
    def acquire_run(self, run_id: str, holder: str) -> RunRecord:
        """Take the lease and mark the run running; RunInUse when a live process holds it."""
        ...

    def heartbeat(self, run_id: str, holder: str) -> bool:
        """Refresh the lease; False when `holder` no longer holds it."""
        ...

    def release_run(self, run_id: str, holder: str) -> None: ...
    def set_run_budget(self, run_id: str, budget: dict[str, Any]) -> None:
        """Replace the `budget` section of the run's stored config."""
        ...

    # problems
    def add_problems(self, problems: Sequence[Problem]) -> None:
        """Insert problems, ignoring ones whose id is already stored."""
        ...

    def get_problems(self, ids: Sequence[str]) -> dict[str, Problem]: ...

    # episodes (with their turns, tool calls, verdicts and explanations), written atomically
    def record_episodes(self, episodes: Sequence[EpisodeRecord]) -> None:
        """One transaction; idempotent on (run_id, round, index): a re-recorded episode is skipped."""
        ...

    def record_turns(
        self, run_id: str, turns: Sequence[TurnRecord], decisions: Sequence[DecisionRecord] = ()
    ) -> None:
        """Turns outside any episode (episode_id None), appended to the run's hash chain in one
        transaction; idempotent on turn id (a turn already stored is skipped). `decisions` made
        from these calls are written in the same transaction: both are stored, or neither."""
        ...

    def turns_outside_episodes(self, run_id: str) -> list[TurnRecord]:
        """The run's turns with no episode, in chain order."""
        ...

    def episodes(
        self, run_id: str, round: int | None = None, with_turns: bool = False
    ) -> list[EpisodeRecord]: ...
    def episodes_page(
        self,
        run_id: str,
        flt: EpisodeFilter | None = None,
        after: tuple[int, int] | None = None,
        limit: int = 50,
    ) -> EpisodePage:
        """The next `limit` episodes (no turns) after (round, index) `after`, filtered."""
        ...

    def get_episode(self, episode_id: str) -> EpisodeRecord:
        """With turns, verdicts and explanations."""
        ...

    def done_episode_indices(self, run_id: str, round: int) -> set[int]: ...
    def tool_calls(
        self, episode_id: str | None = None, *, run_id: str | None = None
    ) -> list[ToolCallRecord]:
        """An agent episode's tool calls (or a run's), in the order they were made."""
        ...

    def finish_reasons(self, run_id: str) -> dict[str, dict[str, int]]:
        """Per agent, the run's turns per finish reason ("length": cut at max_tokens)."""
        ...

    def call_attempts(self, run_id: str) -> list[CallAttemptRecord]:
        """The attempts of the run's calls that needed more than one (retries, fallbacks), in
        the order they were recorded."""
        ...

    def verify_chain(self, run_id: str) -> list[str]:
        """Ids of links whose hash does not match the chain (empty = untampered); turns and tool
        calls by id, other rows as "table:id"."""
        ...

    def chain_head(self, run_id: str) -> ChainHeadRecord | None:
        """The end of the run's hash chain (None if its row is missing)."""
        ...

    def chain_links(self, run_id: str) -> Iterator[ChainLinkRecord]:
        """Every row of the run's chained tables as a link, in chain order (see
        `pedagogy.memory.chain`)."""
        ...

    # curriculum
    def save_curriculum_state(
        self, record: CurriculumStateRecord, decisions: Sequence[DecisionRecord] = ()
    ) -> None:
        """Upsert on (run_id, round)."""
        ...

    def curriculum_states(self, run_id: str) -> list[CurriculumStateRecord]: ...

    # training and models
    def add_model_version(self, version: ModelVersionRecord) -> None:
        """Idempotent on the id; unique per (run, role, number)."""
        ...

    def set_model_status(self, version_id: str, status: str) -> None: ...
    def model_versions(self, run_id: str, role: str | None = None) -> list[ModelVersionRecord]: ...
    def get_model_version(self, version_id: str) -> ModelVersionRecord: ...
    def start_training_job(
        self,
        job: TrainingJobRecord,
        items: Sequence[DatasetItemRecord] = (),
        decisions: Sequence[DecisionRecord] = (),
    ) -> TrainingJobRecord:
        """Insert-or-return-existing on (run, round, role, attempt), with its items and the
        decisions that chose them in one transaction."""
        ...

    def training_job(
        self, run_id: str, round: int, role: str = "student"
    ) -> TrainingJobRecord | None:
        """The latest attempt of the job of (run, round, role)."""
        ...

    def restart_training_job(
        self, job_id: str, decisions: Sequence[DecisionRecord] = ()
    ) -> None: ...
    def interrupt_training_jobs(self, run_id: str) -> list[str]:
        """Mark jobs left `running` by a dead process `interrupted`; returns their ids."""
        ...

    def finish_training_job(
        self,
        job_id: str,
        status: str,
        metrics: dict[str, Any],
        output_version_id: str | None,
        version: ModelVersionRecord | None = None,
    ) -> None:
        """With the `version` the job made, in the same transaction."""
        ...

    def training_jobs(self, run_id: str) -> list[TrainingJobRecord]: ...
    def add_dataset_items(self, items: Sequence[DatasetItemRecord]) -> None:
        """Idempotent on (job, turn, content); a turn's further items get the next `part`."""
        ...

    def dataset_items(self, job_id: str) -> list[DatasetItemRecord]: ...

    # decisions of the teaching policies
    def record_decisions(self, decisions: Sequence[DecisionRecord]) -> None: ...
    def decisions(
        self, run_id: str, round: int | None = None, kind: str | None = None
    ) -> list[DecisionRecord]:
        """In round order, then in the order they were recorded."""
        ...

    # evaluation
    def record_evaluations(self, evaluations: Sequence[EvaluationRecord]) -> None:
        """Idempotent on (model version, round, skill, level)."""
        ...

    def evaluations(self, run_id: str) -> list[EvaluationRecord]: ...

    # accounting
    def token_totals(self, run_id: str) -> dict[str, dict[str, float]]:
        """Per agent: prompt_tokens, completion_tokens, cost, calls, cost_unknown. `cost` sums
        the turns with a known cost (None when none has one); `cost_unknown` counts the others
        (a model without a price, a local model)."""
        ...

    def usage(self, run_id: str) -> list[UsageRecord]:
        """Per agent, curriculum arm and backend: calls, tokens, known cost, calls of unknown
        cost."""
        ...

    def close(self) -> None: ...
