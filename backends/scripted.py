"""Scripted backends: deterministic, offline, and recording every call.

`ScriptedBackend` answers each request with a function or a fixed list of responses. Built from a
domain (`ScriptedBackend.from_domain`) it writes the domain's worked solution for the request's
problem: that is the offline teacher of the embedded default. A solution that is the reference
answer alone (`A:<answer>`: reasoning-gym datasets without a worked solver) comes back labelled
``{"solution": "answer_only"}`` in `Completion.detail`, and so in the turn's `detail`; a problem
the domain has no solution for comes back as an error completion. Asked to refine a failed problem
(purpose "refine") it writes the domain's variants of it in the reply format an LLM is asked for.
Asked with `tools` about a problem it has a demonstration for (the domain's `demonstrate`, or one
passed in), it acts through the tools API: step k of the demonstration, where k is the number of
assistant messages so far, comes back as a tool call (content: the step's thought) or as the
final `A:<answer>`. The same class is the test fake that ships with the library
(`pedagogy.testing`): it records calls and can check every scripted step was used.

Its tokens are whitespace-separated words: a reply longer than the request's `max_tokens` is cut
there, with finish_reason "length" (else "stop", or "tool_calls"), as a model's would be.
"""

from __future__ import annotations

import random
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from pedagogy.backends.base import ChatRequest, Completion, last_user_content
from pedagogy.errors import BackendError

if TYPE_CHECKING:
    from pedagogy.domains.base import Domain, Problem
    from pedagogy.tools.base import ToolCall


@dataclass
class Reply:
    """A scripted answer that calls tools; a responder returns this or plain text."""

    text: str = ""
    """The assistant's content: a thought beside tool calls, or the answer."""
    tool_calls: list[ToolCall] = field(default_factory=list)
    detail: dict[str, Any] = field(default_factory=dict)
    """Passed on as `Completion.detail` (e.g. ``{"solution": "answer_only"}``)."""
    error: str | None = None
    """A failed call: the completion's error (its text is then empty)."""


Responder = Callable[[ChatRequest], "str | Reply"]
Demonstrator = Callable[["Problem"], list[dict[str, Any]]]
"""A problem -> its scripted solution as actions (see AGENT_SPEC: `Domain.demonstrate`)."""
_HOW_MANY = re.compile(r"\bWrite (\d+) new problems\b")


class ScriptedBackend:
    """Answers from a function or a list of canned responses, recording every request."""

    name = "scripted"
    follows_instructions = False
    """It answers from its script or the domain, not from the prompt: a teacher's explanation
    style is rendered from its reply (`Teacher.explain`), not asked of it."""
    text_actions = True
    """An acting agent gives it a first thought to continue, not instructions (`WritesTextActions`)."""

    def __init__(
        self,
        responses: Responder | Sequence[str | Reply] | None = None,
        *,
        model: str = "scripted",
    ):
        self.model = model
        self.calls: list[ChatRequest] = []
        self._script: list[str | Reply] | None = None
        self._responder: Responder
        if responses is None:
            self._responder = last_user_content
        elif callable(responses):
            self._responder = responses
        else:
            self._script = list(responses)
            self._responder = self._next_scripted

    @classmethod
    def from_domain(
        cls,
        domain: Domain,
        *,
        model: str | None = None,
        demonstrate: Demonstrator | None = None,
    ) -> ScriptedBackend:
        """A teacher that writes the domain's worked solution for each request's problem.

        Requests with `tools` follow a demonstration instead, step by step, when there is one:
        `demonstrate`, else the domain's own `demonstrate` method.
        """
        demonstrator = demonstrate or getattr(domain, "demonstrate", None)

        def solve(request: ChatRequest) -> str | Reply:
            if request.problem is None:
                raise BackendError(
                    "the scripted teacher needs ChatRequest.problem to be set; "
                    "pass the problem with the request or use another backend"
                )
            if request.purpose == "refine":
                return _variants_reply(domain, request)
            if request.tools and callable(demonstrator):
                return demonstration_step(demonstrator(request.problem), request)
            problem = request.problem
            solution = domain.solve(problem)
            if solution is None:
                # One problem without a solution fails its turn, not the run; a domain that
                # solves none of an arm's problems is refused before the run starts.
                return Reply(
                    error=f"domain {domain.name!r} has no solution for problem {problem.id} "
                    f"({problem.arm}); the scripted teacher only explains problems the domain's "
                    "solve() answers: use an LLM teacher for the others"
                )
            return Reply(solution, detail=solution_detail(problem, solution))

        return cls(solve, model=model or f"scripted:{domain.name}")

    def _next_scripted(self, request: ChatRequest) -> str | Reply:
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
            reply = self._responder(request)
            if isinstance(reply, str):
                reply = Reply(reply)
            prompt = sum(len((m.get("content") or "").split()) for m in request.messages)
            called = sum(len(f"{c.name} {c.arguments}".split()) for c in reply.tool_calls)
            text, cut = _cut(reply.text, request.max_tokens)
            finish = "tool_calls" if reply.tool_calls else "stop"
            out.append(
                Completion(
                    text="" if reply.error else text,
                    model=self.model,
                    prompt_tokens=prompt,
                    completion_tokens=len(text.split()) + called,
                    error=reply.error,
                    tool_calls=list(reply.tool_calls),
                    finish_reason="length" if cut else finish,
                    detail=dict(reply.detail),
                )
            )
        return out

    def assert_all_used(self) -> None:
        """Raise if a scripted list still has unused responses (for tests)."""
        if self._script:
            raise BackendError(f"{len(self._script)} scripted responses were never requested")


def _cut(text: str, max_tokens: int) -> tuple[str, bool]:
    """`text` up to its `max_tokens`-th word (whitespace kept between words), and whether it
    was cut."""
    words = list(re.finditer(r"\S+", text))
    if len(words) <= max_tokens:
        return text, False
    return text[: words[max_tokens - 1].end()] if max_tokens > 0 else "", True


def solution_detail(problem: Problem, solution: str) -> dict[str, str]:
    """``{"solution": "answer_only"}`` when `solution` is the problem's reference answer alone
    (``A:<answer>``, no steps), else ``{}``: what an explain turn's `detail` records."""
    text = solution.strip()
    if text.startswith("A:") and text[2:].strip() == problem.answer.strip():
        return {"solution": "answer_only"}
    return {}


def demonstration_step(demo: Sequence[dict[str, Any]], request: ChatRequest) -> Reply:
    """Step k of a demonstration (k = assistant messages so far) as a tool call or the answer.

    Steps are `{"thought"?, "tool", "arguments"}` or `{"thought"?, "answer"}`; the content is
    the thought as a `T:` line (beside the call) or `[T:<thought>\n]A:<answer>`.
    """
    from pedagogy.tools.base import ToolCall

    k = sum(1 for m in request.messages if m.get("role") == "assistant")
    if k >= len(demo):
        raise BackendError(
            f"the demonstration has {len(demo)} steps but the request is at step {k + 1}; "
            "end the episode at the demonstration's answer or raise max_steps accordingly"
        )
    step = demo[k]
    # Thoughts as `T:` lines, so the content reads as the text action format does.
    thought = str(step.get("thought") or "").strip()
    if thought and not thought.startswith("T:"):
        thought = f"T:{thought}"
    if "answer" in step:
        return Reply("\n".join(filter(None, [thought, f"A:{step['answer']}"])))
    if "tool" not in step:
        raise BackendError(
            f"demonstration step {k + 1} is {step!r}; give it a 'tool' (with 'arguments') or "
            "an 'answer'"
        )
    call = ToolCall(name=step["tool"], arguments=dict(step.get("arguments") or {}), id=f"call_{k}")
    return Reply(thought, [call])


def _variants_reply(domain: Domain, request: ChatRequest) -> str:
    """The domain's variants of the request's problem, as many as the prompt asks for, each as
    a problem line and 'A: <answer>' (seeded by the request, so a rerun writes the same)."""
    from pedagogy.domains.base import problem_variants, render_problems

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
