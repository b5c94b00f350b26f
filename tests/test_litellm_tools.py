"""Tool calls (the OpenAI tools API) through litellm over real HTTP, and their plain-text rendering."""

from __future__ import annotations

import json
from dataclasses import asdict

import pytest

from pedagogy.backends.base import ChatRequest, openai_tool_calls, parse_tool_arguments
from pedagogy.backends.litellm import MISSING_TOOL_NAME, LiteLLMBackend
from pedagogy.backends.litellm_direct import TRANSPORTS
from pedagogy.backends.scripted import Reply, ScriptedBackend
from pedagogy.backends.transformers import render_prompt
from pedagogy.domains.base import Problem
from pedagogy.errors import BackendError
from pedagogy.testing_server import OpenAICompatServer, arithmetic_expression, tool_agent
from pedagogy.tools.base import ToolCall

CALCULATOR = {
    "type": "function",
    "function": {
        "name": "calculator",
        "description": "Evaluate an arithmetic expression exactly.",
        "parameters": {
            "type": "object",
            "properties": {"expression": {"type": "string"}},
            "required": ["expression"],
        },
    },
}

TRANSPORT = ["litellm"]
"""The transport the module's backends use: every test runs with each (`transport` fixture)."""


@pytest.fixture(autouse=True, params=TRANSPORTS)
def transport(request):
    TRANSPORT[0] = request.param
    yield request.param
    TRANSPORT[0] = "litellm"


def backend_for(srv: OpenAICompatServer) -> LiteLLMBackend:
    return LiteLLMBackend(
        "openai/local",
        api_base=srv.base_url,
        backoff_s=0.01,
        timeout_s=5.0,
        transport=TRANSPORT[0],
    )


def ask(text: str, **kw) -> ChatRequest:
    return ChatRequest(messages=[{"role": "user", "content": text}], **kw)


async def test_tool_call_then_final_answer_over_http():
    with OpenAICompatServer(tool_agent("calculator")) as srv:
        backend = backend_for(srv)
        request = ask("12+7-3=", tools=[CALCULATOR])
        [c] = await backend.generate([request])
        assert c.error is None
        assert c.tool_calls == [ToolCall("calculator", {"expression": "12+7-3"}, id="call_0")]
        assert c.finish_reason == "tool_calls" and c.text == ""
        assert c.prompt_tokens > 0 and c.completion_tokens > 0
        sent = srv.requests[-1]
        assert sent["tools"] == [CALCULATOR] and sent["tool_choice"] == "auto"
        assert request.to_record()["tools"] == [CALCULATOR]
        json.dumps(asdict(c))  # the completion, tool calls included, stays serialisable

        trajectory = [
            *request.messages,
            {"role": "assistant", "content": None, "tool_calls": openai_tool_calls(c.tool_calls)},
            {"role": "tool", "tool_call_id": "call_0", "content": "16"},
        ]
        [final] = await backend.generate([ChatRequest(messages=trajectory, tools=[CALCULATOR])])
        assert final.error is None and final.text == "A:16" and final.tool_calls == []
        assert final.finish_reason == "stop"
        assert final.prompt_tokens > 0 and final.completion_tokens > 0
        sent = srv.requests[-1]["messages"]
        assert sent[-1] == {"role": "tool", "tool_call_id": "call_0", "content": "16"}
        assert sent[-2]["tool_calls"][0]["function"] == {
            "name": "calculator",
            "arguments": '{"expression": "12+7-3"}',
        }


async def test_requests_without_tools_send_and_record_none():
    with OpenAICompatServer() as srv:
        request = ask("hi")
        [c] = await backend_for(srv).generate([request])
        assert c.text == "hi" and c.tool_calls == [] and c.finish_reason == "stop"
        assert "tools" not in srv.requests[-1] and "tool_choice" not in srv.requests[-1]
        assert "tools" not in request.to_record()  # old records and hashes are unchanged


async def test_malformed_arguments_are_kept_raw_not_a_crash():
    def responder(body):
        return {
            "content": "T:let me compute",
            "tool_calls": [
                {"name": "calculator", "arguments": '{"expression": "1+'},
                {"name": "calculator", "arguments": "[1, 2]", "id": "abc"},
                {"name": "calculator", "arguments": ""},
                {"name": "", "arguments": "{}"},
            ],
        }

    with OpenAICompatServer(responder) as srv:
        [c] = await backend_for(srv).generate([ask("1+1=", tools=[CALCULATOR])])
    assert c.error is None and c.text == "T:let me compute"
    assert [t.arguments for t in c.tool_calls] == [
        {"_raw": '{"expression": "1+'},
        {"_raw": "[1, 2]"},
        {},
        {},
    ]
    assert [t.id for t in c.tool_calls] == ["call_0", "abc", "call_2", "call_3"]
    assert c.tool_calls[3].name == MISSING_TOOL_NAME
    # Sent back as the model wrote it, not as JSON of the wrapper.
    assert openai_tool_calls(c.tool_calls)[0]["function"]["arguments"] == '{"expression": "1+'


async def test_finish_reason_length_comes_through():
    with OpenAICompatServer(lambda body: {"content": "12+7", "finish_reason": "length"}) as srv:
        [c] = await backend_for(srv).generate([ask("x")])
    assert c.text == "12+7" and c.finish_reason == "length"


def test_parse_tool_arguments():
    assert parse_tool_arguments('{"a": 1}') == {"a": 1}
    assert parse_tool_arguments({"a": 1}) == {"a": 1}
    assert parse_tool_arguments(None) == {} and parse_tool_arguments("") == {}
    assert parse_tool_arguments("nope") == {"_raw": "nope"}
    assert parse_tool_arguments('"a string"') == {"_raw": '"a string"'}


def test_tool_agent_speaks_the_text_format_without_tools():
    agent = tool_agent("calculator")
    assert agent({"messages": [{"role": "user", "content": "4+3="}]}) == "C:calculator(4+3)"
    observed = {
        "messages": [{"role": "user", "content": "4+3="}, {"role": "user", "content": "O:7"}]
    }
    assert agent(observed) == "A:7"
    assert arithmetic_expression("State the final answer: 4 + 3 - 2 =") == "4+3-2"
    assert arithmetic_expression("What is (2*3)?") == "(2*3)"


# -- the scripted backend ------------------------------------------------------------------------


class _Demo:
    """A domain with a demonstration, duck-typed like AGENT_SPEC's tool-using domains."""

    name = "demo"

    def solve(self, problem):
        return f"A:{problem.answer}"

    def demonstrate(self, problem):
        return [
            {"thought": "add them", "tool": "calculator", "arguments": {"expression": "4+3"}},
            {"answer": problem.answer},
        ]


async def test_scripted_teacher_follows_a_demonstration_with_tools():
    problem = Problem("demo", "add", 0, "4+3=", "7")
    backend = ScriptedBackend.from_domain(_Demo())
    first = ChatRequest(messages=[{"role": "user", "content": "4+3="}], problem=problem)
    [plain] = await backend.generate([first])  # no tools offered: the worked solution, as before
    assert plain.text == "A:7" and plain.tool_calls == []

    first.tools = [CALCULATOR]
    [step] = await backend.generate([first])
    assert step.text == "T:add them" and step.finish_reason == "tool_calls"
    assert step.tool_calls == [ToolCall("calculator", {"expression": "4+3"}, id="call_0")]
    follow = ChatRequest(
        messages=[
            *first.messages,
            {
                "role": "assistant",
                "content": step.text,
                "tool_calls": openai_tool_calls(step.tool_calls),
            },
            {"role": "tool", "tool_call_id": "call_0", "content": "7"},
        ],
        tools=[CALCULATOR],
        problem=problem,
    )
    [answer] = await backend.generate([follow])
    assert answer.text == "A:7" and answer.tool_calls == [] and answer.finish_reason == "stop"

    follow.messages.append({"role": "assistant", "content": "A:7"})
    with pytest.raises(BackendError, match="demonstration has 2 steps"):
        await backend.generate([follow])


async def test_scripted_list_may_hold_replies_with_tool_calls():
    call = ToolCall("calculator", {"expression": "1+1"}, id="c1")
    backend = ScriptedBackend([Reply("T:hm", [call]), "A:2"])
    out = await backend.generate([ask("1+1="), ask("O:2")])
    assert [c.tool_calls for c in out] == [[call], []]
    assert [c.text for c in out] == ["T:hm", "A:2"]
    assert out[0].completion_tokens > 1
    backend.assert_all_used()


# -- plain-text rendering for a model without a chat template ------------------------------------


def test_render_prompt_of_a_trajectory_without_chat_template():
    from pedagogy.training.tiny import build_char_tokenizer

    tok = build_char_tokenizer()
    assert not getattr(tok, "chat_template", None)
    user_only = [{"role": "user", "content": "explain"}, {"role": "user", "content": "4+3="}]
    assert render_prompt(tok, user_only) == "explain\n4+3="  # as before
    trajectory = [
        {"role": "system", "content": "You may call tools."},
        {"role": "user", "content": "4+3-2="},
        {
            "role": "assistant",
            "content": "T:add first\nC:calculator(4+3)",
            "tool_calls": openai_tool_calls([ToolCall("calculator", {"expression": "4+3"}, "c0")]),
        },
        {"role": "tool", "tool_call_id": "c0", "content": "7"},
    ]
    rendered = render_prompt(tok, trajectory)
    assert rendered == "4+3-2=\nT:add first\nC:calculator(4+3)\nO:7\n"
    finished = [*trajectory, {"role": "assistant", "content": "C:calculator(7-2)"}]
    finished += [{"role": "tool", "tool_call_id": "c1", "content": "5\nsecond line"}]
    assert render_prompt(tok, finished) == rendered + "C:calculator(7-2)\nO:5\nsecond line\n"
    assert render_prompt(tok, [*finished, {"role": "assistant", "content": "A:5"}]).endswith(
        "O:5\nsecond line\nA:5"
    )
