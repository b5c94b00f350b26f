"""reasoning-gym datasets as a Domain: 100+ procedural tasks with curricula and checkers.

Each reasoning-gym dataset is a skill. Its curriculum (attributes such as ``num_terms`` and
``num_digits``, each with a list of levels) defines our difficulty levels: level i is a dict of
attribute levels set on the curriculum, by default the curriculum's *global* level i. A batch of
problems is one dataset built from that configuration with a seed drawn from the caller's RNG, so
the same RNG state always yields the same problems.

Verification uses the dataset's own ``score_answer`` on the entry (question, answer, metadata) that
travels inside ``Problem.metadata``, so a problem read back from the database verifies exactly like
a fresh one. A few datasets' entries do not survive JSON (tuples that the scorer compares, sets);
those are marked ``rebuild`` and re-generated from their seed and index when verified.

Solutions (what the offline scripted teacher says): step-by-step worked solutions for the integer
arithmetic datasets (chain_sum, basic_arithmetic, products); for every other dataset, and for a
problem the step solver cannot do (decimal_chain_sum), the dataset's own reference answer alone,
``A:<answer>`` (``answer_only_solutions``; the scripted teacher labels such turns answer-only).
A few datasets have no reference answer, their scorer checking any valid one (graph_color,
propositional_logic, boxnet, rubiks_cube, rush_hour): ``solve`` gives None and a scripted teacher
refuses them at startup.

reasoning-gym is imported on first use: it registers 100+ datasets at import (~1.5 s).
"""

from __future__ import annotations

import dataclasses
import json
import math
import random
import re
from collections import OrderedDict
from functools import lru_cache
from typing import Any

from pedagogy.domains.arithmetic import (
    ExpressionError,
    compact_expression,
    evaluate,
    solve_steps,
    worked_solution,
)
from pedagogy.domains.base import Problem, Verdict, extract_final_answer
from pedagogy.errors import ConfigError, UnknownNameError

__all__ = [
    "ARITHMETIC_SKILLS",
    "MEASURED_CHAIN_SUM_LEVELS",
    "ReasoningGymDomain",
    "known_datasets",
]

ARITHMETIC_SKILLS = frozenset({"chain_sum", "basic_arithmetic", "products", "decimal_chain_sum"})
"""Datasets whose ``metadata['expression']`` *is* the problem: compact prompts and worked solutions.

Not every dataset with an ``expression`` qualifies: in countdown it is the solution.
"""

MEASURED_CHAIN_SUM_LEVELS: list[dict[str, int]] = [
    {"num_terms": 0, "num_digits": 0},  # a±b, 1 digit
    {"num_terms": 0, "num_digits": 1},  # a±b, 2 digits
    {"num_terms": 0, "num_digits": 2},  # a±b, 3 digits
    {"num_terms": 1, "num_digits": 1},  # a±b±c, 2 digits
    {"num_terms": 1, "num_digits": 2},  # a±b±c, 3 digits
]
"""The five levels of MEASURED.md; exact with ``range_mode="upper_bound"`` (no easier mix-in)."""

DEFAULT_MAX_LEVELS = 5
_ANSWER_TAG = re.compile(r"<answer>(.*?)</answer>", re.DOTALL)
_ANSWER_MARKER = re.compile(r"(?:^|\n)\s*(?:A|Answer|ANSWER|Final answer)\s*:", re.MULTILINE)
_RANGE_MODES = ("inclusive", "upper_bound", "last_k")
_NUMBER = re.compile(r"\d+")


def _same_width(digits: str, rng: random.Random) -> str:
    """A random number with as many digits as `digits` (one digit: 0-9)."""
    width = len(digits)
    return str(rng.randrange(10 ** (width - 1) if width > 1 else 0, 10**width))


@lru_cache(maxsize=1)
def _registry() -> dict[str, tuple[type, type]]:
    import reasoning_gym  # noqa: F401  (registers every dataset)
    from reasoning_gym.factory import DATASETS

    return DATASETS


def known_datasets() -> list[str]:
    """Every reasoning-gym dataset name this installation registers."""
    return sorted(_registry())


def _to_json(value: Any) -> Any:
    """A JSON-safe copy (tuples and sets become lists; anything else its repr)."""

    def default(obj: Any) -> Any:
        if isinstance(obj, (set, frozenset)):
            return sorted(obj, key=repr)
        return repr(obj)

    return json.loads(json.dumps(value, default=default))


class ReasoningGymDomain:
    """reasoning-gym datasets as skills, their curricula as levels, their scorers as verifiers."""

    def __init__(
        self,
        skills: list[str] | tuple[str, ...] | str = ("chain_sum",),
        levels: dict[str, list[dict[str, int]]] | None = None,
        *,
        compact: bool = False,
        answer_only_solutions: bool = True,
        name: str = "reasoning_gym",
        range_mode: str = "inclusive",
        max_levels: int = DEFAULT_MAX_LEVELS,
        config: dict[str, dict[str, Any]] | None = None,
    ):
        """
        Args:
            skills: reasoning-gym dataset names, e.g. ``["chain_sum", "basic_arithmetic"]``.
            levels: per skill, our levels as curriculum attribute levels, easiest first, e.g.
                ``{"chain_sum": [{"num_terms": 0, "num_digits": 0}, ...]}``; default: the
                curriculum's global levels 0..N-1, N = longest attribute, at most ``max_levels``.
            compact: show arithmetic problems as ``4-1-7=`` (the tiny student's format) instead
                of reasoning-gym's English question.
            answer_only_solutions: ``solve`` answers ``A:<answer>`` (the dataset's reference
                answer, checked by its scorer) where there is no worked solution, so a scripted
                teacher can teach every dataset offline; False: None there (a scripted teacher
                then refuses those skills at startup).
            range_mode: how a range attribute's level becomes a range: ``inclusive`` (levels
                0..i, reasoning-gym's default), ``upper_bound`` (exactly level i) or ``last_k``.
            config: per skill, extra dataset config fields, e.g.
                ``{"chain_sum": {"allow_negation": True}}``.
        """
        if isinstance(skills, str):
            skills = [skills]
        if not skills:
            raise ConfigError("ReasoningGymDomain needs at least one skill, e.g. ['chain_sum']")
        known = _registry()
        for skill in skills:
            if skill not in known:
                raise UnknownNameError("reasoning-gym dataset", skill, list(known))
        if range_mode not in _RANGE_MODES:
            raise UnknownNameError("range_mode", range_mode, list(_RANGE_MODES))
        if max_levels < 1:
            raise ConfigError(f"max_levels must be >= 1, got {max_levels}")
        for table, what in ((levels or {}, "levels"), (config or {}, "config")):
            for skill in table:
                if skill not in skills:
                    raise ConfigError(
                        f"{what} given for {skill!r}, which is not among skills {list(skills)}; "
                        f"add it to skills or remove it from {what}"
                    )
        self.name = name
        self.compact = compact
        self.answer_only_solutions = answer_only_solutions
        self.range_mode = range_mode
        self._skills = list(dict.fromkeys(skills))
        self._extra = {s: dict((config or {}).get(s, {})) for s in self._skills}
        self._level_specs = {
            s: self._check_spec(s, (levels or {}).get(s), max_levels) for s in self._skills
        }
        self._configs: dict[tuple[str, int], Any] = {}
        self._scorers: dict[tuple[str, int], Any] = {}
        self._rebuilt: OrderedDict[tuple[str, int, int, int], Any] = OrderedDict()
        self._capacity: dict[tuple[str, int], int | None] = {}

    # -- skills and levels -------------------------------------------------------------------

    def skills(self) -> list[str]:
        return list(self._skills)

    def levels(self, skill: str) -> list[int]:
        return list(range(len(self._level_specs[self._check_skill(skill)])))

    def level_spec(self, skill: str) -> list[dict[str, int]]:
        """Our levels of a skill as curriculum attribute levels (empty dicts: no curriculum)."""
        return [dict(spec) for spec in self._level_specs[self._check_skill(skill)]]

    def _check_skill(self, skill: str) -> str:
        if skill not in self._level_specs:
            raise UnknownNameError(f"skill of domain {self.name!r}", skill, self._skills)
        return skill

    def _check_level(self, skill: str, level: int) -> int:
        count = len(self._level_specs[self._check_skill(skill)])
        if not isinstance(level, int) or not 0 <= level < count:
            raise ConfigError(
                f"level {level!r} is out of range for {skill!r}: choose 0..{count - 1}"
            )
        return level

    @staticmethod
    def _check_spec(
        skill: str, spec: list[dict[str, int]] | None, max_levels: int
    ) -> list[dict[str, int]]:
        from reasoning_gym.factory import create_curriculum, has_curriculum

        if not has_curriculum(skill):
            if spec and any(spec):
                raise ConfigError(
                    f"reasoning-gym dataset {skill!r} has no curriculum, so levels cannot set "
                    f"attributes; drop levels for {skill!r} (it gets one level, 0)"
                )
            return [{}]
        attributes = create_curriculum(skill).attributes
        if spec is None:
            count = min(max((len(a.levels) for a in attributes.values()), default=1), max_levels)
            return [
                {n: min(i, len(a.levels) - 1) for n, a in attributes.items()} for i in range(count)
            ]
        if not spec:
            raise ConfigError(f"levels for {skill!r} is empty: give at least one dict or omit it")
        for i, level in enumerate(spec):
            for attr, value in level.items():
                if attr not in attributes:
                    raise UnknownNameError(
                        f"curriculum attribute of {skill!r}", attr, list(attributes)
                    )
                top = len(attributes[attr].levels) - 1
                if not isinstance(value, int) or not 0 <= value <= top:
                    raise ConfigError(
                        f"levels[{skill!r}][{i}][{attr!r}] = {value!r} is out of range: "
                        f"choose 0..{top} (values {attributes[attr].levels})"
                    )
        return [dict(level) for level in spec]

    def _config(self, skill: str, level: int) -> Any:
        """The dataset config for one level (seed and size filled in per batch)."""
        key = (skill, level)
        if key not in self._configs:
            from reasoning_gym.coaching.base_curriculum import (
                DefaultCurriculumContext,
                RangeAttributeMode,
            )
            from reasoning_gym.factory import create_curriculum, has_curriculum

            _, config_cls = _registry()[skill]
            extra = self._extra[skill]
            if has_curriculum(skill):
                curriculum = create_curriculum(skill)
                for attr, value in self._level_specs[skill][level].items():
                    curriculum.set_attr_level(attr, value)
                context = DefaultCurriculumContext(mode=RangeAttributeMode(self.range_mode))
                config = curriculum.generate_configuration(defaults=extra, context=context)
            else:
                config = config_cls(**extra)
            self._configs[key] = config
        return self._configs[key]

    def _dataset(self, skill: str, level: int, seed: int, size: int) -> Any:
        dataset_cls, _ = _registry()[skill]
        config = dataclasses.replace(self._config(skill, level), seed=seed, size=size)
        try:
            return dataset_cls(config=config)
        except (AssertionError, ValueError) as exc:
            raise ConfigError(
                f"reasoning-gym rejected the config of {skill!r} level {level} "
                f"({self._level_specs[skill][level]}, extra {self._extra[skill]}): {exc}; "
                f"adjust levels or config for {skill!r}"
            ) from exc

    def _scorer(self, skill: str, level: int) -> Any:
        """One dataset object per (skill, level) whose ``score_answer`` checks answers."""
        key = (skill, level)
        if key not in self._scorers:
            self._scorers[key] = self._dataset(skill, level, seed=0, size=1)
        return self._scorers[key]

    # -- generate ------------------------------------------------------------------------------

    def generate(self, rng: random.Random, n: int, skill: str, level: int) -> list[Problem]:
        self._check_level(skill, level)
        if n < 1:
            return []
        seed = rng.randrange(2**31)
        dataset = self._dataset(skill, level, seed=seed, size=n)
        return [self._problem(skill, level, seed, n, i, dataset[i]) for i in range(n)]

    def _problem(
        self, skill: str, level: int, seed: int, size: int, index: int, entry: dict[str, Any]
    ) -> Problem:
        plain = _to_json(
            {
                "question": entry["question"],
                "answer": entry["answer"],
                "metadata": entry["metadata"],
            }
        )
        original = {k: entry[k] for k in ("question", "answer", "metadata")}
        expression = self._expression(skill, plain)
        prompt = (
            compact_expression(expression) if self.compact and expression else entry["question"]
        )
        answer = entry["answer"]
        return Problem(
            domain=self.name,
            skill=skill,
            level=level,
            prompt=prompt,
            answer="" if answer is None else str(answer),
            metadata={
                "entry": plain,
                "seed": seed,
                "size": size,
                "index": index,
                "rebuild": self._needs_rebuild(skill, level, plain, original),
            },
        )

    def _needs_rebuild(
        self, skill: str, level: int, plain: dict[str, Any], original: dict[str, Any]
    ) -> bool:
        """True when the JSON copy of an entry scores differently (scorers comparing tuples)."""
        if plain == original:
            return False
        answer = original["answer"] if isinstance(original["answer"], str) else plain["answer"]
        scorer = self._scorer(skill, level)
        try:
            return scorer.score_answer(answer, plain) != scorer.score_answer(answer, original)
        except Exception:
            return True

    @staticmethod
    def _expression(skill: str, entry: dict[str, Any]) -> str | None:
        if skill not in ARITHMETIC_SKILLS:
            return None
        expression = (entry.get("metadata") or {}).get("expression")
        return expression if isinstance(expression, str) and expression.strip() else None

    # -- verify --------------------------------------------------------------------------------

    def parse_answer(self, response: str) -> str | None:
        """``<answer>…</answer>`` if present (reasoning-gym's convention), else the ``A:`` line."""
        if not response:
            return None
        tags = _ANSWER_TAG.findall(response)
        if tags:
            return tags[-1].strip() or None
        return extract_final_answer(response)

    def _parse_for(self, problem: Problem, response: str) -> str | None:
        parsed = self.parse_answer(response)
        if parsed is not None and "\n" in problem.answer and not _ANSWER_TAG.search(response):
            # Grids and boards span lines: take everything after the last answer marker.
            markers = list(_ANSWER_MARKER.finditer(response))
            if markers:
                parsed = response[markers[-1].end() :].strip() or None
        return parsed

    def _entry(self, problem: Problem) -> dict[str, Any]:
        meta = problem.metadata or {}
        entry = meta.get("entry")
        if not isinstance(entry, dict):
            # Not made by this domain (e.g. a generator agent's problem): score the bare pair.
            return {"question": problem.prompt, "answer": problem.answer, "metadata": {}}
        if meta.get("rebuild") and all(
            isinstance(meta.get(k), int) for k in ("seed", "size", "index")
        ):
            return self._rebuild(
                problem.skill, problem.level, meta["seed"], meta["size"], meta["index"]
            )
        return entry

    def _rebuild(self, skill: str, level: int, seed: int, size: int, index: int) -> Any:
        key = (skill, level, seed, index)
        if key not in self._rebuilt:
            self._rebuilt[key] = self._dataset(skill, level, seed=seed, size=size)[index]
            if len(self._rebuilt) > 4096:
                self._rebuilt.popitem(last=False)
        return self._rebuilt[key]

    def score(self, problem: Problem, answer: str | None) -> tuple[float, str]:
        """The dataset's score for a parsed answer, and a note if scoring failed."""
        if answer is None:
            return 0.0, "no answer found in the response"
        skill, level = self._check_skill(problem.skill), problem.level
        try:
            self._check_level(skill, level)
            value = self._scorer(skill, level).score_answer(answer, self._entry(problem))
            return float(value or 0.0), ""
        except Exception as exc:  # a scorer choking on garbage is a wrong answer, not a crash
            return 0.0, f"score_answer raised {type(exc).__name__}: {exc}"[:300]

    def verify(self, problem: Problem, response: str) -> Verdict:
        parsed = self._parse_for(problem, response or "")
        score, note = self.score(problem, parsed)
        score = min(max(score, 0.0), 1.0)
        correct = score >= 1.0 - 1e-9
        return Verdict(
            correct=correct,
            score=score,
            parsed_answer=parsed,
            verifier=f"reasoning_gym:{problem.skill}",
            detail=note or f"score {score:.3f}",
        )

    # -- solve ---------------------------------------------------------------------------------

    def solve(self, problem: Problem) -> str | None:
        """Worked steps for arithmetic; elsewhere (``answer_only_solutions``) the reference
        answer alone, ``A:<answer>``; each one checked by the dataset's scorer, None otherwise."""
        entry = (problem.metadata or {}).get("entry")
        expression = self._expression(problem.skill, entry) if isinstance(entry, dict) else None
        if expression is not None:
            try:
                solution = worked_solution(expression)
            except ExpressionError:
                solution = None  # decimals and the like: no step solver
            if solution is not None and self._scores_full(problem, solution):
                return solution
        if self.answer_only_solutions and problem.answer:
            solution = f"A:{problem.answer}"
            if self._scores_full(problem, solution):
                return solution
        return None

    # -- refine --------------------------------------------------------------------------------

    def variants(self, problem: Problem, rng: random.Random, n: int) -> list[Problem]:
        """Up to n problems with the same operators and digit counts as an arithmetic problem
        and other numbers (the answer recomputed and checked by the dataset's own scorer);
        [] for other datasets, whose entries cannot be varied without their generator, and for
        expressions with a division (new numbers would rarely divide exactly)."""
        entry = (problem.metadata or {}).get("entry")
        expression = self._expression(problem.skill, entry) if isinstance(entry, dict) else None
        if expression is None or "/" in expression or n < 1:
            return []
        out: list[Problem] = []
        seen = {problem.prompt}
        for _ in range(8 * n):
            if len(out) >= n:
                break
            varied = _NUMBER.sub(lambda m: _same_width(m.group(0), rng), expression)
            try:
                value = evaluate(varied)
            except ExpressionError:
                continue
            question = entry["question"].replace(expression, varied, 1)
            if question == entry["question"] and varied != expression:
                continue  # the expression does not appear verbatim in the question
            new_entry = {
                **entry,
                "question": question,
                "answer": str(value),
                "metadata": {**(entry.get("metadata") or {}), "expression": varied},
            }
            prompt = compact_expression(varied) if self.compact else question
            if prompt in seen:
                continue
            seen.add(prompt)
            variant = Problem(
                domain=self.name,
                skill=problem.skill,
                level=problem.level,
                prompt=prompt,
                answer=str(value),
                metadata={"entry": new_entry, "rebuild": False},
                source="teacher-refined",
                parent_id=problem.id,
            )
            if self._scores_full(variant, f"A:{value}"):
                out.append(variant)
        return out

    def parameters(self, problem: Problem) -> dict[str, Any] | None:
        """The dataset's difficulty attributes as this problem drew them, e.g. chain_sum's
        ``{"num_digits": 1, "num_terms": 3}``; None for a problem without them."""
        meta = ((problem.metadata or {}).get("entry") or {}).get("metadata") or {}
        ranges = meta.get("difficulty")
        if not isinstance(ranges, dict) or not ranges:
            return None
        values = {k: meta[k] for k in sorted(ranges) if isinstance(meta.get(k), (int, float, str))}
        return values or None

    def parse_problem(self, text: str, like: Problem) -> Problem | None:
        """An arithmetic problem a model wrote (``5+2=`` or, without `compact`, the question with
        another expression), as a problem of `like`'s skill and level with the answer computed
        here and checked by the dataset's scorer. None when `like` is not arithmetic, the text
        is no expression of at least one operation, or it is outside the level's ranges
        (``num_terms`` / ``num_digits`` of the entry's ``difficulty``; without them: no more
        numbers than `like` and none wider)."""
        entry = (like.metadata or {}).get("entry")
        expression = self._expression(like.skill, entry) if isinstance(entry, dict) else None
        if expression is None:
            return None
        written = " ".join(text.split())
        if self.compact:
            varied = written.removesuffix("=").strip()
        else:
            prefix, _, suffix = entry["question"].partition(expression)
            prefix, suffix = " ".join(prefix.split()), " ".join(suffix.split())
            if not (written.startswith(prefix) and written.endswith(suffix)):
                return None
            varied = written[len(prefix) : len(written) - len(suffix)].strip()
        try:
            steps = solve_steps(varied)
            value = evaluate(varied)
        except ExpressionError:
            return None
        if not steps or not self._within_level(varied, expression, entry):
            return None
        question = entry["question"].replace(expression, varied, 1)
        new_entry = {
            **entry,
            "question": question,
            "answer": str(value),
            "metadata": {**(entry.get("metadata") or {}), "expression": varied},
        }
        problem = Problem(
            domain=self.name,
            skill=like.skill,
            level=like.level,
            prompt=compact_expression(varied) if self.compact else question,
            answer=str(value),
            metadata={"entry": new_entry, "rebuild": False},
        )
        return problem if self._scores_full(problem, f"A:{value}") else None

    @staticmethod
    def _within_level(varied: str, expression: str, entry: dict[str, Any]) -> bool:
        numbers, theirs = _NUMBER.findall(varied), _NUMBER.findall(expression)
        ranges = ((entry.get("metadata") or {}).get("difficulty")) or {}
        terms, digits = ranges.get("num_terms"), ranges.get("num_digits")
        if isinstance(terms, list) and len(terms) == 2:
            if not terms[0] <= len(numbers) <= terms[1]:
                return False
        elif len(numbers) > len(theirs):
            return False
        widest = (
            digits[1] if isinstance(digits, list) and len(digits) == 2 else max(map(len, theirs))
        )
        return all(len(n.lstrip("0") or "0") <= widest for n in numbers)

    def _scores_full(self, problem: Problem, response: str) -> bool:
        return self.score(problem, self._parse_for(problem, response))[0] >= 1.0 - 1e-9

    # -- capacity ------------------------------------------------------------------------------

    def level_capacity(self, skill: str, level: int, samples: int = 2000) -> int | None:
        """Estimated number of distinct prompts a level can produce; None when none repeat.

        Draws ``samples`` problems (fixed seed, cached) and inverts the expected number of
        distinct values under uniform sampling. Non-uniform generators make it a lower bound.
        Use it to size held-out sets: 1-digit a±b has only ~200 problems.
        """
        key = (self._check_skill(skill), self._check_level(skill, level))
        if key not in self._capacity:
            dataset = self._dataset(skill, level, seed=20261122, size=samples)
            distinct = len(
                {
                    self._problem(skill, level, 0, samples, i, dataset[i]).prompt
                    for i in range(samples)
                }
            )
            self._capacity[key] = _estimate_population(samples, distinct)
        return self._capacity[key]


def _estimate_population(draws: int, distinct: int) -> int | None:
    """N such that N * (1 - (1 - 1/N)**draws) == distinct (uniform draws); None if no repeats."""
    if distinct >= draws:
        return None

    def expected(n: float) -> float:
        return n * -math.expm1(draws * math.log1p(-1.0 / n)) if n > 1 else 1.0

    lo, hi = float(distinct), float(distinct)
    while expected(hi) < distinct:
        hi *= 2
    for _ in range(100):
        mid = (lo + hi) / 2
        if expected(mid) < distinct:
            lo = mid
        else:
            hi = mid
    return max(distinct, round(hi))
