"""Tools from plain typed Python functions: the schema comes from the signature and docstring.

    @function_tool
    def add(a: int, b: int = 1) -> int:
        '''Add two integers.

        Args:
            a: The first term.
            b: The second term.
        '''
        return a + b

pydantic builds the argument model (so ``Annotated[int, Field(ge=1)]`` constraints, enums, nested
models and defaults all reach the JSON schema) and validates every call; invalid arguments become
``Observation(ok=False, error="bad_arguments")`` with one readable line instead of an exception.
A function may return anything (rendered as text), an ``Observation``, or raise ``ToolError``.
"""

from __future__ import annotations

import inspect
import json
import re
import time
from collections.abc import Callable
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, create_model

from pedagogy.errors import ConfigError
from pedagogy.tools.base import Observation, ToolError

__all__ = ["FunctionTool", "function_tool", "parse_docstring"]

_NAME = re.compile(r"^[A-Za-z0-9_-]{1,64}$")  # what the OpenAI tools API accepts
_ARGS_HEADERS = {"args", "arguments", "parameters", "params", "keyword args", "keyword arguments"}
_OTHER_HEADERS = {"returns", "return", "raises", "yields", "examples", "example", "notes", "note"}
_ARG_LINE = re.compile(r"^\*{0,2}(\w+)\s*(?:\([^)]*\))?\s*:\s*(.*)$")
_PARAM_LINE = re.compile(r"^:param\s+(?:[^:]*\s)?(\w+)\s*:\s*(.*)$")


def parse_docstring(doc: str | None) -> tuple[str, dict[str, str]]:
    """Split a docstring into its description and per-parameter docs (Google or reST style)."""
    text = inspect.cleandoc(doc or "")
    summary: list[str] = []
    params: dict[str, str] = {}
    section, current, indent = "summary", None, None
    for line in text.splitlines():
        stripped = line.strip()
        width = len(line) - len(line.lstrip())
        header = stripped[:-1].strip().lower() if stripped.endswith(":") else None
        if header in _ARGS_HEADERS or header in _OTHER_HEADERS:
            section, current, indent = ("args" if header in _ARGS_HEADERS else "other"), None, None
            continue
        if match := _PARAM_LINE.match(stripped):
            section, current = "param", match[1]
            params[current] = match[2].strip()
            continue
        if stripped.startswith(":"):  # :returns:, :raises ...: end a reST parameter
            section, current = "other", None
            continue
        if section == "summary":
            summary.append(line)
        elif section == "args" and stripped:
            if indent is None:
                indent = width
            if width <= indent and (match := _ARG_LINE.match(stripped)):
                current = match[1]
                params[current] = match[2].strip()
            elif width > indent and current:
                params[current] = f"{params[current]} {stripped}".strip()
            elif width < indent or not current:
                section, current = "other", None
        elif section == "param" and stripped and current:
            params[current] = f"{params[current]} {stripped}".strip()
    return "\n".join(summary).strip(), params


def _arguments_model(fn: Callable, name: str, docs: dict[str, str]) -> type[BaseModel]:
    """A pydantic model of ``fn``'s keyword arguments; fields are aliased to the real names so
    any parameter name works (``model``, ``json``, ``schema`` clash with BaseModel otherwise)."""
    try:
        signature = inspect.signature(fn, eval_str=True)
    except (NameError, TypeError, ValueError) as exc:
        raise ConfigError(f"cannot read the signature of tool {name!r}: {exc}") from exc
    fields: dict[str, Any] = {}
    for i, param in enumerate(signature.parameters.values()):
        if param.kind in (param.VAR_POSITIONAL, param.VAR_KEYWORD, param.POSITIONAL_ONLY):
            raise ConfigError(
                f"tool {name!r}: parameter {param.name!r} is {param.kind.description}; "
                "a tool function takes named parameters only (give each its own name and type)"
            )
        annotation = Any if param.annotation is param.empty else param.annotation
        default = ... if param.default is param.empty else param.default
        info = Field(default, alias=param.name, description=docs.get(param.name))
        fields[f"p{i}"] = (annotation, info)
    config = ConfigDict(extra="forbid", populate_by_name=False, arbitrary_types_allowed=True)
    try:
        return create_model(f"{name}_arguments", __config__=config, **fields)
    except Exception as exc:  # pydantic cannot build a schema for some annotation
        raise ConfigError(f"tool {name!r}: cannot build an argument model: {exc}") from exc


def _clean(schema: Any) -> Any:
    """Drop pydantic's auto titles; keep everything else (properties named "title" included)."""
    if isinstance(schema, list):
        return [_clean(item) for item in schema]
    if not isinstance(schema, dict):
        return schema
    cleaned = {}
    for key, value in schema.items():
        if key == "title" and isinstance(value, str):
            continue
        if key in ("properties", "$defs", "definitions") and isinstance(value, dict):
            cleaned[key] = {k: _clean(v) for k, v in value.items()}
        else:
            cleaned[key] = _clean(value)
    return cleaned


def _one_line(name: str, exc: ValidationError) -> str:
    problems = []
    for err in exc.errors(include_url=False):
        where = ".".join(str(p) for p in err["loc"]) or "arguments"
        if err["type"] == "extra_forbidden":
            problems.append(f"unexpected argument {where!r}")
        elif err["type"] == "missing":
            problems.append(f"missing argument {where!r}")
        else:
            got = repr(err.get("input"))
            got = got if len(got) <= 40 else got[:37] + "..."
            problems.append(f"{where}: {err['msg']} (got {got})")
    return f"bad arguments for {name}: " + "; ".join(problems).replace("\n", " ")


def _as_text(result: Any) -> str:
    if result is None:
        return ""
    if isinstance(result, str):
        return result
    if isinstance(result, BaseModel):
        return result.model_dump_json()
    if isinstance(result, (dict, list, tuple, int, float, bool)):
        return json.dumps(result, ensure_ascii=False, default=str)
    return str(result)


class FunctionTool:
    """A ``Tool`` around a sync or async function."""

    def __init__(
        self,
        fn: Callable[..., Any],
        *,
        name: str | None = None,
        description: str | None = None,
        max_chars: int | None = None,
    ):
        if not callable(fn):
            raise ConfigError(f"function_tool needs a callable, got {fn!r}")
        self.fn = fn
        self.name = name or getattr(fn, "__name__", "")
        if not _NAME.match(self.name):
            raise ConfigError(
                f"tool name {self.name!r} must be 1-64 letters, digits, '_' or '-'; pass name=..."
            )
        summary, docs = parse_docstring(getattr(fn, "__doc__", None))
        self.description = description or summary or self.name
        self.max_chars = max_chars
        self.model = _arguments_model(fn, self.name, docs)
        self.parameters: dict[str, Any] = _clean(self.model.model_json_schema(by_alias=True))

    def __repr__(self) -> str:
        return f"FunctionTool(name={self.name!r})"

    def validate(self, arguments: Any) -> dict[str, Any]:
        """The validated keyword arguments; raises ``ToolError(error="bad_arguments")``."""
        if not isinstance(arguments, dict):
            raise ToolError(
                f"bad arguments for {self.name}: arguments must be a JSON object, "
                f"got {type(arguments).__name__}",
                error="bad_arguments",
            )
        try:
            parsed = self.model.model_validate(arguments)
        except ValidationError as exc:
            raise ToolError(_one_line(self.name, exc), error="bad_arguments") from None
        return {f.alias: getattr(parsed, key) for key, f in type(parsed).model_fields.items()}

    async def call(self, arguments: dict[str, Any]) -> Observation:
        start = time.monotonic()
        try:
            result = self.fn(**self.validate(arguments))
            if inspect.isawaitable(result):
                result = await result
        except ToolError as exc:
            result = Observation(text=str(exc), ok=False, error=exc.error)
        except Exception as exc:
            result = Observation(
                text=f"error: {type(exc).__name__}: {exc}", ok=False, error="tool_error"
            )
        observation = result if isinstance(result, Observation) else Observation(_as_text(result))
        if self.max_chars is not None and len(observation.text) > self.max_chars:
            observation.text = observation.text[: self.max_chars] + " ...[truncated]"
            observation.truncated = True
        if not observation.latency_s:
            observation.latency_s = round(time.monotonic() - start, 6)
        return observation


def function_tool(
    fn: Callable[..., Any] | None = None,
    *,
    name: str | None = None,
    description: str | None = None,
    max_chars: int | None = None,
) -> Any:
    """Make a ``Tool`` from ``fn``; usable as ``@function_tool``, ``@function_tool(name=...)``
    or ``function_tool(fn)``. The description defaults to the docstring's text before ``Args:``."""

    def wrap(f: Callable[..., Any]) -> FunctionTool:
        return FunctionTool(f, name=name, description=description, max_chars=max_chars)

    return wrap if fn is None else wrap(fn)
