"""The ``python`` tool: run a snippet in the sandbox and show what it printed.

On failure the observation ends with the stderr tail and one bracketed line saying which limit
stopped the code, so a model can tell "my code is wrong" from "my code is too slow".
"""

from __future__ import annotations

from typing import Any

from pedagogy.errors import ConfigError
from pedagogy.tools.base import Observation
from pedagogy.tools.function import FunctionTool
from pedagogy.tools.sandbox import SandboxLimits, SandboxResult, run_python

__all__ = ["python_tool", "render_result"]

DESCRIPTION = (
    "Run Python 3 code in a sandbox (standard library only, no network, no files kept between "
    "calls) and return what it prints. Use print() to show results."
)


def _why(result: SandboxResult, limits: SandboxLimits) -> str:
    reasons = {
        "timeout": f"stopped after {limits.wall_s:g} s of wall-clock time",
        "cpu_limit": f"stopped after {limits.cpu_s:g} s of CPU time",
        "memory_limit": f"ran out of memory (limit {limits.memory_mb} MB)",
        "output_limit": f"printed more than {limits.output_bytes} bytes",
        "file_size_limit": f"wrote a file over {limits.file_size_mb} MB",
        "process_limit": f"started too many processes or threads (limit {limits.processes})",
        "nonzero_exit": f"exit code {result.exit_code}",
        "signal": f"killed by {result.detail.get('signal')}",
    }
    return f"[{result.reason}: {reasons.get(result.reason, 'the sandbox failed')}]"


def render_result(result: SandboxResult, limits: SandboxLimits) -> Observation:
    """The observation for one sandbox run, within ``limits.output_chars`` plus a status line."""
    budget = limits.output_chars
    if result.ok:
        text = result.stdout
    else:
        err = result.stderr.strip()[-(budget // 2) :] if result.stderr.strip() else ""
        out = result.stdout[: max(budget - len(err), 0)]
        text = "\n".join(part.rstrip("\n") for part in (out, err) if part.strip())
        text = f"{text}\n{_why(result, limits)}".lstrip("\n")
    if result.truncated:
        text = f"{text.rstrip()}\n[output truncated to {budget} characters]"
    detail = {"exit_code": result.exit_code, **result.detail}
    return Observation(
        text=text if text.strip() else "(no output)",
        ok=result.ok,
        error=result.reason,
        latency_s=result.latency_s,
        truncated=result.truncated,
        detail=detail,
    )


def python_tool(limits: SandboxLimits | None = None, **options: Any) -> FunctionTool:
    """The built-in ``python`` tool; ``options`` are SandboxLimits fields (``wall_s=2``, ...)."""
    if limits is not None and options:
        raise ConfigError(f"pass either limits= or limit options {sorted(options)}, not both")
    try:
        limits = limits or SandboxLimits(**options)
    except TypeError as exc:
        raise ConfigError(f"bad options for the python tool: {exc}") from exc

    async def python(code: str) -> Observation:
        """Run Python code.

        Args:
            code: A complete Python 3 program; print() what you want to see.
        """
        return render_result(await run_python(code, limits), limits)

    tool = FunctionTool(python, name="python", description=DESCRIPTION)
    tool.limits = limits
    return tool
