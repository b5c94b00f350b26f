"""pedagogy.tools: calculator, function tools, registry, retrieve, and a conformance suite every
built-in tool runs."""

from __future__ import annotations

import asyncio
import json
import re
from typing import Annotated, Literal

import pytest
from pydantic import Field

from pedagogy.errors import ConfigError, UnknownNameError
from pedagogy.tools import (
    FunctionTool,
    Observation,
    Tool,
    ToolCall,
    ToolError,
    build_tool,
    function_tool,
    known_tools,
    register_tool,
    run_tool_call,
    tool_spec,
)
from pedagogy.tools import registry as tool_registry
from pedagogy.tools.calculator import calculate
from pedagogy.tools.function import parse_docstring
from pedagogy.tools.retrieve import load_corpus


def call(tool, arguments):
    return asyncio.run(tool.call(arguments))


# ---------------------------------------------------------------- calculator


@pytest.mark.parametrize(
    ("expression", "expected"),
    [
        ("12+7-3", "16"),
        (" (1 + 2) * -3 ", "-9"),
        ("2**100", str(2**100)),
        ("123456789123456789 * 987654321987654321", str(123456789123456789 * 987654321987654321)),
        ("1/3*3", "1"),
        ("7/2", "3.5"),
        ("10//3", "3"),
        ("-7 % 3", "2"),
        ("2**-2", "0.25"),
        ("1.5*2", "3.0"),
        ("+5", "5"),
        ("1_000 + 1", "1001"),
    ],
)
def test_calculator_computes_exactly(expression, expected):
    assert calculate(expression) == expected
    observation = call(build_tool("calculator"), {"expression": expression})
    assert (observation.ok, observation.text) == (True, expected)


@pytest.mark.parametrize(
    ("expression", "error", "says"),
    [
        ("x + 1", "refused", "names are not allowed"),
        ("()", "refused", "Tuple is not allowed"),
        ("().__class__.__bases__", "refused", "attributes are not allowed"),
        ("(1).__class__", "refused", "attributes are not allowed"),
        ("__import__('os').system('id')", "refused", "function calls are not allowed"),
        ("abs(-3)", "refused", "function calls"),
        ("9**9**9", "refused", "too large"),
        ("10**100000", "refused", "too large"),
        ("(10**5000) * (10**5000)", "refused", "too large"),
        ("[1] * 10**9", "refused", "List is not allowed"),
        ("'a' * 3", "refused", "not a number"),
        ("True + 1", "refused", "not a number"),
        ("lambda: 1", "refused", "Lambda is not allowed"),
        ("2 ^ 3", "refused", "write **"),
        ("1/0", "math_error", "division by zero"),
        ("5 % 0", "math_error", "division by zero"),
        ("0 ** -1", "math_error", "division by zero"),
        ("1e308 * 10", "math_error", "not a finite number"),
        ("(-8) ** 0.5", "math_error", "not real"),
        ("1 +", "bad_arguments", "not an arithmetic expression"),
        ("", "bad_arguments", "not an arithmetic expression"),
        ("1" + "+1" * 600, "refused", "longer than"),
        ("-" * 990 + "1", "refused", "nested too deeply"),
        ("(" * 250 + "1" + ")" * 250, "bad_arguments", "too many nested parentheses"),
    ],
)
def test_calculator_refuses_clearly(expression, error, says):
    observation = call(build_tool("calculator"), {"expression": expression})
    assert (observation.ok, observation.error) == (False, error), observation
    assert says in observation.text and "\n" not in observation.text


# ---------------------------------------------------------------- function tools


def lookup(city: str, units: Literal["metric", "imperial"] = "metric", days: Annotated[int, Field(ge=1, le=7)] = 1, note: str | None = None) -> dict:  # fmt: skip
    """Look up the weather forecast.

    Longer explanation that also belongs in the description.

    Args:
        city (str): Name of the city,
            e.g. "Zorv".
        units: Unit system.
        days: How many days ahead.

    Returns:
        The forecast.
    """
    return {"city": city, "units": units, "days": days, "note": note}


def test_function_tool_schema_comes_from_signature_and_docstring():
    tool = function_tool(lookup)
    assert isinstance(tool, Tool) and tool.name == "lookup"
    assert tool.description.startswith("Look up the weather forecast.")
    assert "Longer explanation" in tool.description and "Returns" not in tool.description
    schema = tool.parameters
    assert schema["type"] == "object" and schema["additionalProperties"] is False
    assert schema["required"] == ["city"]
    props = schema["properties"]
    assert list(props) == ["city", "units", "days", "note"]
    assert props["city"] == {"type": "string", "description": 'Name of the city, e.g. "Zorv".'}
    assert (
        props["units"]["enum"] == ["metric", "imperial"] and props["units"]["default"] == "metric"
    )
    assert props["units"]["description"] == "Unit system."
    assert (props["days"]["minimum"], props["days"]["maximum"]) == (1, 7)
    assert "description" not in props["note"]
    assert "title" not in json.dumps(schema)


def test_function_tool_calls_sync_and_async_functions():
    @function_tool(name="add_numbers", description="Add.")
    async def add(a: int, b: int = 1) -> int:
        await asyncio.sleep(0)
        return a + b

    assert (add.name, add.description) == ("add_numbers", "Add.")
    assert call(add, {"a": 2, "b": "3"}).text == "5"  # lax: "3" -> 3
    observation = call(function_tool(lookup), {"city": "Zorv", "days": 2})
    assert observation.ok and json.loads(observation.text)["days"] == 2
    assert observation.latency_s > 0


def test_rest_docstrings_and_parameter_names_that_clash_with_pydantic():
    def search(model: str, json: int = 0) -> str:
        """Search.

        :param model: Which model.
        :param json: A number.
        :returns: text
        """
        return f"{model}:{json}"

    tool = FunctionTool(search)
    assert tool.parameters["properties"]["model"]["description"] == "Which model."
    assert tool.parameters["properties"]["json"]["description"] == "A number."
    assert call(tool, {"model": "m", "json": 2}).text == "m:2"
    assert parse_docstring(None) == ("", {})


@pytest.mark.parametrize(
    ("arguments", "says"),
    [
        ({}, "missing argument 'city'"),
        ({"city": "Zorv", "colour": "red"}, "unexpected argument 'colour'"),
        ({"city": 3}, "city: Input should be a valid string"),
        ({"city": "Zorv", "days": 9}, "days: Input should be less than or equal to 7"),
        ({"city": "Zorv", "units": "kelvin"}, "units: Input should be 'metric' or 'imperial'"),
        (["Zorv"], "arguments must be a JSON object, got list"),
        (None, "arguments must be a JSON object, got NoneType"),
    ],
)
def test_bad_arguments_are_one_readable_line(arguments, says):
    observation = call(function_tool(lookup), arguments)
    assert (observation.ok, observation.error) == (False, "bad_arguments")
    assert observation.text.startswith("bad arguments for lookup: ")
    assert says in observation.text and "\n" not in observation.text


def test_tool_failures_are_observations():
    def refuse(x: int) -> str:
        """Refuse."""
        raise ToolError("error: not today", error="refused")

    def crash(x: int) -> str:
        """Crash."""
        raise ValueError("boom")

    def observe(x: int) -> Observation:
        """Observe."""
        return Observation(text=f"x={x}", detail={"x": x})

    assert call(FunctionTool(refuse), {"x": 1}) == Observation(
        "error: not today", ok=False, error="refused", latency_s=pytest.approx(0, abs=1)
    )
    crashed = call(FunctionTool(crash), {"x": 1})
    assert (crashed.ok, crashed.error, crashed.text) == (
        False,
        "tool_error",
        "error: ValueError: boom",
    )
    observed = call(FunctionTool(observe), {"x": 2})
    assert (observed.text, observed.detail) == ("x=2", {"x": 2})
    long = call(FunctionTool(lambda: "y" * 50, name="long", max_chars=10), {})
    assert long.truncated and long.text.startswith("y" * 10) and len(long.text) < 30


def test_function_tool_rejects_what_it_cannot_describe():
    def star(*args: int) -> int:
        return 0

    with pytest.raises(ConfigError, match="named parameters only"):
        function_tool(star)
    with pytest.raises(ConfigError, match="tool name 'bad name'"):
        function_tool(lambda: 1, name="bad name")
    with pytest.raises(ConfigError, match="needs a callable"):
        FunctionTool(42)  # type: ignore[arg-type]


def test_tool_spec_is_the_openai_tools_format():
    spec = tool_spec(build_tool("calculator"))
    assert spec == {
        "type": "function",
        "function": {
            "name": "calculator",
            "description": spec["function"]["description"],
            "parameters": {
                "type": "object",
                "properties": {
                    "expression": spec["function"]["parameters"]["properties"]["expression"]
                },
                "required": ["expression"],
                "additionalProperties": False,
            },
        },
    }
    assert json.loads(json.dumps(spec)) == spec


def test_tool_call_ids_and_types():
    first, second = ToolCall("calculator", {"expression": "1"}), ToolCall("calculator", {})
    assert re.fullmatch(r"call_\d+", first.id) and first.id != second.id
    assert ToolCall("x", {}, id="abc").id == "abc"
    with pytest.raises(ConfigError, match="arguments must be a dict"):
        ToolCall("x", "1+1")  # type: ignore[arg-type]


def test_run_tool_call_handles_unknown_and_broken_tools():
    class Broken:
        name, description, parameters = "broken", "Always raises.", {"type": "object"}

        async def call(self, arguments):
            raise RuntimeError("contract violated")

    tools = [build_tool("calculator"), Broken()]
    ok = asyncio.run(run_tool_call(tools, ToolCall("calculator", {"expression": "2*21"})))
    assert (ok.ok, ok.text) == (True, "42")
    unknown = asyncio.run(run_tool_call(tools, ToolCall("search", {})))
    assert (unknown.error, unknown.text) == (
        "unknown_tool",
        "error: unknown tool 'search'; available tools: broken, calculator",
    )
    broken = asyncio.run(run_tool_call({"broken": Broken()}, ToolCall("broken", {})))
    assert (broken.ok, broken.error) == (False, "tool_error") and "contract violated" in broken.text


# ---------------------------------------------------------------- registry


@pytest.fixture
def clean_registry():
    before = dict(tool_registry._REGISTRY)
    yield
    tool_registry._REGISTRY.clear()
    tool_registry._REGISTRY.update(before)


def test_registry_builds_registers_and_explains(clean_registry):
    assert {"calculator", "python", "retrieve"} <= set(known_tools())
    with pytest.raises(UnknownNameError, match="unknown tool 'calc'; choose one of: calculator"):
        build_tool("calc")
    register_tool("echo", lambda prefix="": function_tool(lambda text: prefix + text, name="echo"))
    assert call(build_tool("echo", prefix=">"), {"text": "hi"}).text == ">hi"
    with pytest.raises(ConfigError, match="already registered"):
        register_tool("echo", lambda: None)
    register_tool("echo", lambda: "not a tool", replace=True)
    with pytest.raises(ConfigError, match="returned str, which lacks the Tool attributes"):
        build_tool("echo")
    with pytest.raises(ConfigError, match=r"bad options \['colour'\] for tool 'calculator'"):
        build_tool("calculator", colour="red")
    with pytest.raises(ConfigError, match="must be callable"):
        register_tool("other", 3)  # type: ignore[arg-type]


# ---------------------------------------------------------------- retrieve

DOCS = [
    {"id": "zorv", "text": "Zorv is the capital of Quellia."},
    {"id": "marn", "text": "Quellia borders Marn to the north."},
    {"id": "ash", "text": "The river Ash flows through Zorv and Marn."},
    {"id": "twin-a", "text": "Glimmerstone is mined in Pell."},
    {"id": "twin-b", "text": "Glimmerstone is mined in Pell."},
]


def test_retrieve_over_a_jsonl_file(tmp_path):
    path = tmp_path / "corpus.jsonl"
    path.write_text("\n".join(json.dumps(d) for d in DOCS) + "\n\n")
    tool = build_tool("retrieve", path=str(path))
    observation = call(tool, {"query": "capital of Zorv", "k": 2})
    assert observation.ok
    assert observation.text.splitlines() == [
        "[zorv] Zorv is the capital of Quellia.",
        "[ash] The river Ash flows through Zorv and Marn.",
    ]
    assert observation.detail["ids"] == ["zorv", "ash"]
    # ties keep corpus order, every time
    for _ in range(3):
        assert call(tool, {"query": "glimmerstone"}).detail["ids"] == ["twin-a", "twin-b"]
    assert call(tool, {"query": "unrelated words"}).text == "no documents match 'unrelated words'"


def test_retrieve_over_a_folder(tmp_path):
    (tmp_path / "notes").mkdir()
    (tmp_path / "a.txt").write_text("Zorv is the capital\nof Quellia.")
    (tmp_path / "notes" / "b.md").write_text("# Marn\nMarn is cold. " + "snow " * 200)
    (tmp_path / "ignored.csv").write_text("Zorv,Marn")
    tool = build_tool("retrieve", path=tmp_path, max_doc_chars=40)
    assert tool.retriever.documents[1]["id"] == "notes/b.md" and len(tool.retriever.documents) == 2
    first = call(tool, {"query": "Zorv"})
    assert first.text == "[a.txt] Zorv is the capital of Quellia."
    cold = call(tool, {"query": "marn snow", "k": 1})
    assert cold.truncated and cold.text.startswith("[notes/b.md] # Marn Marn is cold.")


def test_retrieve_corpus_errors_name_the_path(tmp_path):
    missing = tmp_path / "nope.jsonl"
    with pytest.raises(ConfigError, match=f"retrieve corpus '{missing}' does not exist"):
        build_tool("retrieve", path=missing)
    empty = tmp_path / "empty.jsonl"
    empty.write_text("\n")
    with pytest.raises(ConfigError, match=f"retrieve corpus '{empty}' has no documents"):
        build_tool("retrieve", path=empty)
    with pytest.raises(ConfigError, match="has no documents"):
        build_tool("retrieve", path=tmp_path / "")  # a folder without .txt/.md files
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"id": 1, "text": "ok"}\n{"id": 2}\n')
    with pytest.raises(ConfigError, match=r"bad\.jsonl:2: expected"):
        load_corpus(bad)
    with pytest.raises(ConfigError, match="exactly one source"):
        load_corpus()
    assert load_corpus(documents=["plain text"]) == [{"id": "0", "text": "plain text"}]


# ---------------------------------------------------------------- conformance


def _builtin(name: str) -> Tool:
    options = {"retrieve": {"documents": DOCS}, "python": {"wall_s": 5}}
    return build_tool(name, **options.get(name, {}))


@pytest.mark.parametrize("name", ["calculator", "python", "retrieve"])
def test_builtin_tool_conformance(name):
    jsonschema = pytest.importorskip("jsonschema")
    tool = _builtin(name)
    assert isinstance(tool, Tool) and tool.name == name
    assert re.fullmatch(r"[A-Za-z0-9_-]{1,64}", tool.name)
    assert isinstance(tool.description, str) and tool.description.strip()
    schema = tool.parameters
    jsonschema.Draft202012Validator.check_schema(schema)
    assert schema["type"] == "object" and isinstance(schema["properties"], dict)
    assert set(schema.get("required", [])) <= set(schema["properties"])
    assert json.loads(json.dumps(tool_spec(tool)))["function"]["name"] == name
    required = schema["required"][0]
    for arguments in ({}, {"no_such_argument": 1}, {required: {"nested": []}}, [], "text", None):
        observation = call(tool, arguments)  # must not raise
        assert isinstance(observation, Observation)
        assert (observation.ok, observation.error) == (False, "bad_arguments"), arguments
        assert observation.text and "\n" not in observation.text


def test_python_tool_observations():
    tool = _builtin("python")
    assert call(tool, {"code": "print(6 * 7)"}).text == "42\n"
    assert call(tool, {"code": "x = 1"}).text == "(no output)"
    failed = call(tool, {"code": "print('before')\nraise ValueError('nope')"})
    assert (failed.ok, failed.error) == (False, "nonzero_exit")
    assert failed.text.startswith("before\nTraceback") and "ValueError: nope" in failed.text
    assert failed.text.endswith("[nonzero_exit: exit code 1]")
    slow = call(build_tool("python", wall_s=0.5), {"code": "import time\ntime.sleep(5)"})
    assert (slow.error, slow.text) == (
        "timeout",
        "[timeout: stopped after 0.5 s of wall-clock time]",
    )
    with pytest.raises(ConfigError, match="bad options for the python tool"):
        build_tool("python", wall=3)
