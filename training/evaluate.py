"""Held-out evaluation of the student: one batched generate over a fixed problem set per arm.

The held-out set is drawn once per run from its own seed, so every model version is measured on
the same problems and the learning curve compares like with like. Small levels cannot produce many
distinct problems (1-digit a±b has ~200), so a level holds out at most a quarter of what it can
produce and never all of it, and practice and the trainer leave these prompts out
(`heldout_prompts`), or "held-out" means memorised. Answers get the budget the caller gives: the
loop gives the student's practice budget (`evaluation.max_tokens` to differ), so an answer cut
off in practice is cut off here too.
"""

from __future__ import annotations

import asyncio
import math
import random
import warnings
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from pedagogy.backends.base import ChatRequest
from pedagogy.domains.base import Problem, level_problems, level_size, parse_arm

if TYPE_CHECKING:
    from pedagogy.agents.acting import Actor
    from pedagogy.backends.base import Backend
    from pedagogy.domains.base import Domain

__all__ = [
    "AgentProblemResult",
    "answer_budget",
    "build_heldout",
    "evaluate",
    "evaluate_agent",
    "evaluate_agent_problems",
    "evaluate_problems",
    "flatten",
    "tally",
    "tally_agent",
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

    A level with only N distinct prompts (`level_size`: the domain's `level_capacity`, or
    counted by drawing) gives at most `max_fraction * N`, so most of it stays to practise on;
    practice avoids held-out prompts (across all arms), so it never repeats them.
    A *small* level, with no more distinct problems than `n_per_arm`, is taken whole
    (`level_problems`) and split: at least 1 and at most N - 1 held out, never a problem
    another small level has too, and no other level holds out any of its problems. A level
    of one problem is held out nowhere (practised, not measured: it is left out of the
    result). Each small level is warned about in one line: its count and what was done.
    Problems are deduplicated by prompt across *all* arms (an easy problem that also appears in a
    harder level's range counts once, for the first arm). `seed` must differ from the seeds
    used to draw training problems.
    """
    keys = list(dict.fromkeys(_arm_key(arm) for arm in arms))
    at_least = math.ceil(n_per_arm / max_fraction)
    sizes = {key: level_size(domain, *key, at_least=at_least) for key in keys}
    small: dict[Arm, dict[str, Problem]] = {}
    for key, size in sizes.items():
        if size is not None and size <= n_per_arm:
            found = level_problems(domain, *key, at_least=n_per_arm + 1)
            if found is not None:
                small[key] = found
    # Small levels first, from their whole set: what they do not hold out, they practise, and
    # no level may hold that out.
    mine = {key: set(found) for key, found in small.items()}
    everyone = set().union(*mine.values())
    seen: set[str] = set()
    out: dict[Arm, list[Problem]] = {}
    notes: dict[Arm, str] = {}
    for key, found in small.items():
        others = set().union(*(m for k, m in mine.items() if k != key))
        free = sorted(set(found) - others)  # never another small level's practice
        share = min(_held_share(len(found), max_fraction), len(free))
        held = random.Random(f"heldout:{seed}:{key[0]}@{key[1]}").sample(free, share)
        seen.update(held)
        out[key] = [found[prompt] for prompt in sorted(held)]
        notes[key] = _small_level(key, len(found), share, n_per_arm)
    rng = random.Random(f"heldout:{seed}")
    for key in keys:
        if key in small:
            continue
        want = n_per_arm
        size = sizes[key]
        if size is not None:
            want = min(want, _held_share(size, max_fraction))
        picked: list[Problem] = []
        for _ in range(max_tries):
            need = want - len(picked)
            if need <= 0:
                break
            before = len(picked)
            for problem in domain.generate(rng, max(need, 16), key[0], key[1]):
                prompt = problem.prompt
                if prompt not in seen and prompt not in everyone and len(picked) < want:
                    seen.add(prompt)
                    picked.append(problem)
            if len(picked) == before:
                break  # the level is exhausted
        out[key] = picked
    for key in keys:
        if key in notes:
            warnings.warn(notes[key], stacklevel=2)
    return {key: out[key] for key in keys if out.get(key)}


def _held_share(size: int, max_fraction: float) -> int:
    """Held-out problems of a level with `size` distinct ones: never all of them."""
    if size < 2:
        return 0
    return min(max(1, int(size * max_fraction)), size - 1)


def _small_level(arm: Arm, size: int, held: int, n_per_arm: int) -> str:
    level = f"held-out set: level {arm[0]}@{arm[1]} has only {size} distinct problem" + (
        "s" if size != 1 else ""
    )
    level += f" (evaluation.heldout_per_arm is {n_per_arm})"
    if held == 0:
        return f"{level}, too few to hold any out: it is practised on and has no held-out accuracy"
    return (
        f"{level}: {held} held out, practice uses the other {size - held}, so the two never overlap"
    )


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


def flatten(heldout: dict[Arm, list[Problem]]) -> list[tuple[Arm, Problem]]:
    """The held-out problems in evaluation order, each with its arm: problem i of this list is
    evaluated with seed i wherever it runs (one process, or shared out to Ray actors)."""
    return [(_arm_key(arm), p) for arm, arm_problems in heldout.items() for p in arm_problems]


async def evaluate_problems(
    backend: Backend, domain: Domain, problems: Sequence[Problem], max_tokens: int
) -> list[bool]:
    """Whether each problem's greedy answer verifies, from one batched generate (a completion
    that came back with an error counts as wrong)."""
    if not problems:
        return []
    requests = [
        ChatRequest(
            messages=[{"role": "user", "content": p.prompt}],
            max_tokens=max_tokens,
            temperature=0.0,
            problem=p,
            purpose="evaluate",
        )
        for p in problems
    ]
    completions = await backend.generate(requests)
    return [
        completion.error is None and domain.verify(problem, completion.text).correct
        for problem, completion in zip(problems, completions, strict=True)
    ]


def answer_budget(domain: Domain, heldout: dict[Arm, list[Problem]], max_tokens: int | None) -> int:
    """`max_tokens`, or when None the longest worked solution's length (`evaluate`)."""
    return max_tokens or _max_tokens(domain, [p for _, p in flatten(heldout)])


def tally(
    heldout: dict[Arm, list[Problem]], keys: Sequence[Arm], ok: Sequence[bool]
) -> dict[Arm, tuple[int, int]]:
    """(correct, n) per arm from each flattened problem's result."""
    result: dict[Arm, tuple[int, int]] = {_arm_key(arm): (0, 0) for arm in heldout}
    for key, good in zip(keys, ok, strict=True):
        correct, n = result[key]
        result[key] = (correct + int(good), n + 1)
    return result


async def evaluate(
    backend: Backend,
    domain: Domain,
    heldout: dict[Arm, list[Problem]],
    *,
    max_tokens: int | None = None,
) -> dict[Arm, tuple[int, int]]:
    """(correct, n) per arm, from one batched generate over every held-out problem.

    Greedy decoding; the student sees each problem's prompt as its only user message. A
    completion that came back with an error counts as wrong. `max_tokens`: the answers'
    budget; None: sized to the longest worked solution (the loop passes the student's own).
    """
    flat = flatten(heldout)
    if not flat:
        return {_arm_key(arm): (0, 0) for arm in heldout}
    budget = answer_budget(domain, heldout, max_tokens)
    ok = await evaluate_problems(backend, domain, [p for _, p in flat], budget)
    return tally(heldout, [k for k, _ in flat], ok)


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


@dataclass
class AgentProblemResult:
    """An acting student's trajectory on one held-out problem, as `AgentArmResult` counts it."""

    steps: int
    tool_calls: int
    invalid: int
    answered: bool
    correct: bool


async def evaluate_agent_problems(
    actor: Actor, domain: Domain, problems: Sequence[Problem], seeds: Sequence[int]
) -> list[AgentProblemResult]:
    """Each problem's greedy trajectory (with real tools), run concurrently with its seed."""
    trajectories = await asyncio.gather(
        *(actor.run(p, kind="evaluate", seed=seed) for p, seed in zip(problems, seeds, strict=True))
    )
    out = []
    for problem, steps in zip(problems, trajectories, strict=True):
        last = steps[-1] if steps else None
        answered = last is not None and last.action.kind == "answer" and not last.turn.error
        out.append(
            AgentProblemResult(
                steps=len(steps),
                tool_calls=sum(s.action.kind == "call" for s in steps),
                invalid=sum(s.action.kind == "invalid" for s in steps),
                answered=answered,
                correct=answered
                and last is not None
                and domain.verify(problem, f"A:{last.action.answer}").correct,
            )
        )
    return out


def tally_agent(
    heldout: dict[Arm, list[Problem]], keys: Sequence[Arm], results: Sequence[AgentProblemResult]
) -> dict[Arm, AgentArmResult]:
    """Per-arm results from each flattened problem's trajectory."""
    out: dict[Arm, AgentArmResult] = {_arm_key(arm): AgentArmResult() for arm in heldout}
    for key, one in zip(keys, results, strict=True):
        r = out[key]
        r.n += 1
        r.steps += one.steps
        r.tool_calls += one.tool_calls
        r.invalid += one.invalid
        r.unanswered += int(not one.answered)
        r.correct += int(one.correct)
    return out


async def evaluate_agent(
    actor: Actor, domain: Domain, heldout: dict[Arm, list[Problem]]
) -> dict[Arm, AgentArmResult]:
    """Run the acting student over every held-out problem with real tool execution.

    Greedy, concurrent trajectories: each step is one `generate` call, so a batching backend
    (transformers) runs the steps of all problems together. The answer is the trajectory's final
    `A:` action, verified by the domain. Problem i of `flatten(heldout)` runs with seed i.
    """
    flat = flatten(heldout)
    results = await evaluate_agent_problems(
        actor, domain, [p for _, p in flat], list(range(len(flat)))
    )
    return tally_agent(heldout, [k for k, _ in flat], results)
