"""The Backend protocol: how a model is called.

A backend has one required async method, `generate`, over a *batch* of chat requests, so that
local backends can run them as one forward pass and remote ones can bound their concurrency.

What a backend can do beyond that is a named capability, a small protocol checked with
`isinstance` (never by the backend's name): `Scores` (log-probabilities of text, local models),
`ContinuesTexts` (raw-text continuation), `HasTokenizer` and `WritesTextActions` (a text model
that continues a prefix and sees no system message). `require` turns a missing one into a
one-line error that names the backend, what it lacks and what to use instead.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from copy import deepcopy
from dataclasses import dataclass, field, fields
from datetime import datetime
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from pedagogy.errors import ConfigError

if TYPE_CHECKING:
    from pedagogy.domains.base import Problem
    from pedagogy.tools.base import ToolCall


@dataclass
class ChatRequest:
    """One chat completion request."""

    messages: list[dict[str, Any]]
    """OpenAI-style messages: [{"role": "user", "content": "..."}]; an acting agent's also holds
    assistant messages with `tool_calls` and `tool` messages (`tool_call_id`, `content`)."""
    max_tokens: int = 128
    temperature: float = 0.0
    seed: int | None = None
    stop: list[str] | None = None
    problem: Problem | None = field(default=None, repr=False)
    """The problem this request is about; lets scripted backends answer it. Never sent to a model."""
    purpose: str = ""
    """What the caller wants (attempt, explain, pose, judge): for logs and scripted backends."""
    tools: list[dict[str, Any]] | None = None
    """OpenAI tools-API entries (`pedagogy.tools.base.tool_spec`) the model may call; None: none."""
    stop_lines: list[str] | None = None
    """Line prefixes that end the reply: it stops after its first complete line that starts,
    leading whitespace aside, with one of them, and keeps that line (an acting step ends after
    its action line: ["C:", "A:"]). Unlike `stop`, no stop string can say this (the line is kept,
    and where it ends is known only at its line break). The local backend stops decoding there;
    a backend that cannot (an OpenAI-compatible server takes plain `stop` strings only) ignores
    it, and the caller reads the reply only up to that line. None: no such stop."""

    def to_record(self) -> dict[str, Any]:
        """JSON-serialisable form stored in the turns table (no problem object, no secrets).

        `tools` and `stop_lines` are kept when set (they are part of what the model was asked)
        and left out when None, so the records (and run hashes) of requests without them stay
        as they were.
        """
        # Not `asdict(self)`: it would deep-copy the problem (and its metadata) only to drop it.
        d = {f.name: deepcopy(getattr(self, f.name)) for f in fields(self) if f.name != "problem"}
        for optional in ("tools", "stop_lines"):
            if d.get(optional) is None:
                d.pop(optional, None)
        if self.problem is not None:
            d["problem_id"] = self.problem.id
        return d


@dataclass
class CallAttempt:
    """One attempt of a model call that needed more than one (stored as a `call_attempts` row).

    A call answered at its first attempt has none: its turn says everything. Otherwise every
    attempt is kept, in order: the failed ones with their error, and the one that served (if any)
    with `error` None.
    """

    n: int
    """Attempt number of the call, 0-based."""
    endpoint: str
    """Which endpoint was tried: a model and api_base label, never a key."""
    status: int | None = None
    """HTTP status; None when no response came (timeout, refused connection)."""
    error: str | None = None
    """One line; None for the attempt that served."""
    latency_s: float = 0.0
    retry_after_s: float | None = None
    """What the server asked to wait before the next attempt (Retry-After), if it said."""
    started_at: datetime | None = None
    """When the attempt was sent (UTC)."""


@dataclass
class Completion:
    """One completion, with its accounting."""

    text: str
    model: str
    prompt_tokens: int = 0
    completion_tokens: int = 0
    latency_s: float = 0.0
    cost: float | None = None
    """USD, None when unknown (local models, unmapped API models)."""
    model_version: str | None = None
    """The pedagogy model-version id that produced it, for trained local models."""
    error: str | None = None
    """Set when the call failed; text is then empty."""
    tool_calls: list[ToolCall] = field(default_factory=list)
    """Tool calls the model asked for (tools API); `text` is then its thought, often empty."""
    finish_reason: str | None = None
    """Why generation stopped: "stop", "length", "tool_calls", ...; None when unknown."""
    detail: dict[str, Any] = field(default_factory=dict)
    """What the backend tells about the text beyond it, kept in the turn's `detail` (the scripted
    teacher: ``{"solution": "answer_only"}`` when it gave the bare reference answer)."""
    attempts: list[CallAttempt] = field(default_factory=list)
    """Every attempt when the call needed more than one (retries, fallbacks); [] otherwise."""


@runtime_checkable
class Backend(Protocol):
    """Anything that can complete a batch of chat requests."""

    name: str
    """Backend kind, e.g. 'transformers'."""
    model: str
    """Model identifier as the backend knows it."""
    # Optional: `follows_instructions = False` on a backend that writes a fixed text whatever its
    # prompt asks (the scripted teacher's worked solutions); a teacher's explanation style is then
    # rendered from that text (`Teacher.explain`) instead of asked for in the prompt.

    async def generate(self, requests: Sequence[ChatRequest]) -> list[Completion]:
        """One completion per request, in order. Failures come back as Completion.error."""
        ...


# -- optional capabilities ----------------------------------------------------------------------


@runtime_checkable
class Scores(Protocol):
    """Can give log-probabilities of a continuation (local models)."""

    def score(self, prompts: Sequence[str], continuations: Sequence[str]) -> list[float]:
        """Sum of log-probabilities of each continuation given its (already rendered) prompt."""
        ...


@runtime_checkable
class ContinuesTexts(Protocol):
    """Can continue raw text, not only a chat (local models): the middle of an answer, say."""

    def continue_texts(self, prompts: Sequence[str], max_tokens: int = 64) -> list[str]:
        """The model's greedy continuation of each (already rendered) text, one per prompt."""
        ...


@runtime_checkable
class HasTokenizer(Protocol):
    """Has the tokenizer its model reads with (a Hugging Face tokenizer; None: none loaded)."""

    @property
    def tokenizer(self) -> Any: ...


@runtime_checkable
class WritesTextActions(Protocol):
    """A text model: it reads the conversation rendered as plain text and writes on from it.

    An acting agent (`pedagogy.agents.acting.Actor`) gives it no instructions (a system message
    it would never see) and a first thought as a trailing assistant message that it continues;
    any other backend is asked for both in its prompt. Declared with `text_actions = True`.
    """

    text_actions: bool


@runtime_checkable
class HasCircuitBreaker(Protocol):
    """Skips a dead endpoint for a cool-down (`backends.litellm_breaker.CircuitBreaker`): the
    loop stores each change of state as a `circuit` decision (`take_events`)."""

    breaker: Any


@runtime_checkable
class ScoringBackend(Backend, Scores, Protocol):
    """A backend that can give log-probabilities of a continuation (local models)."""


_NEEDS: dict[type, str] = {
    Scores: "cannot score text (no score method)",
    ContinuesTexts: "cannot continue text (no continue_texts method)",
    HasTokenizer: "has no tokenizer",
    WritesTextActions: "is no text model (no text_actions = True)",
}


def backend_label(backend: object) -> str:
    """How errors name a backend: its `name`, else its type's name."""
    name = getattr(backend, "name", None)
    return name if isinstance(name, str) and name else type(backend).__name__


def lacks(backend: object, capability: type) -> str:
    """ "backend 'litellm' cannot score text (no score method)": what `backend` lacks."""
    what = _NEEDS.get(capability, f"is no {capability.__name__}")
    return f"backend {backend_label(backend)!r} {what}"


def require(backend: object, capability: type, fix: str) -> None:
    """Raise `ConfigError` (what the backend lacks; then `fix`) unless `backend` has
    `capability`, one of the protocols above."""
    if not isinstance(backend, capability):
        raise ConfigError(f"{lacks(backend, capability)}; {fix}")


def parse_tool_arguments(raw: Any) -> dict[str, Any]:
    """A tool call's arguments as a dict; text that is not a JSON object is kept as `{"_raw": text}`.

    Models do write malformed arguments; the call is kept (and later judged an invalid action)
    rather than failing the whole completion.
    """
    if raw is None or raw == "":
        return {}
    if isinstance(raw, dict):
        return dict(raw)
    text = raw if isinstance(raw, str) else str(raw)
    try:
        value = json.loads(text)
    except ValueError:
        return {"_raw": text}
    return value if isinstance(value, dict) else {"_raw": text}


def openai_tool_calls(tool_calls: Sequence[ToolCall]) -> list[dict[str, Any]]:
    """Tool calls in the OpenAI wire form, for the assistant message that issued them.

    Arguments kept as `{"_raw": text}` go back as that text, so the model sees what it wrote.
    """
    out = []
    for i, call in enumerate(tool_calls):
        args = call.arguments
        raw = args["_raw"] if _is_raw(args) else json.dumps(args, ensure_ascii=False)
        out.append(
            {
                "id": call.id or f"call_{i}",
                "type": "function",
                "function": {"name": call.name, "arguments": raw},
            }
        )
    return out


def _is_raw(arguments: dict[str, Any]) -> bool:
    return set(arguments) == {"_raw"} and isinstance(arguments["_raw"], str)


def last_user_content(request: ChatRequest) -> str:
    for m in reversed(request.messages):
        if m.get("role") == "user":
            return m.get("content", "")
    return (request.messages[-1].get("content") or "") if request.messages else ""
