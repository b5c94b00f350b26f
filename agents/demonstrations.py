"""The scripted teacher that acts: demonstrations as real trajectories.

`DemonstrationBackend` replays a domain's `demonstrate(problem)` or, for arithmetic, one
calculator call per operation (or one for the whole expression), as text actions, so a
demonstration run through an `Actor` is a real trajectory with real tool executions.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from pedagogy.agents.actions import action_from_dict, render_action
from pedagogy.backends.base import ChatRequest, Completion
from pedagogy.domains.arithmetic import ExpressionError, evaluate, solve_steps
from pedagogy.domains.base import Domain, Problem
from pedagogy.errors import BackendError, ConfigError

__all__ = ["DEMOS", "DemonstrationBackend", "arithmetic_demonstration", "expression_of"]

DEMOS = ("per_step", "whole")
"""How an arithmetic demonstration calls the calculator: per operation, or once."""


def expression_of(problem: Problem) -> str | None:
    """The arithmetic expression of a reasoning-gym arithmetic problem (chain_sum, ...), or of
    a compact prompt such as `4-1-7=`; None for anything else."""
    entry = (problem.metadata or {}).get("entry")
    meta = entry.get("metadata") if isinstance(entry, dict) else None
    expression = meta.get("expression") if isinstance(meta, dict) else None
    candidates = [expression] if isinstance(expression, str) and expression.strip() else []
    candidates.append(problem.prompt)
    for text in candidates:
        try:
            evaluate(text)
        except ExpressionError:
            continue
        return text
    return None


def _calculator_text(expression: str) -> str:
    # The domain divides with floor division (reasoning-gym's convention); say so explicitly.
    return "".join(expression.split()).removesuffix("=").replace("/", "//")


def arithmetic_demonstration(expression: str, demo: str = "per_step") -> list[dict[str, Any]]:
    """Calculator calls for an expression, then the answer: one per binary operation
    (`per_step`, in evaluation order) or one for the whole expression (`whole`)."""
    if demo not in DEMOS:
        raise ConfigError(f"demo {demo!r}: choose per_step or whole")
    value, steps = evaluate(expression), solve_steps(expression)
    if not steps:
        return [{"answer": str(value)}]
    if demo == "whole":
        calls = [_calculator_text(expression)]
    else:
        calls = [_calculator_text(s.rpartition("=")[0]) for s in steps]
    return [{"tool": "calculator", "arguments": {"expression": c}} for c in calls] + [
        {"answer": str(value)}
    ]


class DemonstrationBackend:
    """A scripted teacher that acts: step k of a problem's demonstration as a text action, where
    k = the assistant messages so far. The demonstration is the domain's `demonstrate(problem)`
    when it has one, else for arithmetic problems `arithmetic_demonstration`."""

    name = "scripted"
    text_actions = True
    """Writes text actions (`WritesTextActions`)."""

    def __init__(
        self,
        domain: Domain | None = None,
        *,
        demo: str = "per_step",
        demonstrate: Callable[[Problem], list[dict[str, Any]]] | None = None,
        model: str | None = None,
    ):
        if demo not in DEMOS:
            raise ConfigError(f"demo {demo!r}: choose per_step or whole")
        self.domain = domain
        self.demo = demo
        self._demonstrate = demonstrate or getattr(domain, "demonstrate", None)
        self.model = model or f"scripted-demo:{getattr(domain, 'name', 'arithmetic')}:{demo}"
        self.calls: list[ChatRequest] = []

    def demonstration(self, problem: Problem) -> list[dict[str, Any]]:
        if callable(self._demonstrate):
            return list(self._demonstrate(problem))
        expression = expression_of(problem)
        if expression is None:
            raise BackendError(
                f"no demonstration for problem {problem.id} ({problem.skill}): the domain has no "
                "demonstrate() and the problem is no arithmetic expression; use explain: text or "
                "an LLM teacher"
            )
        return arithmetic_demonstration(expression, self.demo)

    async def generate(self, requests: Sequence[ChatRequest]) -> list[Completion]:
        out = []
        for request in requests:
            self.calls.append(request)
            if request.problem is None:
                raise BackendError(
                    "the demonstrating teacher needs ChatRequest.problem; pass the problem"
                )
            demo = self.demonstration(request.problem)
            k = sum(1 for m in request.messages if m.get("role") == "assistant")
            tools = {s["function"]["name"]: s for s in request.tools or []}
            if k >= len(demo):
                out.append(
                    Completion(
                        text="",
                        model=self.model,
                        error=f"the demonstration has only {len(demo)} steps",
                    )
                )
                continue
            text = render_action(action_from_dict(demo[k]), tools)
            prompt = sum(len((m.get("content") or "").split()) for m in request.messages)
            out.append(
                Completion(
                    text=text,
                    model=self.model,
                    prompt_tokens=prompt,
                    completion_tokens=len(text.split()),
                    finish_reason="stop",
                )
            )
        return out
