"""The four roles. Each wraps a backend and turns one model call into a result plus a TurnRecord.

Agents are stateless between episodes except the teacher's explanation budget, which the loop
resets per round and persists with the round.
"""

from __future__ import annotations

import random
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from pedagogy.agents.refinement import refine_request
from pedagogy.backends.base import Backend, ChatRequest, Completion
from pedagogy.domains.base import Domain, Problem, Verdict
from pedagogy.errors import ConfigError
from pedagogy.memory.records import TurnRecord

EXPLAIN_PROMPT = (
    "A student got this problem wrong.\n"
    "Problem: {prompt}\n"
    "Student's answer: {attempt}\n"
    "Write a short step-by-step worked solution the student can learn from. "
    "End with a final line of the form 'A: <answer>'."
)
MISTAKES_PROMPT = "This student's earlier wrong answers to similar problems:\n{mistakes}"
JUDGE_PROMPT = (
    "Problem: {prompt}\nReference answer: {answer}\nStudent response: {response}\n"
    "Is the student's final answer correct? Reply with exactly 'yes' or 'no'."
)
POSE_PROMPT = (
    "Write one new {skill} problem of difficulty level {level} (0 = easiest). "
    "Reply with the problem on the first line and 'A: <answer>' on the second."
)


def make_turn(
    agent: str, backend: Backend, request: ChatRequest, completion: Completion, seq: int
) -> TurnRecord:
    return TurnRecord(
        id=uuid.uuid4().hex,
        seq=seq,
        agent=agent,
        backend=backend.name,
        model=completion.model or backend.model,
        model_version=completion.model_version,
        request=request.to_record(),
        response=completion.text,
        prompt_tokens=completion.prompt_tokens,
        completion_tokens=completion.completion_tokens,
        latency_s=completion.latency_s,
        cost=completion.cost,
        seed=request.seed,
        error=completion.error,
        detail=dict(completion.detail),
    )


async def ask(agent: str, backend: Backend, request: ChatRequest, seq: int = 0) -> TurnRecord:
    """One call of `agent` through `backend`, as its turn."""
    (completion,) = await backend.generate([request])
    return make_turn(agent, backend, request, completion, seq)


@dataclass
class Student:
    """Attempts problems; the domain parses its answer."""

    backend: Backend
    max_tokens: int = 96
    temperature: float = 0.0

    def request(
        self, problem: Problem, explanation: str | None = None, seed: int | None = None
    ) -> ChatRequest:
        content = problem.prompt if explanation is None else f"{explanation}\n{problem.prompt}"
        return ChatRequest(
            messages=[{"role": "user", "content": content}],
            max_tokens=self.max_tokens,
            temperature=self.temperature,
            seed=seed,
            problem=problem,
            purpose="attempt" if explanation is None else "reattempt",
        )

    async def attempt(
        self, problem: Problem, seq: int, explanation: str | None = None, seed: int | None = None
    ) -> TurnRecord:
        return await ask("student", self.backend, self.request(problem, explanation, seed), seq)


@dataclass
class Teacher:
    """Explains wrong attempts with a worked solution, within a budget per round."""

    backend: Backend
    budget: int | None = None
    """Explanations per round; None = unlimited."""
    max_tokens: int = 256
    temperature: float = 0.0
    """Sent with every explain request (the scripted teacher ignores it)."""
    spent: int = 0
    style_for: Callable[[Problem], Any] | None = None
    """The explanation style (`pedagogy.agents.explanations`) for a problem; None: plain
    worked solutions. The loop sets it per round (adaptive styles follow the student)."""
    mistakes_for: Callable[[Problem], list[tuple[str, str]]] | None = None
    """The student's earlier (prompt, wrong answer) pairs to show with a problem (tailored
    learning); the loop sets it per round when `episodes.teacher_mistakes` > 0."""

    def remaining(self) -> int | None:
        return None if self.budget is None else self.budget - self.spent

    def reserve(self) -> bool:
        """Spend one explanation if the budget allows (decided before the call, so that
        concurrent episodes never overspend)."""
        if self.budget is not None and self.spent >= self.budget:
            return False
        self.spent += 1
        return True

    def new_round(self, spent: int = 0) -> None:
        self.spent = spent

    @property
    def renders_offline(self) -> bool:
        """The scripted teacher answers with the domain's worked solution, restyled here; an
        LLM teacher gets the style's instruction in its prompt instead."""
        return getattr(self.backend, "name", "") == "scripted"

    async def explain(
        self, problem: Problem, attempt: str, seq: int, style: Any = None
    ) -> TurnRecord:
        content = EXPLAIN_PROMPT.format(prompt=problem.prompt, attempt=attempt)
        mistakes = self.mistakes_for(problem) if self.mistakes_for is not None else []
        if mistakes:
            lines = "\n".join(f"- {p} -> {a}" for p, a in mistakes)
            content = f"{content}\n{MISTAKES_PROMPT.format(mistakes=lines)}"
        if style is not None:
            content = f"{content}\n{style.instruction()}"
        request = ChatRequest(
            messages=[{"role": "user", "content": content}],
            max_tokens=self.max_tokens,
            temperature=self.temperature,
            problem=problem,
            purpose="explain",
        )
        return await ask("teacher", self.backend, request, seq)

    async def refine(
        self, problem: Problem, attempt: str, n: int, seed: int | None = None
    ) -> TurnRecord:
        """Write `n` new problems that target the mistake in `attempt` (the REFINE prompt of
        `pedagogy.agents.refinement`); the reply is checked there. Not charged to the budget."""
        request = refine_request(problem, attempt, n, max_tokens=self.max_tokens, seed=seed)
        return await ask("teacher", self.backend, request)


@dataclass
class Verifier:
    """The domain's checker; optionally an LLM judge on top of the parsed answer."""

    domain: Domain
    judge: Backend | None = None

    async def verify(
        self, problem: Problem, response: str, seq: int
    ) -> tuple[Verdict, TurnRecord | None]:
        if self.judge is None:
            return self.domain.verify(problem, response), None
        request = ChatRequest(
            messages=[
                {
                    "role": "user",
                    "content": JUDGE_PROMPT.format(
                        prompt=problem.prompt, answer=problem.answer, response=response
                    ),
                }
            ],
            max_tokens=4,
            problem=problem,
            purpose="judge",
        )
        (completion,) = await self.judge.generate([request])
        turn = make_turn("verifier", self.judge, request, completion, seq)
        correct = completion.error is None and completion.text.strip().lower().startswith("yes")
        verdict = Verdict(
            correct=correct,
            score=1.0 if correct else 0.0,
            parsed_answer=self.domain.parse_answer(response),
            verifier="llm_judge",
            detail=completion.error or "",
        )
        return verdict, turn


@dataclass
class Generator:
    """Poses problems for an arm: the domain's procedural generator, or an LLM through a backend.
    An LLM generator can also write refinements of failed problems, like the teacher."""

    domain: Domain
    backend: Backend | None = None
    turns: list[TurnRecord] = field(default_factory=list)
    poses: bool = True
    """With a backend: whether the LLM poses the rounds' new problems (False: the domain does, and
    the LLM only writes refinements)."""
    max_tokens: int = 96
    """Of refine calls (its backend config's `max_tokens`)."""
    temperature: float = 0.0
    """Of refine calls (its backend config's `temperature`); pose calls sample at 1.0."""

    async def refine(
        self, problem: Problem, attempt: str, n: int, seed: int | None = None
    ) -> TurnRecord:
        """Write `n` new problems that target the mistake in `attempt`, with the teacher's REFINE
        prompt; the reply is checked by `pedagogy.agents.refinement`."""
        if self.backend is None:
            raise ConfigError(
                "a procedural generator cannot write refinements; use generator.kind: llm with a "
                "backend, or curriculum.refine_by: domain or teacher"
            )
        request = refine_request(
            problem,
            attempt,
            n,
            max_tokens=self.max_tokens,
            temperature=self.temperature,
            seed=seed,
        )
        return await ask("generator", self.backend, request)

    async def pose(self, rng: random.Random, n: int, skill: str, level: int) -> list[Problem]:
        if self.backend is None or not self.poses:
            return self.domain.generate(rng, n, skill, level)
        requests = [
            ChatRequest(
                messages=[
                    {"role": "user", "content": POSE_PROMPT.format(skill=skill, level=level)}
                ],
                max_tokens=256,
                temperature=1.0,
                seed=rng.randrange(2**31),
                purpose="pose",
            )
            for _ in range(n)
        ]
        completions = await self.backend.generate(requests)
        problems = []
        for request, completion in zip(requests, completions):
            self.turns.append(make_turn("generator", self.backend, request, completion, 0))
            lines = [ln for ln in completion.text.strip().splitlines() if ln.strip()]
            answer = self.domain.parse_answer(completion.text)
            if completion.error or len(lines) < 2 or answer is None:
                continue
            problems.append(
                Problem(
                    self.domain.name, skill, level, lines[0].strip(), answer, source="generator"
                )
            )
        if not problems:
            raise ConfigError(
                f"the LLM generator produced no usable {skill}@{level} problems; check its backend "
                "or use generator.kind: procedural"
            )
        return problems
