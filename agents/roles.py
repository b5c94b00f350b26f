"""The four roles. Each wraps a backend and turns one model call into a result plus a TurnRecord.

Agents are stateless between episodes except the teacher's explanation budget, which the loop
resets per round and persists with the round.
"""

from __future__ import annotations

import random
import uuid
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from typing import Any, Protocol, runtime_checkable

from pedagogy.agents.refinement import refine_request
from pedagogy.backends.base import Backend, ChatRequest, Completion
from pedagogy.domains.base import Domain, Problem, Verdict
from pedagogy.errors import ConfigError
from pedagogy.memory.records import CallAttemptRecord, TurnRecord

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
    """The turn of one call: what was asked and answered, its accounting, why generation stopped
    (`detail["finish_reason"]`, when the backend says) and its attempts when it took several."""
    detail = dict(completion.detail)
    if completion.finish_reason is not None:
        detail.setdefault("finish_reason", completion.finish_reason)
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
        detail=detail,
        attempts=[
            CallAttemptRecord(
                n=a.n,
                endpoint=a.endpoint,
                status=a.status,
                error=a.error,
                latency_s=a.latency_s,
                retry_after_s=a.retry_after_s,
                created_at=None
                if a.started_at is None
                else datetime.fromtimestamp(a.started_at, timezone.utc),
            )
            for a in completion.attempts
        ],
    )


@runtime_checkable
class ChoosesStyle(Protocol):
    """An explanation style that picks a concrete style per problem (`AdaptiveStyle`)."""

    def choose(self, problem: Problem | None = None) -> Any: ...


def concrete_style(style: Any, problem: Problem) -> Any:
    """The style an explanation of `problem` is written in: an adaptive style's choice (its
    `choose(problem)`), else `style` itself (None stays None)."""
    return style.choose(problem) if isinstance(style, ChoosesStyle) else style


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
    def renders_styles(self) -> bool:
        """Whether a style is applied to this teacher's reply (`style.render`) rather than only
        asked of it: True for a backend that writes a fixed solution whatever its prompt says
        (its `follows_instructions` is False, as the scripted teacher's)."""
        return getattr(self.backend, "follows_instructions", True) is False

    @property
    def renders_offline(self) -> bool:
        """Deprecated alias of `renders_styles`, its former name; kept for one release."""
        warnings.warn(
            "Teacher.renders_offline is deprecated and will be removed in the next release; "
            "use Teacher.renders_styles",
            DeprecationWarning,
            stacklevel=2,
        )
        return self.renders_styles

    async def explain(
        self, problem: Problem, attempt: str, seq: int, style: Any = None
    ) -> TurnRecord:
        """Explain `attempt` in `style` (any `ExplanationStyle`; None: as the teacher writes).

        The text the student is shown is the turn's ``detail["shown"]``: the reply as written
        for a teacher that follows the style's instruction (an LLM: it is in the prompt), the
        reply rendered by the style (`style.render`) for one that does not (`renders_styles`).
        An adaptive style (one with `choose`) explains in the style it chooses for `problem`.
        """
        style = concrete_style(style, problem)
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
        turn = await ask("teacher", self.backend, request, seq)
        shown = turn.response
        if style is not None and self.renders_styles and not turn.error:
            shown = style.render(problem, turn.response, attempt)
        turn.detail["shown"] = shown
        return turn

    async def refine(
        self, problem: Problem, attempt: str, n: int, seed: int | None = None
    ) -> TurnRecord:
        """Write `n` new problems that target the mistake in `attempt` (the REFINE prompt of
        `pedagogy.agents.refinement`); the reply is checked there. Not charged to the budget."""
        request = refine_request(problem, attempt, n, max_tokens=self.max_tokens, seed=seed)
        return await ask("teacher", self.backend, request)


@dataclass
class Verifier:
    """The domain's checker; optionally an LLM judge on top of the parsed answer.

    The judge is asked `judge_samples` times (in one `generate` call, each sample with its own
    seed) and decides by majority: correct when more than half of the samples say yes (a sample
    that fails or says neither yes nor no counts against). The samples are one turn: its
    response is a sample that voted with the majority, its tokens and cost the samples' sum,
    and its ``detail["judge"]`` holds every vote and the agreement (the share of samples that
    voted for the verdict)."""

    domain: Domain
    judge: Backend | None = None
    max_tokens: int = 96
    """Of each judge call (the judge backend's `max_tokens`)."""
    temperature: float = 0.0
    """Of each judge call (the judge backend's `temperature`); more than one sample needs > 0."""
    judge_samples: int = 1
    """Judge calls per verdict, odd so that a majority always exists."""

    def __post_init__(self) -> None:
        if not isinstance(self.judge_samples, int) or self.judge_samples < 1:
            raise ConfigError(
                f"judge_samples must be an odd number >= 1, got {self.judge_samples!r}"
            )
        if self.judge_samples % 2 == 0:
            raise ConfigError(
                f"judge_samples {self.judge_samples} is even, so the votes can tie; use "
                f"{self.judge_samples - 1} or {self.judge_samples + 1}"
            )

    async def verify(
        self, problem: Problem, response: str, seq: int
    ) -> tuple[Verdict, TurnRecord | None]:
        if self.judge is None:
            return self.domain.verify(problem, response), None
        content = JUDGE_PROMPT.format(
            prompt=problem.prompt, answer=problem.answer, response=response
        )
        k = self.judge_samples
        requests = [
            ChatRequest(
                messages=[{"role": "user", "content": content}],
                max_tokens=self.max_tokens,
                temperature=self.temperature,
                seed=None if k == 1 else i,
                problem=problem,
                purpose="judge",
            )
            for i in range(k)
        ]
        completions = await self.judge.generate(requests)
        votes = [judge_vote(c) for c in completions]
        yes = votes.count("yes")
        correct = 2 * yes > k
        # The turn keeps a sample that voted with the majority: a replay of it decides the same.
        chosen = next((i for i, v in enumerate(votes) if (v == "yes") == correct), 0)
        completion = completions[chosen]
        agreement = (yes if correct else k - yes) / k
        turn = make_turn(
            "verifier", self.judge, requests[chosen], _combined(completions, chosen), seq
        )
        turn.detail["judge"] = {
            "samples": k,
            "votes": votes,
            "yes": yes,
            "agreement": round(agreement, 4),
            "chosen": chosen,
            **({"responses": [c.text for c in completions]} if k > 1 else {}),
        }
        if k == 1:
            detail = completion.error or ""
        else:
            detail = f"judge: {yes} of {k} say yes (agreement {agreement:.2f})"
        verdict = Verdict(
            correct=correct,
            score=1.0 if correct else 0.0,
            parsed_answer=self.domain.parse_answer(response),
            verifier="llm_judge",
            detail=detail,
        )
        return verdict, turn


def judge_vote(completion: Completion) -> str:
    """A judge sample's vote: "yes", "no", "invalid" (neither, or both) or "error" (failed)."""
    if completion.error is not None:
        return "error"
    words = [w.strip(".,:;!?'\"*`()") for w in completion.text.lower().split()]
    if words and words[0] in ("yes", "no"):
        return words[0]
    found = {w for w in words if w in ("yes", "no")}
    return found.pop() if len(found) == 1 else "invalid"


def _combined(completions: list[Completion], chosen: int) -> Completion:
    """Samples as one completion: the chosen one's text, the samples' tokens and cost summed."""
    c = completions[chosen]
    if len(completions) == 1:
        return c
    costs = [x.cost for x in completions]
    return Completion(
        text=c.text,
        model=c.model,
        prompt_tokens=sum(x.prompt_tokens for x in completions),
        completion_tokens=sum(x.completion_tokens for x in completions),
        latency_s=max(x.latency_s for x in completions),
        cost=None if any(x is None for x in costs) else sum(costs),
        model_version=c.model_version,
        error=c.error,
        finish_reason=c.finish_reason,
        detail=dict(c.detail),
        # renumbered: the attempts of every sample, in order, as the one turn's
        attempts=[
            replace(a, n=n) for n, a in enumerate(a for x in completions for a in x.attempts)
        ],
    )


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
