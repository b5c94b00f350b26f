"""`transport: direct`: the litellm backend's calls to an OpenAI-compatible server without
litellm's client. It must send what litellm sends and fail the way litellm's path fails (the
rest of the backend's tests run with both transports); over real HTTP on 127.0.0.1."""

from __future__ import annotations

import asyncio
import gc
import socket
import warnings

import pytest

from pedagogy.backends.base import ChatRequest
from pedagogy.backends.litellm import LiteLLMBackend
from pedagogy.backends.litellm_direct import request_body
from pedagogy.errors import BackendError
from pedagogy.testing_server import OpenAICompatServer

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


def ask(text: str, **kw) -> ChatRequest:
    return ChatRequest(messages=[{"role": "user", "content": text}], **kw)


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def both(srv: OpenAICompatServer, model: str = "openai/local", **kw) -> list[LiteLLMBackend]:
    kw.setdefault("backoff_s", 0.01)
    kw.setdefault("timeout_s", 5.0)
    return [
        LiteLLMBackend(model, api_base=srv.base_url, transport=t, **kw)
        for t in ("litellm", "direct")
    ]


async def test_it_sends_the_body_litellm_sends():
    request = ask(
        "what is 2+3",
        max_tokens=7,
        temperature=0.3,
        seed=11,
        stop=["\n\n", "Q:"],
        tools=[CALCULATOR],
    )
    with OpenAICompatServer() as srv:
        for backend in both(srv, "hosted_vllm/my-model"):
            [c] = await backend.generate([request])
            assert c.error is None, c.error
        via_litellm, direct = srv.requests
    assert direct == request_body(request, "hosted_vllm/my-model")
    assert direct["model"] == "my-model" and direct["tool_choice"] == "auto"
    # every field that litellm sends, the direct transport sends alike
    assert {k: v for k, v in via_litellm.items() if k in direct} == direct
    assert set(via_litellm) - set(direct) <= {"stream", "extra_body"}


@pytest.mark.parametrize(
    "fault, status, retried",
    [
        ("rate_limit", 429, True),
        ("server_error", 500, True),
        ("malformed", None, True),
        ("empty", 200, True),
    ],
)
async def test_a_faulty_answer_is_recorded_and_retried_as_through_litellm(fault, status, retried):
    with OpenAICompatServer() as srv:
        srv.retry_after_s = 0.05
        seen = []
        for backend in both(srv, max_retries=1):
            srv.inject_faults(1.0, kinds=[fault], seed=0)
            [c] = await backend.generate([ask("hi")])
            assert c.error and "after 2 attempts" in c.error and "\n" not in c.error
            seen.append([(a.status, a.retry_after_s) for a in c.attempts])
            srv.inject_faults(0.0)
            [ok] = await backend.generate([ask("again")])
            assert ok.error is None and ok.text == "again"
    assert seen[0] == seen[1]
    assert [s for s, _ in seen[1]] == [status, status]
    if fault == "rate_limit":
        assert seen[1][0][1] == pytest.approx(0.05)


async def test_a_timeout_and_a_refused_connection_are_no_response():
    with OpenAICompatServer(delay_s=1.0) as slow:
        [c] = await LiteLLMBackend(
            "openai/local", api_base=slow.base_url, transport="direct", timeout_s=0.2, max_retries=0
        ).generate([ask("slow")])
    assert "APITimeoutError" in c.error and "did not answer within 0.2 s" in c.error
    assert [a.status for a in c.attempts] == [None]
    dead = LiteLLMBackend(
        "openai/local",
        api_base=f"http://127.0.0.1:{closed_port()}/v1",
        transport="direct",
        max_retries=1,
    )
    with pytest.raises(BackendError, match=r"unreachable \(connection refused\).*api_base"):
        await dead.check()
    [c] = await dead.generate([ask("x")])
    assert [a.status for a in c.attempts] == [None, None] and "after 2 attempts" in c.error


async def test_the_price_is_litellms_once_per_call(monkeypatch):
    with OpenAICompatServer() as srv:
        costs = []
        for backend in both(srv, "openai/gpt-4o-mini"):
            [c] = await backend.generate([ask("one two three four")])
            costs.append(c.cost)
        [unpriced] = await both(srv)[1].generate([ask("x")])
    assert costs[0] is not None and costs[0] > 0 and costs[1] == pytest.approx(costs[0])
    assert unpriced.cost is None


async def test_workers_use_the_direct_transport_too():
    with OpenAICompatServer() as srv:
        backend = LiteLLMBackend(
            "openai/local", api_base=srv.base_url, transport="direct", workers=2
        )
        try:
            out = await backend.generate([ask(f"w{i}") for i in range(8)])
        finally:
            backend.close()
    assert [c.text for c in out] == [f"w{i}" for i in range(8)]
    assert "transport='direct'" in repr(backend)


def test_connections_close_with_the_backend_in_or_out_of_its_event_loop():
    with OpenAICompatServer() as srv:
        backend = LiteLLMBackend("openai/local", api_base=srv.base_url, transport="direct")
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            for _ in range(3):  # finished event loops: their sessions are closed on the next
                out = asyncio.run(backend.generate([ask("x"), ask("y")]))
                assert [c.text for c in out] == ["x", "y"]
            sessions = list(backend._direct._sessions.values())

            async def inside(backend: LiteLLMBackend) -> None:
                await backend.generate([ask("z")])
                sessions.extend(backend._direct._sessions.values())
                backend.close()  # inside the running loop, as a bench closes it

            asyncio.run(inside(backend))
            del backend
            gc.collect()
    assert sessions and all(s.closed for s in sessions)
    problems = [
        w for w in caught if "Unclosed" in str(w.message) or "never awaited" in str(w.message)
    ]
    assert not problems, [str(w.message) for w in problems]
    assert srv.connections <= 4 * 2  # at most one connection per call in flight, per loop


def test_endpoints_it_cannot_serve_are_refused_when_built():
    with pytest.raises(BackendError, match="transport must be one of litellm, direct, got 'http'"):
        LiteLLMBackend("openai/local", api_base="http://127.0.0.1:1/v1", transport="http")
    with pytest.raises(BackendError, match=r"'anthropic/claude.*give it an `api_base`"):
        LiteLLMBackend("anthropic/claude-x", transport="direct")
    with pytest.raises(BackendError, match="transport 'litellm'"):
        LiteLLMBackend(
            "openai/local",
            api_base="http://127.0.0.1:1/v1",
            transport="direct",
            fallbacks=[{"model": "gpt-4o-mini"}],
        )
