"""Question/answer pairs from a JSONL file as a Domain.

The simplest way to bring your own data: one JSON object a line,

    {"question": "2+2=", "answer": "4", "skill": "add", "level": 0, "solution": "S:2+2=4\\nA:4"}

``skill`` (default ``"default"``), ``level`` (default 0) and ``solution`` are optional. Problems are
sampled from the file with the caller's RNG (with replacement only when more are asked for than a
(skill, level) holds). Answers are compared after normalising: trimmed, lower-cased, and compared
as numbers when both sides read as numbers (``"4.0"`` == ``"4"``).
"""

from __future__ import annotations

import json
import random
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any

from pedagogy.domains.base import Problem, Verdict, extract_final_answer
from pedagogy.errors import ConfigError, UnknownNameError

__all__ = ["JsonlDomain", "normalise_answer"]

_EXAMPLE = '{"question": "2+2=", "answer": "4", "skill": "add", "level": 0}'


def normalise_answer(text: str | None) -> str | Decimal | None:
    """Trimmed and lower-cased; a number (commas dropped) when it reads as one."""
    if text is None:
        return None
    cleaned = " ".join(str(text).split()).lower().rstrip(".")
    if not cleaned:
        return None
    try:
        number = Decimal(cleaned.replace(",", ""))
    except InvalidOperation:
        return cleaned
    return number if number.is_finite() else cleaned


class JsonlDomain:
    """Problems read from a JSONL file of question/answer pairs."""

    def __init__(self, path: str | Path, name: str = "jsonl"):
        self.name = name
        self.path = Path(path)
        self._rows: dict[tuple[str, int], list[dict[str, Any]]] = {}
        for row in self._read(self.path):
            self._rows.setdefault((row["skill"], row["level"]), []).append(row)
        if not self._rows:
            raise ConfigError(
                f"{self.path} holds no problems: add one JSON object a line, e.g. {_EXAMPLE}"
            )

    @staticmethod
    def _read(path: Path) -> list[dict[str, Any]]:
        if not path.is_file():
            raise ConfigError(
                f"JSONL problem file {str(path)!r} does not exist: pass the path of a file with "
                f"one JSON object a line, e.g. {_EXAMPLE}"
            )
        rows = []
        with path.open(encoding="utf-8") as handle:
            for number, line in enumerate(handle, start=1):
                if not line.strip():
                    continue
                where = f"{path}, line {number}"
                try:
                    row = json.loads(line)
                except json.JSONDecodeError as exc:
                    raise ConfigError(
                        f"{where} is not valid JSON ({exc.msg}): write one object a line, "
                        f"e.g. {_EXAMPLE}"
                    ) from exc
                if not isinstance(row, dict):
                    raise ConfigError(f"{where} is not a JSON object: write e.g. {_EXAMPLE}")
                rows.append(_check_row(row, where, number))
        return rows

    def skills(self) -> list[str]:
        return sorted({skill for skill, _ in self._rows})

    def levels(self, skill: str) -> list[int]:
        found = sorted(level for s, level in self._rows if s == skill)
        if not found:
            raise UnknownNameError(f"skill in {self.path}", skill, self.skills())
        return found

    def generate(self, rng: random.Random, n: int, skill: str, level: int) -> list[Problem]:
        rows = self._rows.get((skill, level))
        if rows is None:
            if skill not in self.skills():
                raise UnknownNameError(f"skill in {self.path}", skill, self.skills())
            raise ConfigError(
                f"{self.path} has no problems for skill {skill!r} at level {level}: "
                f"choose one of levels {self.levels(skill)}"
            )
        if n < 1:
            return []
        picked = rng.sample(rows, n) if n <= len(rows) else rng.choices(rows, k=n)
        return [self._problem(row) for row in picked]

    def _problem(self, row: dict[str, Any]) -> Problem:
        metadata: dict[str, Any] = {"line": row["line"]}
        if row.get("solution") is not None:
            metadata["solution"] = row["solution"]
        return Problem(
            domain=self.name,
            skill=row["skill"],
            level=row["level"],
            prompt=row["question"],
            answer=row["answer"],
            metadata=metadata,
            source="file",
        )

    def parse_answer(self, response: str) -> str | None:
        return extract_final_answer(response)

    def verify(self, problem: Problem, response: str) -> Verdict:
        parsed = self.parse_answer(response or "")
        got = normalise_answer(parsed)
        correct = got is not None and got == normalise_answer(problem.answer)
        return Verdict(
            correct=correct,
            score=1.0 if correct else 0.0,
            parsed_answer=parsed,
            verifier="jsonl:exact",
            detail="" if parsed is not None else "no answer found in the response",
        )

    def solve(self, problem: Problem) -> str | None:
        solution = (problem.metadata or {}).get("solution")
        return str(solution) if solution is not None else None


def _check_row(row: dict[str, Any], where: str, line: int) -> dict[str, Any]:
    for key in ("question", "answer"):
        if key not in row or row[key] is None:
            raise ConfigError(f"{where} has no {key!r}: every line needs one, e.g. {_EXAMPLE}")
    level = row.get("level", 0)
    if isinstance(level, bool) or not isinstance(level, int) or level < 0:
        raise ConfigError(f"{where}: 'level' must be an integer >= 0, got {level!r}")
    skill = row.get("skill", "default")
    if not isinstance(skill, str) or not skill or "@" in skill:
        raise ConfigError(f"{where}: 'skill' must be a non-empty string without '@', got {skill!r}")
    return {
        "question": str(row["question"]),
        "answer": str(row["answer"]),
        "skill": skill,
        "level": level,
        "solution": row.get("solution"),
        "line": line,
    }
