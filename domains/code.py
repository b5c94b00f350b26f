"""Small functions to write, checked by running unit tests in the sandbox.

The bundled problem set (``code_problems.jsonl``, written for this project) follows HumanEval's
format: ``task_id``, ``prompt`` (signature and docstring with an example), ``entry_point``,
``canonical_solution`` (the body), ``test`` (a ``check(candidate)`` function), plus ``level``:
0 one-liners, 1 loops and conditions, 2 small algorithms. A response passes when the function it
defines passes ``check`` in ``pedagogy.tools.sandbox`` (no network, time and memory limits).

A response may give the code in a ```python block, after an ``A:`` line, or bare; as a whole
function or as HumanEval's indented body.
"""

from __future__ import annotations

import json
import random
import re
import secrets
import textwrap
from pathlib import Path
from typing import Any

from pedagogy.domains.base import Problem, Verdict
from pedagogy.errors import ConfigError, UnknownNameError

__all__ = ["BUNDLED_PROBLEMS", "CodeDomain", "extract_code", "check_program"]

BUNDLED_PROBLEMS = Path(__file__).with_name("code_problems.jsonl")
SKILL = "functions"
_FIELDS = ("task_id", "prompt", "entry_point", "canonical_solution", "test")
_FENCE = re.compile(r"```[ \t]*(?:python3?|py)?[ \t]*\n(.*?)```", re.DOTALL | re.IGNORECASE)
_MARKER = re.compile(r"(?:^|\n)[ \t]*(?:A|Answer|ANSWER|Final answer)[ \t]*:")
_CODE_START = re.compile(r"^(?:def |class |import |from |@)", re.MULTILINE)
_EXAMPLE = re.compile(r"^\s*>>> (.+)$", re.MULTILINE)


def extract_code(response: str) -> str | None:
    """The code of a response: its last ```python block, else what follows its last ``A:``
    marker, else the text from its first ``def``/``import`` line (or all of it)."""
    if not response or not response.strip():
        return None
    blocks = _FENCE.findall(response)
    if blocks:
        code = blocks[-1]
    else:
        markers = list(_MARKER.finditer(response))
        if markers:
            code = response[markers[-1].end() :]
            first, _, rest = code.partition("\n")
            if _CODE_START.match(first.strip()):  # "A:def f(x):" or "A: def f(x):"
                first = first.strip()
            code = f"{first}\n{rest}" if first.strip() else rest
        else:
            start = _CODE_START.search(response)
            code = response[start.start() :] if start else response
    code = code.rstrip()
    return code if code.strip() else None


def _assemble(prompt: str, entry_point: str, code: str) -> str:
    """prompt + code: a whole function redefines the stub, a body completes it."""
    if re.search(rf"^[ \t]*def[ \t]+{re.escape(entry_point)}[ \t]*\(", code, re.MULTILINE):
        return f"{prompt}\n{textwrap.dedent(code)}\n"
    lines = code.splitlines()
    first = next((ln for ln in lines if ln.strip()), "")
    if not first[:1].isspace():  # an unindented body: indent it under the stub
        code = textwrap.indent(textwrap.dedent(code), "    ")
    return f"{prompt}{code}\n"


def check_program(prompt: str, entry_point: str, code: str, test: str, token: str) -> str:
    """A script that defines the function, runs ``check`` on it with its output silenced (so a
    chatty solution cannot push the verdict out of the output limit), then prints `token`; an
    early ``exit(0)`` thus never passes. Tracebacks show the failing line."""
    source = f"{_assemble(prompt, entry_point, code)}\n\n{test}\n"
    return (
        "import contextlib, io, linecache\n"
        f"SOURCE = {source!r}\n"
        'linecache.cache["<solution>"] = (len(SOURCE), None, SOURCE.splitlines(True), "<solution>")\n'
        'namespace = {"__name__": "__solution__"}\n'
        "with contextlib.redirect_stdout(io.StringIO()):\n"
        '    exec(compile(SOURCE, "<solution>", "exec"), namespace)\n'
        f'    namespace["check"](namespace[{entry_point!r}])\n'
        f"print({token!r})\n"
    )


def _failure(result: Any, wall_s: float) -> str:
    """Why a run failed, in one line: the reason, the failing source line, the exception."""
    lines = [ln for ln in (result.stderr or "").splitlines() if ln.strip()]
    where = ""
    for i, line in enumerate(lines):
        if line.lstrip().startswith('File "<solution>"') and i + 1 < len(lines):
            follow = lines[i + 1].strip()
            where = follow if not follow.startswith("File ") else line.strip()
    error = lines[-1].strip() if lines else ""
    reason = result.reason or "failed"
    if reason == "timeout":
        reason, error = f"timeout after {wall_s:g} s", ""
    return ": ".join(p for p in dict.fromkeys([reason, where, error]) if p)[:300]


class CodeDomain:
    """Function-writing problems verified by their unit tests in the sandbox."""

    multiline_answers = True
    """An acting student's answer is a function: `A:` and the lines after it."""

    def __init__(
        self,
        path: str | Path | None = None,
        *,
        limits: dict[str, Any] | None = None,
        name: str = "code",
    ):
        """
        Args:
            path: a JSONL problem set in the bundled format; default: the bundled one.
            limits: ``SandboxLimits`` fields for each check, e.g. ``{"wall_s": 10}``.
        """
        self.name = name
        self.path = Path(path) if path is not None else BUNDLED_PROBLEMS
        from pedagogy.tools.sandbox import SandboxLimits

        try:
            self.limits = SandboxLimits(**(limits or {}))
        except TypeError as exc:
            raise ConfigError(
                f"bad sandbox limits {limits!r} for domain {name!r}: {exc}; use fields of "
                "SandboxLimits, e.g. {'wall_s': 10, 'memory_mb': 512}"
            ) from exc
        self._rows: dict[int, list[dict[str, Any]]] = {}
        for row in _read(self.path):
            self._rows.setdefault(row["level"], []).append(row)
        if not self._rows:
            raise ConfigError(f"{self.path} holds no problems: add one JSON object a line")

    def rows(self) -> list[dict[str, Any]]:
        """Every problem of the set, in file order by level."""
        return [row for level in sorted(self._rows) for row in self._rows[level]]

    def tools(self) -> list[str]:
        return ["python"]

    def tool_options(self) -> dict[str, dict[str, Any]]:
        return {}

    # -- skills and levels ---------------------------------------------------------------------

    def skills(self) -> list[str]:
        return [SKILL]

    def levels(self, skill: str) -> list[int]:
        self._check_skill(skill)
        return sorted(self._rows)

    def _check_skill(self, skill: str) -> None:
        if skill != SKILL:
            raise UnknownNameError(f"skill of domain {self.name!r}", skill, [SKILL])

    def generate(self, rng: random.Random, n: int, skill: str, level: int) -> list[Problem]:
        self._check_skill(skill)
        rows = self._rows.get(level)
        if rows is None:
            raise ConfigError(
                f"{self.path} has no problems at level {level!r}: choose one of {self.levels(skill)}"
            )
        if n < 1:
            return []
        picked = rng.sample(rows, n) if n <= len(rows) else rng.choices(rows, k=n)
        return [self.problem(row) for row in picked]

    def problem(self, row: dict[str, Any]) -> Problem:
        """The problem of one row; the test travels in its metadata, so a stored problem
        verifies without the file."""
        return Problem(
            domain=self.name,
            skill=SKILL,
            level=row["level"],
            prompt=row["prompt"],
            answer=_signature(row) + "\n" + row["canonical_solution"].rstrip(),
            metadata={k: row[k] for k in ("task_id", "entry_point", "test")},
            source="file",
        )

    # -- answers -------------------------------------------------------------------------------

    def parse_answer(self, response: str) -> str | None:
        return extract_code(response or "")

    def verify(self, problem: Problem, response: str) -> Verdict:
        code = self.parse_answer(response)
        if code is None:
            return self._verdict(False, None, "no code found in the response")
        meta = problem.metadata or {}
        entry, test = meta.get("entry_point"), meta.get("test")
        if not isinstance(entry, str) or not isinstance(test, str):
            return self._verdict(False, code, "the problem carries no entry_point and test")
        from pedagogy.tools.sandbox import run_python_sync

        token = f"passed-{secrets.token_hex(8)}"
        program = check_program(problem.prompt, entry, code, test, token)
        result = run_python_sync(program, self.limits)
        if result.ok and token in (result.stdout or ""):
            return self._verdict(True, code, "all tests passed")
        if result.ok:
            return self._verdict(False, code, "exited before the tests finished")
        return self._verdict(False, code, _failure(result, self.limits.wall_s))

    @staticmethod
    def _verdict(correct: bool, parsed: str | None, detail: str) -> Verdict:
        return Verdict(
            correct=correct,
            score=1.0 if correct else 0.0,
            parsed_answer=parsed,
            verifier="code:tests",
            detail=detail,
        )

    def solve(self, problem: Problem) -> str | None:
        """The canonical function: ``A:def ...`` and its body on the following lines."""
        return f"A:{problem.answer}" if problem.answer else None

    def demonstrate(self, problem: Problem) -> list[dict[str, Any]]:
        """Run the solution on the docstring's examples with ``python``, then answer."""
        calls = _EXAMPLE.findall(problem.prompt)
        code = "\n".join([problem.answer, *(f"print({call.strip()})" for call in calls)])
        return [
            {"thought": "Try it on the examples.", "tool": "python", "arguments": {"code": code}},
            {"answer": problem.answer},
        ]


def _signature(row: dict[str, Any]) -> str:
    """The ``def`` line of the prompt (the stub without its docstring)."""
    pattern = rf"^def[ \t]+{re.escape(row['entry_point'])}[ \t]*\(.*?\)[^\n]*:[ \t]*$"
    match = re.search(pattern, row["prompt"], re.MULTILINE | re.DOTALL)
    if match is None:
        raise ConfigError(
            f"task {row['task_id']!r}: its prompt has no 'def {row['entry_point']}(...):' line"
        )
    return match.group(0)


def _read(path: Path) -> list[dict[str, Any]]:
    if not path.is_file():
        raise ConfigError(
            f"code problem file {str(path)!r} does not exist: pass the path of a JSONL file "
            f"with the fields {', '.join(_FIELDS)}, level (or omit path for the bundled set)"
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
                raise ConfigError(f"{where} is not valid JSON ({exc.msg})") from exc
            missing = (
                [k for k in _FIELDS if not isinstance(row.get(k), str)]
                if isinstance(row, dict)
                else list(_FIELDS)
            )
            if missing:
                raise ConfigError(f"{where} lacks the string field(s) {missing}")
            level = row.get("level", 0)
            if isinstance(level, bool) or not isinstance(level, int) or level < 0:
                raise ConfigError(f"{where}: 'level' must be an integer >= 0, got {level!r}")
            if "def check(" not in row["test"]:
                raise ConfigError(f"{where}: 'test' must define check(candidate)")
            rows.append({**{k: row[k] for k in _FIELDS}, "level": level})
    for row in rows:
        _signature(row)
    return rows
