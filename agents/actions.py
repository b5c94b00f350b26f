"""Actions: one step of an acting agent, as text and back.

Text-only models (the tiny student, scripted teachers) write the text action format of
AGENT_SPEC: `T:<thought>` lines, then one action line, `C:<tool>(<raw>)` for a tool whose only
required parameter is a string, `C:<tool> <json object>` for any other call, or `A:<answer>`;
LLM backends may call tools natively instead (`Completion.tool_calls`). `parse_action` and
`render_action` convert between text and `Action`; `action_of` reads a completion either way.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from pedagogy.backends.base import Completion
from pedagogy.domains.base import Domain, Problem
from pedagogy.errors import ConfigError
from pedagogy.tools.base import ToolCall

__all__ = [
    "Action",
    "action_from_dict",
    "action_of",
    "first_thought",
    "ftp_from",
    "parse_action",
    "render_action",
    "string_parameter",
]

_CALL = re.compile(r"C:\s*([A-Za-z_][\w.\-]*)\s*(.*)$")


@dataclass
class Action:
    """One parsed step."""

    kind: str
    """call | answer | invalid"""
    text: str = ""
    """The step as a text action: everything up to and including the action line."""
    thought: str = ""
    """The lines before the action line (for a native call: the model's content)."""
    tool: str | None = None
    arguments: dict[str, Any] = field(default_factory=dict)
    answer: str | None = None
    error: str | None = None
    """Why the step is invalid."""
    call_id: str = ""
    native: bool = False
    """A tools-API call rather than a text action."""

    @property
    def call(self) -> ToolCall:
        return ToolCall(name=self.tool or "", arguments=dict(self.arguments), id=self.call_id)


def _schema(tool: Any) -> dict[str, Any]:
    """A tool's argument schema, from a Tool, a `tool_spec` entry or a bare schema."""
    if hasattr(tool, "parameters"):
        return tool.parameters or {}
    if isinstance(tool, Mapping):
        if "function" in tool:
            return (tool["function"] or {}).get("parameters") or {}
        return dict(tool)
    return {}


def string_parameter(tool: Any) -> str | None:
    """The name of the tool's only required parameter when it is a string, else None: such a
    tool is called in the compact form `C:<tool>(<raw>)`."""
    schema = _schema(tool)
    required = schema.get("required") or []
    if len(required) != 1:
        return None
    prop = (schema.get("properties") or {}).get(required[0]) or {}
    types = [prop.get("type")] + [
        p.get("type") for p in prop.get("anyOf", []) if isinstance(p, dict)
    ]
    return required[0] if "string" in types else None


def parse_action(
    text: str,
    tools: Mapping[str, Any] | None = None,
    *,
    call_id: str = "",
    multiline_answer: bool = False,
) -> Action:
    """The first action line of `text` and the lines before it; `Action("invalid")` if none.

    `multiline_answer`: an answer runs from `A:` to the end of the text (a function's code);
    otherwise it is the rest of its line (a tiny model's noise after it is no part of it).

    `tools` (name -> Tool, `tool_spec` entry or schema) maps a compact call's raw text onto the
    tool's string parameter; a tool not among them is still a call (its runner answers
    "unknown tool"), with the raw text as `{"_raw": raw}`.
    """
    lines = (text or "").splitlines()
    for i, line in enumerate(lines):
        s = line.strip()
        if not s.startswith(("A:", "C:")):
            continue
        step = "\n".join(lines[: i + 1]).strip("\n")
        thought = "\n".join(lines[:i]).strip("\n")
        if s.startswith("A:"):
            answer = s[2:].strip()
            if multiline_answer:
                step = "\n".join(lines).strip("\n")
                answer = "\n".join([answer, *lines[i + 1 :]]).strip("\n").rstrip()
            if not answer:
                return Action("invalid", step, thought, error="empty answer after 'A:'")
            return Action("answer", step, thought, answer=answer)
        m = _CALL.match(s)
        if m is None:
            return Action("invalid", step, thought, error="no tool name after 'C:'")
        name, rest = m.group(1), m.group(2).strip()
        if rest.startswith("("):
            if not rest.endswith(")"):
                return Action("invalid", step, thought, error=f"unclosed '(' in the call of {name}")
            raw = rest[1:-1]
            tool = (tools or {}).get(name)
            if tool is None:
                arguments = {"_raw": raw}
            else:
                param = string_parameter(tool)
                if param is None:
                    return Action(
                        "invalid",
                        step,
                        thought,
                        error=f"{name} takes JSON arguments: C:{name} {{...}}",
                    )
                arguments = {param: raw}
        elif rest.startswith("{"):
            try:
                arguments = json.loads(rest)
            except ValueError:
                arguments = None
            if not isinstance(arguments, dict):
                return Action(
                    "invalid", step, thought, error=f"the arguments of {name} are no JSON object"
                )
        elif not rest:
            arguments = {}
        else:
            return Action("invalid", step, thought, error=f"expected ( or {{ after C:{name}")
        return Action("call", step, thought, tool=name, arguments=arguments, call_id=call_id)
    return Action("invalid", (text or "").strip("\n"), error="no action line (C: or A:)")


def render_action(action: Action, tools: Mapping[str, Any] | None = None) -> str:
    """The step as text: thought lines, then the action line (compact when the tool has exactly
    one required string parameter and that is the only argument, on one line)."""
    if action.kind == "answer":
        line = f"A:{action.answer}"
    elif action.kind == "call":
        line = f"C:{action.tool} {json.dumps(action.arguments, ensure_ascii=False)}"
        tool = (tools or {}).get(action.tool or "")
        param = string_parameter(tool) if tool is not None else None
        value = action.arguments.get(param) if param else None
        if set(action.arguments) == {param} and isinstance(value, str) and "\n" not in value:
            line = f"C:{action.tool}({value})"
        elif set(action.arguments) == {"_raw"} and isinstance(action.arguments["_raw"], str):
            line = f"C:{action.tool}({action.arguments['_raw']})"
    else:
        return action.text
    thought = action.thought.strip("\n")
    return f"{thought}\n{line}" if thought else line


def action_of(
    completion: Completion,
    tools: Mapping[str, Any] | None = None,
    *,
    call_id: str = "",
    multiline_answer: bool = False,
) -> Action:
    """A completion's action: its first native tool call, else the text action in its text."""
    if completion.tool_calls:
        call = completion.tool_calls[0]
        thought = "\n".join(
            ln if ln.startswith("T:") else f"T:{ln}"
            for ln in (completion.text or "").strip().splitlines()
            if ln.strip()
        )
        action = Action(
            "call",
            "",
            thought,
            tool=call.name,
            arguments=dict(call.arguments),
            call_id=call.id or call_id,
            native=True,
        )
        action.text = render_action(action, tools)
        return action
    return parse_action(completion.text, tools, call_id=call_id, multiline_answer=multiline_answer)


def action_from_dict(step: Mapping[str, Any], call_id: str = "") -> Action:
    """A demonstration step `{"thought"?, "tool", "arguments"}` / `{"thought"?, "answer"}`."""
    thought = str(step.get("thought") or "").strip()
    if thought and not thought.startswith("T:"):
        thought = f"T:{thought}"
    if "answer" in step:
        return Action("answer", thought=thought, answer=str(step["answer"]))
    if "tool" not in step:
        raise ConfigError(
            f"demonstration step {dict(step)!r} has neither 'tool' (with 'arguments') nor 'answer'"
        )
    return Action(
        "call",
        thought=thought,
        tool=str(step["tool"]),
        arguments=dict(step.get("arguments") or {}),
        call_id=call_id,
    )


def first_thought(solution: str | None) -> str | None:
    """The first thought of a worked solution as a `T:` line: its first line that is no answer,
    without its tag, up to the first `;` (`S:4-1=3;3-7=-4` -> `T:4-1=3`)."""
    for line in (solution or "").splitlines():
        s = line.strip()
        if not s or s.startswith(("A:", "Answer:")):
            continue
        tag = re.match(r"^[A-Z]:\s*", s)
        body = s[tag.end() :] if tag else s
        body = body.split(";")[0].strip()
        return f"T:{body}" if body else None
    return None


def ftp_from(domain: Domain) -> Callable[[Problem], str | None]:
    """First-thought prefixes from the domain's worked solutions (`Actor.ftp`)."""

    def ftp(problem: Problem) -> str | None:
        return first_thought(domain.solve(problem))

    return ftp
