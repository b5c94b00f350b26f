"""Scripted backends: deterministic, offline, and recording every call.

`ScriptedBackend` answers each request with a function or a fixed list of responses. Built from a
domain (`ScriptedBackend.from_domain`) it writes the domain's worked solution for the request's
problem: that is the offline teacher of the embedded default. Asked to refine a failed problem
(purpose "refine") it writes the domain's variants of it in the reply format an LLM is asked for. The same class is the test fake that
ships with the library (`pedagogy.testing`): it records calls and can check every scripted step
was used.
"""

from __future__ import annotations

import random
import re
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

from pedagogy.backends.base import ChatRequest, Completion, last_user_content
from pedagogy.errors import BackendError

if TYPE_CHECKING:
    from pedagogy.domains.base import Domain

Responder = Callable[[ChatRequest], str]
_HOW_MANY = re.compile(r"\bWrite (\d+) new problems\b")


class ScriptedBackend:
    """Answers from a function or a list of canned responses, recording every request."""

    name = "scripted"

    def __init__(
        self,
        responses: Responder | Sequence[str] | None = None,
        *,
        model: str = "scripted",
    ):
        self.model = model
        self.calls: list[ChatRequest] = []
        self._script: list[str] | None = None
        self._responder: Responder
        if responses is None:
            self._responder = last_user_content
        elif callable(responses):
            self._responder = responses
        else:
            self._script = list(responses)
            self._responder = self._next_scripted

    @classmethod
    def from_domain(cls, domain: Domain, *, model: str | None = None) -> ScriptedBackend:
        """A teacher that writes the domain's worked solution for each request's problem."""

        def solve(request: ChatRequest) -> str:
            if request.problem is None:
                raise BackendError(
                    "the scripted teacher needs ChatRequest.problem to be set; "
                    "pass the problem with the request or use another backend"
                )
            if request.purpose == "refine":
                return _variants_reply(domain, request)
            solution = domain.solve(request.problem)
            if solution is None:
                raise BackendError(
                    f"domain {domain.name!r} cannot solve problems of skill "
                    f"{request.problem.skill!r}; the scripted teacher needs a domain with solve(), "
                    "or configure the teacher with an LLM backend"
                )
            return solution

        return cls(solve, model=model or f"scripted:{domain.name}")

    def _next_scripted(self, request: ChatRequest) -> str:
        if not self._script:
            raise BackendError(
                f"scripted backend ran out of responses after {len(self.calls) - 1} calls; "
                "script more responses"
            )
        return self._script.pop(0)

    async def generate(self, requests: Sequence[ChatRequest]) -> list[Completion]:
        out = []
        for request in requests:
            self.calls.append(request)
            text = self._responder(request)
            prompt = sum(len(m.get("content", "").split()) for m in request.messages)
            out.append(
                Completion(
                    text=text,
                    model=self.model,
                    prompt_tokens=prompt,
                    completion_tokens=len(text.split()),
                )
            )
        return out

    def assert_all_used(self) -> None:
        """Raise if a scripted list still has unused responses (for tests)."""
        if self._script:
            raise BackendError(f"{len(self._script)} scripted responses were never requested")


def _variants_reply(domain: Domain, request: ChatRequest) -> str:
    """The domain's variants of the request's problem, as many as the prompt asks for, each as
    a problem line and 'A: <answer>' (seeded by the request, so a rerun writes the same)."""
    from pedagogy.agents.refinement import render_problems
    from pedagogy.domains.base import problem_variants

    problem = request.problem
    if problem is None or not callable(getattr(domain, "variants", None)):
        raise BackendError(
            f"the scripted teacher writes refinements with the domain's variants(); domain "
            f"{domain.name!r} has none: use curriculum.refine_by: domain, or an LLM teacher"
        )
    match = _HOW_MANY.search(last_user_content(request))
    n = int(match.group(1)) if match else 2
    seed = request.seed if request.seed is not None else problem.id
    return render_problems(problem_variants(domain, problem, random.Random(seed), n))
