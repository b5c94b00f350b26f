"""The Backend protocol: how a model is called.

A backend has one required async method, `generate`, over a *batch* of chat requests, so that
local backends can run them as one forward pass and remote ones can bound their concurrency.
Backends that can score text (local models) also offer `score`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

if TYPE_CHECKING:
    from pedagogy.domains.base import Problem


@dataclass
class ChatRequest:
    """One chat completion request."""

    messages: list[dict[str, str]]
    """OpenAI-style messages: [{"role": "user", "content": "..."}]."""
    max_tokens: int = 128
    temperature: float = 0.0
    seed: int | None = None
    stop: list[str] | None = None
    problem: Problem | None = field(default=None, repr=False)
    """The problem this request is about; lets scripted backends answer it. Never sent to a model."""
    purpose: str = ""
    """What the caller wants (attempt, explain, pose, judge): for logs and scripted backends."""

    def to_record(self) -> dict[str, Any]:
        """JSON-serialisable form stored in the turns table (no problem object, no secrets)."""
        d = asdict(self)
        d.pop("problem", None)
        if self.problem is not None:
            d["problem_id"] = self.problem.id
        return d


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


@runtime_checkable
class Backend(Protocol):
    """Anything that can complete a batch of chat requests."""

    name: str
    """Backend kind, e.g. 'transformers'."""
    model: str
    """Model identifier as the backend knows it."""

    async def generate(self, requests: Sequence[ChatRequest]) -> list[Completion]:
        """One completion per request, in order. Failures come back as Completion.error."""
        ...


@runtime_checkable
class ScoringBackend(Backend, Protocol):
    """A backend that can give log-probabilities of a continuation (local models)."""

    def score(self, prompts: Sequence[str], continuations: Sequence[str]) -> list[float]:
        """Sum of log-probabilities of each continuation given its prompt."""
        ...


def last_user_content(request: ChatRequest) -> str:
    for m in reversed(request.messages):
        if m.get("role") == "user":
            return m.get("content", "")
    return request.messages[-1]["content"] if request.messages else ""
