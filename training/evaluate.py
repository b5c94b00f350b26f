"""Held-out evaluation of the student: one batched generate over a fixed problem set per arm.

The held-out set is drawn once per run from its own seed, so every model version is measured on
the same problems and the learning curve compares like with like. Small levels cannot produce many
distinct problems (1-digit a±b has ~200), so a level gets at most what it can produce, and the
trainer should leave these prompts out of its data (`heldout_prompts`), or "held-out" means
memorised.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from pedagogy.backends.base import ChatRequest
from pedagogy.domains.base import Problem, parse_arm

if TYPE_CHECKING:
    from pedagogy.agents.acting import Actor
    from pedagogy.backends.base import Backend
    from pedagogy.domains.base import Domain

__all__ = [
    "build_heldout",
    "evaluate",
    "evaluate_agent",
    "AgentArmResult",
    "heldout_prompts",
    "accuracy",
    "DEFAULT_MAX_TOKENS",
]

DEFAULT_MAX_TOKENS = 128
"""Generation budget when the domain cannot write a worked solution to size it by."""

Arm = tuple[str, int]


def _arm_key(arm: Arm | str) -> Arm:
    if isinstance(arm, str):
        return parse_arm(arm)
    skill, level = arm
    return str(skill), int(level)


def build_heldout(
    domain: Domain,
    arms: Iterable[Arm | str],
    n_per_arm: int,
    seed: int,
    *,
    max_fraction: float = 0.25,
    max_tries: int = 8,
) -> dict[Arm, list[Problem]]:
    """`n_per_arm` distinct problems per (skill, level) arm, fewer where a level is small.

    A level that can produce only N distinct prompts (the domain's `level_capacity`, when it has
    one) gives at most `max_fraction * N`, so most of it stays available for training.
    Problems are deduplicated by prompt across *all* arms (an easy problem that also appears in a
    harder level's range counts once, for the first arm). `seed` must differ from the seeds
    used to draw training problems.
    """
    rng = random.Random(f"heldout:{seed}")
    seen: set[str] = set()
    out: dict[Arm, list[Problem]] = {}
    capacity = getattr(domain, "level_capacity", None)
    for arm in arms:
        key = _arm_key(arm)
        want = n_per_arm
        size = capacity(*key) if capacity is not None else None
        if size is not None:
            want = min(want, max(1, int(size * max_fraction)))
        picked: list[Problem] = []
        for _ in range(max_tries):
            need = want - len(picked)
            if need <= 0:
                break
            before = len(picked)
            for problem in domain.generate(rng, max(need, 16), key[0], key[1]):
                if problem.prompt not in seen and len(picked) < want:
                    seen.add(problem.prompt)
                    picked.append(problem)
            if len(picked) == before:
                break  # the level is exhausted
        out[key] = picked
    return out


def heldout_prompts(heldout: dict[Arm, list[Problem]]) -> set[str]:
    """Every held-out prompt, to keep them out of training data."""
    return {p.prompt for problems in heldout.values() for p in problems}


def _max_tokens(domain: Domain, problems: Sequence[Problem]) -> int:
    lengths = []
    solve = getattr(domain, "solve", None)
    for problem in problems:
        solution = solve(problem) if solve is not None else None
        if solution is None:
            return DEFAULT_MAX_TOKENS
        lengths.append(len(solution))
    # Characters bound tokens from above for every tokenizer; +8 leaves room for EOS and slips.
    return max(lengths, default=DEFAULT_MAX_TOKENS) + 8


async def evaluate(
    backend: Backend,
    domain: Domain,
    heldout: dict[Arm, list[Problem]],
    *,
    max_tokens: int | None = None,
) -> dict[Arm, tuple[int, int]]:
    """(correct, n) per arm, from one batched generate over every held-out problem.

    Greedy decoding; the student sees each problem's prompt as its only user message. A
    completion that came back with an error counts as wrong.
    """
    keys: list[Arm] = []
    problems: list[Problem] = []
    for arm, arm_problems in heldout.items():
        for problem in arm_problems:
            keys.append(_arm_key(arm))
            problems.append(problem)
    result: dict[Arm, tuple[int, int]] = {_arm_key(arm): (0, 0) for arm in heldout}
    if not problems:
        return result
    budget = max_tokens or _max_tokens(domain, problems)
    requests = [
        ChatRequest(
            messages=[{"role": "user", "content": p.prompt}],
            max_tokens=budget,
            temperature=0.0,
            problem=p,
            purpose="evaluate",
        )
        for p in problems
    ]
    completions = await backend.generate(requests)
    for key, problem, completion in zip(keys, problems, completions, strict=True):
        correct, n = result[key]
        ok = completion.error is None and domain.verify(problem, completion.text).correct
        result[key] = (correct + int(ok), n + 1)
    return result


def accuracy(results: dict[Arm, tuple[int, int]]) -> dict[Arm, float]:
    """Per-arm accuracy in [0, 1] (0.0 for an empty arm)."""
    return {arm: (c / n if n else 0.0) for arm, (c, n) in results.items()}


@dataclass
class AgentArmResult:
    """Held-out results of an acting student on one arm."""

    correct: int = 0
    n: int = 0
    tool_calls: int = 0
    """Tool calls over all its trajectories."""
    invalid: int = 0
    """Steps with no parsable action."""
    steps: int = 0
    unanswered: int = 0
    """Trajectories that reached max_steps (or failed) without an answer."""

    @property
    def accuracy(self) -> float:
        return self.correct / self.n if self.n else 0.0

    def metrics(self) -> dict[str, float]:
        """Per-trajectory means, as stored with the evaluation."""
        n = max(self.n, 1)
        return {
            "mean_tool_calls": self.tool_calls / n,
            "invalid_action_rate": self.invalid / max(self.steps, 1),
            "mean_steps": self.steps / n,
            "unanswered": self.unanswered / n,
        }


async def evaluate_agent(
    actor: Actor, domain: Domain, heldout: dict[Arm, list[Problem]]
) -> dict[Arm, AgentArmResult]:
    """Run the acting student over every held-out problem with real tool execution.

    Greedy, concurrent trajectories: each step is one `generate` call, so a batching backend
    (transformers) runs the steps of all problems together. The answer is the trajectory's final
    `A:` action, verified by the domain.
    """
    keys: list[Arm] = []
    problems: list[Problem] = []
    for arm, arm_problems in heldout.items():
        for problem in arm_problems:
            keys.append(_arm_key(arm))
            problems.append(problem)
    result: dict[Arm, AgentArmResult] = {_arm_key(arm): AgentArmResult() for arm in heldout}
    trajectories = await asyncio.gather(
        *(actor.run(p, kind="evaluate", seed=i) for i, p in enumerate(problems))
    )
    for key, problem, steps in zip(keys, problems, trajectories, strict=True):
        r = result[key]
        r.n += 1
        r.steps += len(steps)
        r.tool_calls += sum(s.action.kind == "call" for s in steps)
        r.invalid += sum(s.action.kind == "invalid" for s in steps)
        last = steps[-1] if steps else None
        if last is None or last.action.kind != "answer" or last.turn.error:
            r.unanswered += 1
            continue
        r.correct += int(domain.verify(problem, f"A:{last.action.answer}").correct)
    return result
