"""Refinements written by a model: a problem the student failed becomes new problems that target
the mistake, written by the teacher or by a co-evolving generator.

Both get the same REFINE prompt (the problem, the student's wrong answer, how many to write) and
reply with problems, each as a problem line followed by ``A: <answer>``. A candidate is posed only
if it checks: the domain reads the problem (`written_problem`: same skill and level as the
parent, reference answer computed by the domain), works it out (`solve`), and the answer the model
stated is the one the worked solution reaches. A model's arithmetic is never taken on its word.

Accepted teacher refinements are also training data for the generator: `training_pair` turns
one teacher reply's accepted problems back into (REFINE prompt, reply) as the generator should
have written it.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Sequence
from dataclasses import dataclass

from pedagogy.backends.base import ChatRequest
from pedagogy.domains.base import Domain, Problem, render_problems, written_problem

__all__ = [
    "REFINE_PROMPT",
    "Candidate",
    "check_candidate",
    "parse_reply",
    "read_candidates",
    "refine_request",
    "render_problems",
    "training_pair",
]

REFINE_PROMPT = (
    "A student got this problem wrong.\n"
    "Problem: {prompt}\n"
    "Student's answer: {attempt}\n"
    "Write {n} new problems that target this mistake, each as a problem line followed by "
    "'A: <answer>'."
)
ATTEMPT_CHARS = 40
"""The student's answer is cut to this many characters: a rambling wrong answer would otherwise
crowd a small generator's context (the tiny model's is 256 characters)."""

_ANSWER_LINE = re.compile(r"^\s*(?:A|Answer|ANSWER|Final answer)\s*:", re.IGNORECASE)
_LIST_MARK = re.compile(r"^\s*(?:\d+\s*[.)]|[-*•]|Problem\s*\d*\s*:)\s*", re.IGNORECASE)


def refine_request(
    problem: Problem,
    attempt: str,
    n: int,
    *,
    max_tokens: int,
    temperature: float = 0.0,
    seed: int | None = None,
) -> ChatRequest:
    """The REFINE call for one failed problem (purpose "refine"; the problem travels along so a
    scripted backend can answer it)."""
    return ChatRequest(
        messages=[{"role": "user", "content": refine_prompt(problem, attempt, n)}],
        max_tokens=max_tokens,
        temperature=temperature,
        seed=seed,
        problem=problem,
        purpose="refine",
    )


def refine_prompt(problem: Problem, attempt: str, n: int) -> str:
    shown = " ".join(attempt.split())[:ATTEMPT_CHARS] or "(none)"
    return REFINE_PROMPT.format(prompt=problem.prompt, attempt=shown, n=n)


def parse_reply(text: str) -> list[tuple[str, str]]:
    """(problem line, stated answer) pairs of a reply, in order.

    Each answer line closes the problem line just before it; list marks ("1.", "-",
    "Problem 2:") are dropped, a problem line without an answer line is no candidate.
    """
    out: list[tuple[str, str]] = []
    pending: str | None = None
    for line in (text or "").splitlines():
        if not line.strip():
            continue
        if _ANSWER_LINE.match(line):
            stated = line.split(":", 1)[1].strip()
            if pending is not None and stated:
                out.append((pending, stated))
            pending = None
        else:
            pending = _LIST_MARK.sub("", line).strip() or None
    return out


@dataclass(frozen=True)
class Candidate:
    """One problem a model wrote as a refinement of `parent`, and the domain's check of it."""

    author: str
    """teacher | generator"""
    parent: Problem
    text: str
    """The problem line as written."""
    stated: str
    """The answer as written."""
    accepted: bool
    reason: str
    """Why it was rejected; "" when accepted."""
    problem: Problem | None = None
    """The domain's reading (source ``<author>-refined``, ``parent_id`` the parent's id): what is
    posed when accepted; None when the domain could not read the text."""
    solved: str | None = None
    """The final answer of the domain's worked solution."""
    turn_id: str = ""
    """The turn whose reply it came from."""

    @property
    def id(self) -> str:
        """The problem's id when the domain read it, else the id of the text as written."""
        if self.problem is not None:
            return self.problem.id
        p = self.parent
        return Problem(p.domain, p.skill, p.level, self.text, self.stated).id


def check_candidate(
    domain: Domain, parent: Problem, text: str, stated: str, author: str
) -> Candidate:
    """Accept a written problem only if the domain reads it, solves it, and the worked solution
    ends in the answer the model stated."""

    def reject(reason: str, problem: Problem | None = None, solved: str | None = None) -> Candidate:
        return Candidate(author, parent, text, stated, False, reason, problem, solved)

    read = written_problem(domain, text, parent)
    if read is None:
        return reject(f"the domain cannot read it as a {parent.arm} problem")
    problem = dataclasses.replace(read, source=f"{author}-refined", parent_id=parent.id)
    if problem.prompt == parent.prompt:
        return reject("it is the failed problem itself", problem)
    solution = domain.solve(problem)
    if solution is None:
        return reject("the domain cannot solve it", problem)
    solved = domain.parse_answer(solution)
    if not domain.verify(problem, solution).correct:
        return reject("the domain's worked solution does not verify", problem, solved)
    if not domain.verify(problem, f"A: {stated}").correct:
        return reject(f"stated answer {stated!r} is wrong; worked out: {solved!r}", problem, solved)
    return Candidate(author, parent, text, stated, True, "", problem, solved)


def read_candidates(
    domain: Domain, parent: Problem, reply: str, author: str, n: int, turn_id: str = ""
) -> list[Candidate]:
    """The first `n` problems of a reply, each checked."""
    return [
        dataclasses.replace(check_candidate(domain, parent, text, stated, author), turn_id=turn_id)
        for text, stated in parse_reply(reply)[:n]
    ]


def training_pair(parent: Problem, attempt: str, accepted: Sequence[Problem]) -> tuple[str, str]:
    """(REFINE prompt, reply) that writes exactly the `accepted` problems: what a generator learns
    from one teacher reply (the rejected ones left out, the count in the prompt matching)."""
    return refine_prompt(parent, attempt, len(accepted)), render_problems(accepted)
