"""Tables of what happened in episodes: episodes, turns, tool_calls, call_attempts, verdicts and
explanations (re-exported by `pedagogy.memory.schema`)."""

from __future__ import annotations

from sqlalchemy import (
    JSON,
    BigInteger,
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

from pedagogy.memory.schema_runs import ID, NAME, _link, _ts, metadata

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
        doc="The request as sent: messages, max_tokens, temperature, seed, stop, stop_lines (an "
        "acting step: the reply ends after its first line starting with one of them), purpose, "
        "tools and the problem id (never a key).",
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
