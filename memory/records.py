"""Plain records the store takes and returns. ORM rows never leave pedagogy.memory."""

from __future__ import annotations

import json
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
    """running | completed | failed | interrupted | budget_exhausted, as last written; a
    `running` run whose lease is not live is shown as interrupted (`memory.lease.run_status`)"""
    error: str | None = None
    created_at: datetime | None = None
    finished_at: datetime | None = None
    lease_holder: str | None = None
    """"host:pid:token" of the process working on the run; None when none holds it."""
    lease_heartbeat: datetime | None = None
    """The holder's last heartbeat."""


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
    """Its link in the run's hash chain (`pedagogy.memory.chain`); set by the store."""
    detail: dict[str, Any] = field(default_factory=dict)
    """What an acting agent's step was (see `Trajectory`): trajectory kind, step number, the step
    as a text action, a given first-thought prefix, self-consistency counts. Empty otherwise."""
    attempts: list[CallAttemptRecord] = field(default_factory=list)
    """The call's attempts when it needed more than one (`call_attempts` rows); [] otherwise."""


@dataclass
class CallAttemptRecord:
    """One attempt of a model call that needed more than one (`call_attempts`, migration 0007):
    the failed ones with their error, the one that served with `error` None."""

    n: int
    """Attempt number of the call, 0-based."""
    endpoint: str
    """The model and api_base tried (never a key)."""
    status: int | None = None
    """HTTP status; None when no response came (timeout, refused connection)."""
    error: str | None = None
    latency_s: float = 0.0
    retry_after_s: float | None = None
    created_at: datetime | None = None
    """When the attempt was sent."""
    turn_id: str = ""
    """The turn of the call (set when recorded)."""
    id: str = ""
    """Set when recorded: "<turn id>:<n>"."""
    hash: str = ""
    """Its link in the run's hash chain (`pedagogy.memory.chain`); set by the store."""


@dataclass
class ToolCallRecord:
    """One tool call an acting agent made, with the observation it got back."""

    id: str
    """Assigned by the caller (uuid hex)."""
    turn_id: str
    """The model turn that asked for it."""
    step: int
    """Position of that turn in its trajectory (0 = first step)."""
    tool: str
    call_id: str = ""
    """The call's id as the model sees it (OpenAI `tool_call_id`)."""
    arguments: dict[str, Any] = field(default_factory=dict)
    observation: str = ""
    """What the agent was shown (already truncated by the tool)."""
    ok: bool = True
    error: str | None = None
    """Why it failed ("timeout", "bad_arguments", "unknown_tool", ...) when not ok."""
    latency_s: float = 0.0
    truncated: bool = False
    detail: dict[str, Any] = field(default_factory=dict)
    """The tool's detail (exit code, resource use, ...)."""
    episode_id: str | None = ""
    """Set when recorded."""
    hash: str = ""
    """Its link in the run's hash chain (`pedagogy.memory.chain`); set by the store."""


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
    """The style it was shown in (`pedagogy.agents.explanations`), "demonstration" for an acting
    teacher's trajectory."""
    budget_spent: float = 1.0
    """What it was charged of the teacher's budget: its share of what the episode's `decide`
    reserved (see `graphs.episode.explain`)."""
    utility: float | None = None
    text: str | None = None
    """The explanation exactly as the student was shown it. Stored with its teacher turn (that
    turn's ``detail["shown"]``, on the hash chain); the turn's response is what the teacher
    wrote. None where the turn has none (runs recorded before it was stored)."""


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
    tool_calls: list[ToolCallRecord] = field(default_factory=list)
    """Tool calls of an agent episode, in the order they were made."""

    def trajectories(self) -> list[Trajectory]:
        """The acting agents' trajectories in this episode (attempt, demonstration, reattempt),
        rebuilt from the turns and tool calls; [] for an episode without acting turns."""
        return trajectories_of(self.turns, self.tool_calls)


@dataclass(frozen=True)
class EpisodeFilter:
    """Which of a run's episodes `Store.episodes_page` lists; None: any."""

    round: int | None = None
    arm: str | None = None
    outcome: str | None = None
    explained: bool | None = None
    tool: bool | None = None
    """Whether the episode made a tool call (an acting student's, or a demonstration's)."""

    def query(self) -> dict[str, str]:
        """As URL query parameters (the viewer's next-page links)."""
        out: dict[str, str] = {}
        if self.round is not None:
            out["round"] = str(self.round)
        if self.arm:
            out["arm"] = self.arm
        if self.outcome:
            out["outcome"] = self.outcome
        if self.explained is not None:
            out["explained"] = "yes" if self.explained else "no"
        if self.tool is not None:
            out["tool"] = "yes" if self.tool else "no"
        return out


@dataclass
class EpisodePage:
    """One page of a run's episodes (without their turns), in (round, index) order."""

    rows: list[EpisodeRecord]
    after: tuple[int, int] | None
    """The (round, index) the next page starts after; None on the last page."""
    arms: list[str]
    """Every arm and round of the run's episodes (for filters)."""
    rounds: list[int]


@dataclass
class ModelVersionRecord:
    id: str
    run_id: str
    role: str
    """student | generator | teacher (the embedded teacher model: number 0, never trained)"""
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
    """running | completed | failed | skipped | interrupted (its process died: restarted in
    place on resume; its items are left out of `export`)"""
    metrics: dict[str, Any] = field(default_factory=dict)
    output_version_id: str | None = None
    started_at: datetime | None = None
    finished_at: datetime | None = None
    role: str = "student"
    """student | generator: the model the job trains (with round and attempt, its natural key)"""
    attempt: int = 0
    """0, then 1, 2, ... for each retry of a failed job of the same round and role"""


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
    part: int = 0
    """With job and turn, the item's natural key: 0, or 1 for a turn's second item (an
    explanation as the completion of the re-attempt prompt); set by the store."""


@dataclass
class EvaluationRecord:
    run_id: str
    round: int
    model_version_id: str
    skill: str
    level: int
    n: int
    correct: int
    metrics: dict[str, float] | None = None
    """An acting student's means on the arm: mean_tool_calls, invalid_action_rate, mean_steps,
    unanswered; None for a text student."""

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
class UsageRecord:
    """What one role's calls through one backend took, in one curriculum arm (`Store.usage`)."""

    agent: str
    arm: str | None
    """The arm of the calls' episodes; None for calls outside episodes (posing, refining)."""
    backend: str
    calls: int
    prompt_tokens: int
    completion_tokens: int
    cost: float | None
    """USD of the calls whose cost is known; None when none is."""
    cost_unknown: int
    """Calls without a cost (a model without a price; local models never have one)."""


@dataclass
class ChainHeadRecord:
    """The end of a run's hash chain (`pedagogy.memory.chain`)."""

    run_id: str
    last_hash: str
    length: int
    """Number of links; the next link's chain index."""
    keyed: bool = False
    """Whether the links are HMACs under PEDAGOGY_AUDIT_KEY (the key itself is never stored)."""
    full_from: int = 0
    """Links before this index are turns and tool calls written before migration 0006."""


@dataclass
class ChainLinkRecord:
    """A row of a chained table (turns, tool_calls, verdicts, explanations, decisions,
    dataset_items) seen as its link in its run's hash chain."""

    table: str
    id: str | int
    chain_index: int
    hash: str
    row: dict[str, Any]
    """The row's other columns as stored: what its hash covers."""


@dataclass
class CurriculumStateRecord:
    run_id: str
    round: int
    state: dict[str, Any]
    """Sampler state: arm values, probabilities, RNG state, ..."""


@dataclass
class TrajectoryStep:
    """One step of a stored trajectory: a model turn and what it led to."""

    turn: TurnRecord
    text: str
    """The step as a text action (`T:` lines, then one action line), as the next step's context
    shows it; for a native tool call, that call rendered in the text format."""
    action: str = "call"
    """call | answer | invalid"""
    prefix: str = ""
    """The part of `text` the agent was given rather than wrote (a first-thought prefix)."""
    tool_call: ToolCallRecord | None = None
    observation: str | None = None
    """What the agent was shown after this step (None after the answer)."""

    @property
    def thought(self) -> str:
        """The text before the action line."""
        return self.text.rpartition("\n")[0]


@dataclass
class Trajectory:
    """An acting agent's steps on one problem (`EpisodeRecord.trajectories()`).

    Renders itself as the plain text a text-only model sees (AGENT_SPEC), as training segments,
    and as OpenAI chat messages (assistant `tool_calls`, `tool` messages)."""

    kind: str
    """attempt | demonstration | reattempt"""
    agent: str
    """student | teacher"""
    prompt: str
    """The user message the agent started from (a re-attempt's holds the explanation first)."""
    steps: list[TrajectoryStep] = field(default_factory=list)

    @property
    def answer(self) -> str | None:
        last = self.steps[-1] if self.steps else None
        if last is None or last.action != "answer":
            return None
        return last.text.rpartition("\n")[2].strip()[2:].strip()

    @property
    def turn_ids(self) -> list[str]:
        return [s.turn.id for s in self.steps]

    def text(self) -> str:
        """`<prompt>\\n<step 1>\\nO:<obs 1>\\n...<last step>`, the plain-text rendering."""
        return "".join(t for t, _ in self.segments())

    def segments(self) -> list[tuple[str, bool]]:
        """(text, trainable) pieces of `text()`: the agent's own step texts are trainable; the
        prompt, observations, given prefixes and invalid steps are not. No EOS is appended.

        Newlines are trained where the model writes them (`backends.transformers.render_prompt`
        ends the prompt without one, so the first step starts with its newline; a step ends
        with one; an observation's context ends with one), as `training.trajectory` does."""
        out: list[tuple[str, bool]] = [(self.prompt, False)]
        for i, step in enumerate(self.steps):
            lead = "\n" if i == 0 else ""
            end = "" if i == len(self.steps) - 1 and step.observation is None else "\n"
            given = step.prefix if step.prefix and step.text.startswith(step.prefix) else ""
            if given:  # a given prefix is context: the newline before it too
                out.append((lead + given, False))
                lead = ""
            out.append((lead + step.text[len(given) :] + end, step.action != "invalid"))
            if step.observation is not None:
                out.append((f"O:{step.observation}\n", False))
        return out

    def messages(self) -> list[dict[str, Any]]:
        """OpenAI chat messages: user(prompt) -> assistant(thought, tool_calls) -> tool(obs) ->
        ... -> assistant("A:<answer>"); an invalid step's error comes back as a user message."""
        out: list[dict[str, Any]] = [{"role": "user", "content": self.prompt}]
        for step in self.steps:
            call = step.tool_call
            if step.action == "call" and call is not None:
                args = call.arguments
                raw = args.get("_raw") if set(args) == {"_raw"} else None
                out.append(
                    {
                        "role": "assistant",
                        "content": step.thought,
                        "tool_calls": [
                            {
                                "id": call.call_id,
                                "type": "function",
                                "function": {
                                    "name": call.tool,
                                    "arguments": raw
                                    if isinstance(raw, str)
                                    else json.dumps(args, ensure_ascii=False),
                                },
                            }
                        ],
                    }
                )
                out.append(
                    {"role": "tool", "tool_call_id": call.call_id, "content": call.observation}
                )
                continue
            out.append({"role": "assistant", "content": step.text})
            if step.observation is not None:
                out.append({"role": "user", "content": f"O:{step.observation}"})
        return out


def trajectories_of(turns: list[TurnRecord], tool_calls: list[ToolCallRecord]) -> list[Trajectory]:
    """Group acting turns (those whose `detail` names a trajectory) into trajectories, in order."""
    by_turn = {c.turn_id: c for c in tool_calls}
    out: dict[str, Trajectory] = {}
    for turn in sorted(turns, key=lambda t: t.seq):
        detail = turn.detail or {}
        kind = detail.get("trajectory")
        if not kind:
            continue
        if kind not in out:
            messages = (turn.request or {}).get("messages") or []
            prompt = next((m.get("content") or "" for m in messages if m.get("role") == "user"), "")
            out[kind] = Trajectory(kind, turn.agent, prompt)
        call = by_turn.get(turn.id)
        action = detail.get("action", "call")
        observation = call.observation if call is not None else detail.get("observation")
        out[kind].steps.append(
            TrajectoryStep(
                turn=turn,
                text=detail.get("text", turn.response),
                action=action,
                prefix=detail.get("ftp") or "",
                tool_call=call,
                observation=None if action == "answer" else observation,
            )
        )
    return list(out.values())
